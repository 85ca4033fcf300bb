#!/usr/bin/env bash
# The `visplay` binary under `mpiexec -np 2` (CTest dist.cli_2_ranks): pretrain and the demo
# run data parallel with one writer (rank 0 prints once, one metrics file), the 2-rank pretrain
# loss equals the 1-process one, and rank 0's checkpoints load (visplay eval).
# Usage: cli_two_ranks.sh VISPLAY MPIEXEC
set -euo pipefail
VISPLAY=$1
MPIEXEC=$2
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
run2() { "$MPIEXEC" --oversubscribe -np 2 -x OMP_NUM_THREADS=1 "$VISPLAY" "$@"; }
last_loss() { grep '"phase":"pretrain"' "$1" | tail -1 | sed -E 's/.*"loss":([-0-9.e+]+).*/\1/'; }

# Pretrain: 2 ranks vs 1 process, same data and seed.
ARGS=(pretrain --size tiny --steps 3 --batch 5 --eval-every 3 --eval-questions 8 --seed 4)
run2 "${ARGS[@]}" --out "$OUT/base2" >"$OUT/pretrain2.log" 2>&1 || { cat "$OUT/pretrain2.log"; fail "2-rank pretrain"; }
OMP_NUM_THREADS=1 "$VISPLAY" "${ARGS[@]}" --out "$OUT/base1" >"$OUT/pretrain1.log" 2>&1 || fail "pretrain"
[ "$(grep -c '^pretrain: done' "$OUT/pretrain2.log")" -eq 1 ] || fail "rank 1 printed too"
grep -q ', 2 ranks (mpi)' "$OUT/pretrain2.log" || fail "no rank count in the banner"
[ "$(wc -l <"$OUT/base2/metrics.jsonl")" -eq 4 ] || fail "metrics.jsonl: $(wc -l <"$OUT/base2/metrics.jsonl") lines, want 3 steps + 1 validation"
l1=$(last_loss "$OUT/base1/metrics.jsonl")
l2=$(last_loss "$OUT/base2/metrics.jsonl")
awk -v a="$l1" -v b="$l2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a > 0 && d <= 1e-6 * a) }' ||
  fail "last loss 1 process $l1, 2 ranks $l2"
echo "pretrain last loss: 1 process $l1, 2 ranks $l2"

# Resume on 2 ranks: rank 0 wrote one training state, every rank loads it; the finished run
# has nothing left to do and keeps its log. --zero1 cannot take the state: a clear error.
[ -s "$OUT/base2/train_state.safetensors" ] || fail "2-rank pretrain wrote no training state"
cp "$OUT/base2/metrics.jsonl" "$OUT/metrics2.before"
run2 "${ARGS[@]}" --out "$OUT/base2" --resume >"$OUT/resume2.log" 2>&1 || { cat "$OUT/resume2.log"; fail "2-rank pretrain --resume"; }
grep -q 'resuming from' "$OUT/resume2.log" || fail "2-rank --resume did not resume"
cmp -s "$OUT/base2/metrics.jsonl" "$OUT/metrics2.before" || fail "--resume of a finished run changed metrics.jsonl"
if run2 "${ARGS[@]}" --out "$OUT/base2" --resume --zero1 >"$OUT/zero1.log" 2>&1; then
  fail "pretrain --resume --zero1 was accepted"
fi
grep -q 'resume without --zero1' "$OUT/zero1.log" || { cat "$OUT/zero1.log"; fail "no clear --zero1 resume error"; }

# The demo on tiny worlds: rank 0 writes the report and plots, both ranks run the loop.
run2 demo --out "$OUT/demo" --model "$OUT/base2" --pool 6 --validation 6 --test 8 --iterations 1 \
  --seed 2 >"$OUT/demo.log" 2>&1 || { cat "$OUT/demo.log"; fail "2-rank demo"; }
[ "$(grep -c '^visplay demo: seed' "$OUT/demo.log")" -eq 1 ] || fail "demo banner printed twice"
for f in report.json metrics.jsonl models/iter-1/reasoner/model.safetensors models/iter-1/summary.json; do
  [ -s "$OUT/demo/$f" ] || fail "demo: missing $f"
done
grep -q '"ranks":2' "$OUT/demo/models/metrics.jsonl" || fail "evolve start record without ranks 2"
OMP_NUM_THREADS=1 "$VISPLAY" eval --model "$OUT/demo/models/iter-1/reasoner" \
  --bench "$OUT/demo/worlds/test" >"$OUT/eval.log" 2>&1 || { cat "$OUT/eval.log"; fail "rank 0's checkpoint does not load"; }
echo "cli_two_ranks: OK"
