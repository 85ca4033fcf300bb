#!/usr/bin/env bash
# The demo VLM side by side with PyTorch eager on CPU: our training step and
# generation (vlm_bench) against the same model in PyTorch (torch_reference.py),
# alternating ROUNDS times so both see the same machine load; prints the ratios
# and writes bench/out/compare.md.
#
#   bench/compare.sh [BUILD_DIR]         (default: build)
# Environment: VENV=path      use this Python venv (must have torch + safetensors);
#                             default bench/.venv-bench, created from PyPI if missing
#              THREADS=2      OpenMP / OpenBLAS / torch threads
#              ROUNDS=2       alternating rounds (ours, PyTorch, ours, PyTorch, ...)
#              REPS=5         Google Benchmark repetitions per round
#              NICE=10        niceness of both (the machine is shared)
#              OUT=bench/out  where the JSON files and compare.md go
#              BASELINE=dir   another build folder (e.g. of an earlier commit): its
#                             vlm_bench runs in every round too, and the table
#                             gains its times and our speed-up over it
#              OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=1000   for both sides, as the
#                             visplay binary sets them when neither is given: idle
#                             threads spin ~10 us, then sleep. GOMP's default (a
#                             ~3 ms spin) made our 2-thread step 12x slower on a
#                             machine loaded beyond its cores; sleeping at once
#                             makes every parallel region wake a thread (60-100 us
#                             on a small VM). Set either to measure another policy
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
threads=${THREADS:-2}
rounds=${ROUNDS:-2}
reps=${REPS:-5}
niceness=${NICE:-10}
out=${OUT:-$root/bench/out}
venv=${VENV:-$root/bench/.venv-bench}

if [[ ! -x "$build/bin/vlm_bench" ]]; then
  echo "compare.sh: $build/bin/vlm_bench not found; build it with" >&2
  echo "  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DVISPLAY_BUILD_BENCH=ON && cmake --build build --target vlm_bench" >&2
  exit 1
fi
if [[ ! -x "$venv/bin/python" ]]; then
  echo "compare.sh: creating $venv with torch and safetensors from PyPI" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch safetensors numpy
fi
"$venv/bin/python" -c "import torch, safetensors" || {
  echo "compare.sh: $venv lacks torch or safetensors" >&2
  exit 1
}

mkdir -p "$out"
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
if [[ -z "${OMP_WAIT_POLICY:-}" && -z "${GOMP_SPINCOUNT:-}" ]]; then
  export OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=1000
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
"$build/bin/vlm_bench" --export "$out/export" >&2
ours=() theirs=() before=()
baseline=${BASELINE:-}
for ((r = 1; r <= rounds; ++r)); do
  if [[ -n "$baseline" ]]; then
    echo "round $r/$rounds: baseline $baseline (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    nice -n "$niceness" "$baseline/bin/vlm_bench" --benchmark_repetitions="$reps" \
      --benchmark_format=json --benchmark_out="$out/baseline_vlm_bench.$r.json" > /dev/null
    before+=("$out/baseline_vlm_bench.$r.json")
  fi
  echo "round $r/$rounds: visplay (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  nice -n "$niceness" "$build/bin/vlm_bench" --benchmark_repetitions="$reps" \
    --benchmark_format=json --benchmark_out="$out/vlm_bench.$r.json" > /dev/null
  ours+=("$out/vlm_bench.$r.json")
  echo "round $r/$rounds: PyTorch (load: $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  nice -n "$niceness" "$venv/bin/python" "$root/bench/torch_reference.py" "$out/export" \
    --threads "$threads" --reps $((reps * 2)) --gen-reps "$reps" > "$out/torch_reference.$r.json"
  theirs+=("$out/torch_reference.$r.json")
done
{
  if [[ -n "$baseline" ]]; then
    python3 "$root/bench/render.py" compare --ours "${ours[@]}" --torch "${theirs[@]}" \
      --baseline "${before[@]}"
  else
    python3 "$root/bench/render.py" compare --ours "${ours[@]}" --torch "${theirs[@]}"
  fi
  echo
  echo "Threads $threads, OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-(unset)}," \
    "GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-(unset)}, nice $niceness; load average" \
    "$load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end."
} | tee "$out/compare.md"
