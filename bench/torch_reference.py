#!/usr/bin/env python3
"""The demo VLM in PyTorch eager, for the side-by-side benchmark (bench/compare.sh).

Rebuilds the same architecture as model/vlm.cpp (ViT + 2x2 patch merger + Qwen2
decoder with tied embeddings), loads the weights our `vlm_bench --export DIR`
wrote (DIR/model/model.safetensors + config.json), checks that its logits match
ours on the exported training batch, then times on CPU with the given thread count:
  * the training step: zero_grad, forward, -mean log p(target) over the loss
    mask, backward, torch.optim.AdamW step (same hyper-parameters as ours);
  * generation: prefill the 8 prompts in one left-padded batch, copy each
    prompt's KV cache to its 8 samples, then 32 decode steps of multinomial
    sampling at temperature 1 (image-pad token banned), the same work as our
    model/sampler.h generate.
Peak memory: VmHWM (/proc/self/status) after resetting it with
/proc/self/clear_refs, minus VmRSS before the timed loop -- the same probe the
C++ benchmark's peak_rss_MiB counter uses. Prints one JSON object.
"""
import argparse
import json
import os
import sys
import statistics
import time

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file


def status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


class VLM:
    """Functional model over a dict of parameters named as in our checkpoint."""

    def __init__(self, folder):
        with open(os.path.join(folder, "config.json")) as f:
            self.cfg = json.load(f)
        self.vcfg = self.cfg["vision_config"]
        self.p = {k: v.float().clone() for k, v in
                  load_file(os.path.join(folder, "model.safetensors")).items()}
        self.head = self.p["model.embed_tokens.weight"] if self.cfg["tie_word_embeddings"] \
            else self.p["lm_head.weight"]
        c = self.cfg
        self.D = c["hidden_size"]
        self.H = c["num_attention_heads"]
        self.Hkv = c["num_key_value_heads"]
        self.hd = self.D // self.H
        self.L = c["num_hidden_layers"]
        self.eps = c["rms_norm_eps"]
        self.pad_id = c["image_token_id"]
        half = torch.arange(0, self.hd, 2, dtype=torch.float32) / self.hd
        self.inv_freq = 1.0 / (float(c["rope_theta"]) ** half)

    def parameters(self):
        return list(self.p.values())

    # ---- vision ----
    def vision(self, pixels):
        v, p = self.vcfg, self.p
        N, C, S = pixels.shape[0], v["num_channels"], v["image_size"]
        P, E, heads = v["patch_size"], v["hidden_size"], v["num_heads"]
        g = S // P
        patches = pixels.reshape(N, C, g, P, g, P).permute(0, 2, 4, 1, 3, 5).reshape(N, g * g, C * P * P)
        x = F.linear(patches, p["vision.patch_embed.weight"], p["vision.patch_embed.bias"]) + p["vision.pos_embed"]
        eps = v["layer_norm_eps"]
        for b in range(v["depth"]):
            w = lambda s: p[f"vision.blocks.{b}.{s}"]
            h = F.layer_norm(x, (E,), w("norm1.weight"), w("norm1.bias"), eps)
            qkv = [F.linear(h, w(f"attn.{n}_proj.weight"), w(f"attn.{n}_proj.bias"))
                   .reshape(N, g * g, heads, E // heads).transpose(1, 2) for n in ("q", "k", "v")]
            a = F.scaled_dot_product_attention(*qkv).transpose(1, 2).reshape(N, g * g, E)
            x = x + F.linear(a, w("attn.out_proj.weight"), w("attn.out_proj.bias"))
            h = F.layer_norm(x, (E,), w("norm2.weight"), w("norm2.bias"), eps)
            h = F.gelu(F.linear(h, w("mlp.fc1.weight"), w("mlp.fc1.bias")), approximate="tanh")
            x = x + F.linear(h, w("mlp.fc2.weight"), w("mlp.fc2.bias"))
        m = v["spatial_merge_size"]
        x = F.layer_norm(x, (E,), p["projector.norm.weight"], p["projector.norm.bias"], eps)
        x = x.reshape(N, g // m, m, g // m, m, E).transpose(2, 3).reshape(N, (g // m) ** 2, m * m * E)
        x = F.gelu(F.linear(x, p["projector.fc1.weight"], p["projector.fc1.bias"]), approximate="tanh")
        return F.linear(x, p["projector.fc2.weight"], p["projector.fc2.bias"])

    def embed(self, ids, visual):
        x = F.embedding(ids, self.p["model.embed_tokens.weight"])
        is_pad = ids == self.pad_id
        if visual is None or not bool(is_pad.any()):
            return x
        x = x.clone()
        x[is_pad] = visual.reshape(-1, self.D)
        return x

    # ---- decoder ----
    def rope(self, x, positions):
        angle = positions.to(torch.float32)[..., None] * self.inv_freq  # [B, S, hd/2]
        cos = torch.cat([angle.cos(), angle.cos()], -1)[:, :, None, :]
        sin = torch.cat([angle.sin(), angle.sin()], -1)[:, :, None, :]
        h = self.hd // 2
        rotated = torch.cat([-x[..., h:], x[..., :h]], -1)
        return x * cos + rotated * sin

    def rmsnorm(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def decode(self, x, positions, attn_mask, cache=None, write_at=0):
        """x [B, S, D]; attn_mask [B, 1, S, Sk] bool. With cache (list of (k, v)
        [B, Hkv, cap, hd]) the new keys go to slots write_at.. and attention runs
        over slots [0, write_at + S)."""
        B, S, _ = x.shape
        group = self.H // self.Hkv
        for l in range(self.L):
            w = lambda s: self.p[f"model.layers.{l}.{s}"]
            h = self.rmsnorm(x, w("input_layernorm.weight"))
            q = F.linear(h, w("self_attn.q_proj.weight"), w("self_attn.q_proj.bias")).reshape(B, S, self.H, self.hd)
            k = F.linear(h, w("self_attn.k_proj.weight"), w("self_attn.k_proj.bias")).reshape(B, S, self.Hkv, self.hd)
            v = F.linear(h, w("self_attn.v_proj.weight"), w("self_attn.v_proj.bias")).reshape(B, S, self.Hkv, self.hd)
            q = self.rope(q, positions).transpose(1, 2)
            k = self.rope(k, positions).transpose(1, 2)
            v = v.transpose(1, 2)
            if cache is not None:
                ck, cv = cache[l]
                ck[:, :, write_at:write_at + S] = k
                cv[:, :, write_at:write_at + S] = v
                k, v = ck[:, :, :write_at + S], cv[:, :, :write_at + S]
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
            x = x + F.linear(a.transpose(1, 2).reshape(B, S, self.D), w("self_attn.o_proj.weight"))
            h = self.rmsnorm(x, w("post_attention_layernorm.weight"))
            h = F.silu(F.linear(h, w("mlp.gate_proj.weight"))) * F.linear(h, w("mlp.up_proj.weight"))
            x = x + F.linear(h, w("mlp.down_proj.weight"))
        return self.rmsnorm(x, self.p["model.norm.weight"])

    @staticmethod
    def prefill_mask(mask):
        """Causal and key-is-real; a padding query also sees itself so no row is
        empty (padding rows are never scored)."""
        S = mask.shape[1]
        causal = torch.ones(S, S, dtype=torch.bool).tril()
        m = causal[None] & mask.bool()[:, None, :]
        m = m | torch.eye(S, dtype=torch.bool)[None]
        return m[:, None]

    @staticmethod
    def positions(mask):
        return ((mask.cumsum(1) - 1).clamp(min=0) * mask).long()

    def hidden_states(self, ids, mask, pixels):
        x = self.embed(ids, self.vision(pixels))
        return self.decode(x, self.positions(mask), self.prefill_mask(mask))

    def logits(self, ids, mask, pixels):
        return F.linear(self.hidden_states(ids, mask, pixels), self.head)


def train_loss(model, b):
    logits = model.logits(b["input_ids"], b["attention_mask"], b["pixels"])
    logp = F.log_softmax(logits, -1).gather(-1, b["targets"][..., None]).squeeze(-1)
    return -(logp * b["loss_mask"]).sum() / b["loss_mask"].sum()


@torch.inference_mode()
def generate(model, ids, mask, pixels, samples, new_tokens, gen):
    """Prefill once, share each prompt's cache with its samples, decode."""
    P, Lp = ids.shape
    cap = Lp + new_tokens - 1
    cache = [(torch.zeros(P, model.Hkv, cap, model.hd), torch.zeros(P, model.Hkv, cap, model.hd))
             for _ in range(model.L)]
    h = model.decode(model.embed(ids, model.vision(pixels)), model.positions(mask),
                     model.prefill_mask(mask), cache, 0)
    logits = F.linear(h[:, -1], model.head)
    rows = torch.arange(P).repeat_interleave(samples)
    cache = [(k[rows], v[rows]) for k, v in cache]
    key_mask = torch.zeros(P * samples, cap, dtype=torch.bool)
    key_mask[:, :Lp] = mask.bool()[rows]
    logits = logits[rows]
    next_pos = mask.sum(1)[rows]
    tokens, logprobs = [], []
    for step in range(new_tokens):
        logp = F.log_softmax(logits, -1)
        probs = logp.exp()
        probs[:, model.pad_id] = 0
        tok = torch.multinomial(probs, 1, generator=gen)
        tokens.append(tok)
        logprobs.append(logp.gather(1, tok))
        if step + 1 == new_tokens:
            break
        slot = Lp + step
        key_mask[:, slot] = True
        h = model.decode(F.embedding(tok, model.p["model.embed_tokens.weight"]), next_pos[:, None],
                         key_mask[:, None, None, :slot + 1], cache, slot)
        logits = F.linear(h[:, 0], model.head)
        next_pos = next_pos + 1
    return torch.cat(tokens, 1), torch.cat(logprobs, 1)


def timed(fn, reps):
    """Wall-clock and process CPU seconds per repetition (CPU time is the
    load-robust number on a shared machine when running one thread)."""
    times, cpu = [], []
    for _ in range(reps):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return times, cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("export_dir", help="the folder vlm_bench --export wrote")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=10, help="timed repetitions (median reported)")
    ap.add_argument("--gen-reps", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = VLM(os.path.join(args.export_dir, "model"))
    raw = load_file(os.path.join(args.export_dir, "batch.safetensors"))
    b = {k: raw[k] for k in ("pixels", "loss_mask")}
    for k in ("input_ids", "attention_mask", "targets"):
        b[k] = raw[k].long()
    b["loss_mask"] = b["loss_mask"].float()

    # ---- parity: logits at real positions, and the loss ----
    with torch.no_grad():
        ours = raw["logits"]
        theirs = model.logits(b["input_ids"], b["attention_mask"], b["pixels"])
        real = b["attention_mask"].bool()
        diff = (theirs[real] - ours[real]).abs().max().item()
        rel = diff / ours[real].abs().max().item()
        loss_ref = train_loss(model, b).item()
    loss_ours = raw["loss"].item()

    # ---- parity of the backward: every parameter's gradient of the loss ----
    grad_rel = None
    grads_path = os.path.join(args.export_dir, "grads.safetensors")
    if os.path.exists(grads_path):
        ours_g = load_file(grads_path)
        for t in model.parameters():
            t.requires_grad_(True)
        train_loss(model, b).backward()
        grad_rel = {}
        # The attention key bias has an exactly-zero gradient in theory (softmax ignores a
        # constant added to every score of a row): both sides are rounding noise there, so
        # each gradient is compared relative to the largest gradient of the whole model.
        scale = max(t.grad.abs().max().item() for t in model.p.values())
        for name, t in model.p.items():
            ref = t.grad
            err = (ours_g[name].float() - ref).abs().max().item()
            grad_rel[name] = err / max(ref.abs().max().item(), 1e-6 * scale)
            t.grad = None
            t.requires_grad_(False)
        worst = max(grad_rel, key=grad_rel.get)
        print(f"gradient parity: worst {worst} rel {grad_rel[worst]:.3e}", file=sys.stderr)

    # ---- training step ----
    params = model.parameters()
    for t in params:
        t.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.01)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = train_loss(model, b)
        loss.backward()
        opt.step()
        return loss

    step()  # warm-up: optimizer state exists from here on
    rss_before = status_bytes("VmRSS:")
    reset_peak_rss()
    train_times, train_cpu = timed(step, args.reps)
    train_peak = status_bytes("VmHWM:")
    for t in params:
        t.requires_grad_(False)

    # ---- generation ----
    with safe_open(os.path.join(args.export_dir, "batch.safetensors"), "pt") as f:
        meta = f.metadata()
    meta_samples, new_tokens = int(meta["samples_per_prompt"]), int(meta["max_new_tokens"])
    gen = torch.Generator().manual_seed(17)
    gi, gm, gp = raw["gen_input_ids"].long(), raw["gen_attention_mask"].long(), raw["gen_pixels"]
    toks, lps = generate(model, gi, gm, gp, meta_samples, new_tokens, gen)  # warm-up
    assert toks.shape == (gi.shape[0] * meta_samples, new_tokens) and torch.isfinite(lps).all()
    gen_rss_before = status_bytes("VmRSS:")
    reset_peak_rss()
    gen_times, gen_cpu = timed(lambda: generate(model, gi, gm, gp, meta_samples, new_tokens, gen), args.gen_reps)
    gen_peak = status_bytes("VmHWM:")

    mib = float(1 << 20)
    tokens = gi.shape[0] * meta_samples * new_tokens
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "logits_max_abs_diff": diff,
        "logits_max_rel_diff": rel,
        "loss_ours": loss_ours,
        "loss_torch": loss_ref,
        "grad_max_rel_diff": None if grad_rel is None else max(grad_rel.values()),
        "train_step_ms_median": 1e3 * statistics.median(train_times),
        "train_step_ms_all": [round(1e3 * t, 3) for t in train_times],
        "train_step_cpu_ms_all": [round(1e3 * t, 3) for t in train_cpu],
        "train_peak_rss_MiB": (train_peak - rss_before) / mib,
        "train_rss_total_MiB": train_peak / mib,
        "generate_ms_median": 1e3 * statistics.median(gen_times),
        "generate_ms_all": [round(1e3 * t, 3) for t in gen_times],
        "generate_cpu_ms_all": [round(1e3 * t, 3) for t in gen_cpu],
        "generate_tokens_per_s": tokens / statistics.median(gen_times),
        "generate_peak_rss_MiB": (gen_peak - gen_rss_before) / mib,
        "generate_rss_total_MiB": gen_peak / mib,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
