#!/usr/bin/env bash
# Paired alternation: baseline and this build's vlm_bench train_step, N rounds.
set -u
out=${OUT:-/tmp/ts2_paired}; mkdir -p $out
n=${N:-8}
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
for ((r=1; r<=n; ++r)); do
  for side in base new; do
    bin=/work/main/build/bin/vlm_bench; [[ $side == new ]] && bin=/work/wt/train-speed2/build/bin/vlm_bench
    nice -n 10 $bin --benchmark_filter=train_step --benchmark_repetitions=3 --benchmark_format=json --benchmark_out=$out/$side.$r.json >/dev/null 2>&1
  done
  echo "round $r done $(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 - "$out" "$n" <<'PY'
import json,sys,statistics as st
out,n=sys.argv[1],int(sys.argv[2])
def times(f):
    d=json.load(open(f)); return [b['cpu_time'] for b in d['benchmarks'] if b.get('run_type')=='iteration']
B=[];N=[];R=[]
for r in range(1,n+1):
    b=times(f"{out}/base.{r}.json"); m=times(f"{out}/new.{r}.json")
    B+=b; N+=m; R.append(st.median(b)/st.median(m))
print(f"baseline: median {st.median(B):.1f} ms, min {min(B):.1f}; new: median {st.median(N):.1f}, min {min(N):.1f}")
print("per-round ratio base/new:", " ".join(f"{x:.3f}" for x in R))
print(f"ratio median {st.median(R):.3f}, geomean {st.geometric_mean(R):.3f}, min-vs-min {min(B)/min(N):.3f}")
PY
