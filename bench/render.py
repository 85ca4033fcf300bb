#!/usr/bin/env python3
"""Renders Google Benchmark JSON (and the PyTorch reference's JSON) as Markdown.

  render.py table RUN.json [RUN.json ...]     one row per benchmark: the median over
                                              every repetition in every file, and the
                                              median of each counter
  render.py compare --ours A.json [B.json ...] --torch T1.json [T2.json ...]
                    [--baseline X.json ...]   the side-by-side ratios of bench/compare.sh
                                              (and against another build's vlm_bench)

Standard library only, so it runs with any python3.
"""
import argparse
import json
import re
import statistics
import sys

UNIT_TO_MS = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}


def repetitions(files):
    """name -> list of benchmark entries (one per repetition, aggregates dropped)."""
    runs = {}
    for path in files:
        with open(path) as f:
            data = json.load(f)
        for b in data["benchmarks"]:
            if b.get("run_type", "iteration") != "iteration" or b.get("error_occurred"):
                continue
            name = re.sub(r"/(real_time|process_time|iterations:\d+|repeats:\d+|min_time:[\d.s]+)", "",
                          b.get("run_name", b["name"]))
            runs.setdefault(name, []).append(b)
    return runs


def context_line(files):
    with open(files[0]) as f:
        ctx = json.load(f)["context"]
    load = ctx.get("load_avg", [])
    return (f"{ctx.get('host_name', '?')}, {ctx.get('num_cpus', '?')} CPUs at "
            f"{ctx.get('mhz_per_cpu', '?')} MHz, load average {', '.join(f'{x:.2f}' for x in load)}, "
            f"{ctx.get('date', '')}")


def fmt(x):
    if x == 0:
        return "0"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def median_ms(entries, key="real_time"):
    return statistics.median(e[key] * UNIT_TO_MS[e["time_unit"]] for e in entries)


STANDARD_KEYS = {"name", "family_index", "per_family_instance_index", "run_name", "run_type",
                 "repetitions", "repetition_index", "threads", "iterations", "real_time",
                 "cpu_time", "time_unit", "aggregate_name", "aggregate_unit", "label"}


def table(files):
    runs = repetitions(files)
    counters = []
    for entries in runs.values():
        for k in entries[0]:
            if k not in STANDARD_KEYS and k not in counters:
                counters.append(k)
    lines = [f"Machine: {context_line(files)}", "",
             "| benchmark | reps | median time (ms) | " + " | ".join(counters) + " |",
             "|---|---|---|" + "---|" * len(counters)]
    for name, entries in runs.items():
        cells = []
        for k in counters:
            vals = [e[k] for e in entries if k in e]
            cells.append(fmt(statistics.median(vals)) if vals else "-")
        lines.append(f"| {name} | {len(entries)} | {fmt(median_ms(entries))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(ours_files, torch_files, baseline_files=None):
    runs = repetitions(ours_files)
    theirs = []
    for path in torch_files:
        with open(path) as f:
            theirs.append(json.load(f))

    def ours(name, key=None):
        entries = runs[name]
        if key is None:
            return median_ms(entries)
        if key == "cpu_time":
            return median_ms(entries, "cpu_time")
        return statistics.median(e[key] for e in entries)

    def torch_median(key):
        return statistics.median(v for t in theirs for v in t[key])

    def torch_scalar(key):
        return statistics.median(t[key] for t in theirs)

    train_ours, train_torch = ours("BM_vlm_train_step"), torch_median("train_step_ms_all")
    gen_ours, gen_torch = ours("BM_vlm_generate"), torch_median("generate_ms_all")
    tokens = ours("BM_vlm_generate", "tokens/s")
    rows = [
        ("training step (fwd + bwd + AdamW), ms", train_ours, train_torch, train_torch / train_ours, ">= 1.5x"),
        ("generation 8x8x32 tokens, ms", gen_ours, gen_torch, gen_torch / gen_ours, ">= 3x"),
        ("generation tokens/s", tokens, torch_scalar("generate_tokens_per_s"),
         tokens / torch_scalar("generate_tokens_per_s"), ""),
    ]
    # Process CPU time: with one thread it is the work itself, robust to other
    # processes taking the cores (wall time on a loaded machine is not).
    if all("train_step_cpu_ms_all" in t for t in theirs):
        train_cpu_ours, train_cpu_torch = ours("BM_vlm_train_step", "cpu_time"), torch_median("train_step_cpu_ms_all")
        gen_cpu_ours, gen_cpu_torch = ours("BM_vlm_generate", "cpu_time"), torch_median("generate_cpu_ms_all")
        rows += [
            ("training step, process CPU ms", train_cpu_ours, train_cpu_torch,
             train_cpu_torch / train_cpu_ours, ">= 1.5x"),
            ("generation, process CPU ms", gen_cpu_ours, gen_cpu_torch, gen_cpu_torch / gen_cpu_ours, ">= 3x"),
        ]
    mem = [
        ("training step: peak RSS over steady state, MiB", ours("BM_vlm_train_step", "peak_rss_MiB"),
         torch_scalar("train_peak_rss_MiB")),
        ("training step: process peak RSS, MiB", ours("BM_vlm_train_step", "rss_total_MiB"),
         torch_scalar("train_rss_total_MiB")),
        ("generation: peak RSS over steady state, MiB", ours("BM_vlm_generate", "peak_rss_MiB"),
         torch_scalar("generate_peak_rss_MiB")),
        ("generation: process peak RSS, MiB", ours("BM_vlm_generate", "rss_total_MiB"),
         torch_scalar("generate_rss_total_MiB")),
    ]
    t0 = theirs[0]
    lines = [
        f"Machine: {context_line(ours_files)}",
        f"PyTorch {t0['torch']} eager, {t0['threads']} threads; {len(ours_files)} alternating round(s).",
        f"Parity on the training batch: logits max abs diff {t0['logits_max_abs_diff']:.3g}, "
        f"max rel diff {t0['logits_max_rel_diff']:.3g} (of the largest |logit|); "
        f"loss ours {t0['loss_ours']:.6f} vs PyTorch {t0['loss_torch']:.6f}.",
        "",
        "| work | visplay | PyTorch eager | speed-up | target |",
        "|---|---|---|---|---|",
    ]
    for name, a, b, r, target in rows:
        met = "" if not target else (" (met)" if r >= float(target[3:-1]) else " (MISSED)")
        lines.append(f"| {name} | {fmt(a)} | {fmt(b)} | {r:.2f}x | {target}{met} |")
    if baseline_files:
        # The same vlm_bench work from another build, run in the same rounds.
        base = repetitions(baseline_files)
        lines += ["", "| work | baseline build | this build | speed-up over baseline | "
                  "baseline vs PyTorch |", "|---|---|---|---|---|"]
        pairs = [("training step, wall ms", "BM_vlm_train_step", "real_time", train_torch),
                 ("generation, wall ms", "BM_vlm_generate", "real_time", gen_torch)]
        if all("train_step_cpu_ms_all" in t for t in theirs):
            pairs += [("training step, process CPU ms", "BM_vlm_train_step", "cpu_time",
                       torch_median("train_step_cpu_ms_all")),
                      ("generation, process CPU ms", "BM_vlm_generate", "cpu_time",
                       torch_median("generate_cpu_ms_all"))]
        for label, name, key, torch_ms in pairs:
            b_ms, o_ms = median_ms(base[name], key), median_ms(runs[name], key)
            lines.append(f"| {label} | {fmt(b_ms)} | {fmt(o_ms)} | {b_ms / o_ms:.2f}x | "
                         f"{torch_ms / b_ms:.2f}x |")
    lines += ["", "| memory | visplay | PyTorch eager |", "|---|---|---|"]
    for name, a, b in mem:
        lines.append(f"| {name} | {fmt(a)} | {fmt(b)} |")
    lines.append(f"| training step: visplay allocator peak over live tensors, MiB | "
                 f"{fmt(ours('BM_vlm_train_step', 'peak_alloc_MiB'))} | - |")
    lines.append(f"| generation: visplay allocator peak over live tensors, MiB | "
                 f"{fmt(ours('BM_vlm_generate', 'peak_alloc_MiB'))} | - |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("files", nargs="+")
    c = sub.add_parser("compare")
    c.add_argument("--ours", nargs="+", required=True)
    c.add_argument("--torch", nargs="+", required=True)
    c.add_argument("--baseline", nargs="+", help="vlm_bench JSON of another build, same rounds")
    args = ap.parse_args()
    print(table(args.files) if args.cmd == "table"
          else compare(args.ours, args.torch, args.baseline))


if __name__ == "__main__":
    sys.exit(main())
