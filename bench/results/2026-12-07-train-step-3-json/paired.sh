#!/bin/bash
# usage: paired.sh OUTDIR ROUNDS THREADS base_build new_build
out=$1; rounds=$2; th=$3; base=$4; new=$5
mkdir -p $out
for r in $(seq 1 $rounds); do
  for w in base new; do
    b=$base; [ $w = new ] && b=$new
    OMP_NUM_THREADS=$th OMP_WAIT_POLICY=passive nice -n 10 $b/bin/vlm_bench --benchmark_filter=train_step --benchmark_repetitions=3 --benchmark_format=json > $out/$w-$r.json 2>/dev/null
  done
done
python3 - $out $rounds <<'PY'
import json,sys,statistics as st
out,rounds=sys.argv[1],int(sys.argv[2])
def get(f,key):
    d=json.load(open(f)); return [b[key] for b in d['benchmarks'] if b.get('run_type')=='iteration']
for key in ['cpu_time','real_time']:
  B=[];N=[];R=[]
  for r in range(1,rounds+1):
    b=get(f"{out}/base-{r}.json",key); n=get(f"{out}/new-{r}.json",key)
    B+=b;N+=n;R.append(st.median(b)/st.median(n))
  print(f"{key}: base median {st.median(B):.1f} min {min(B):.1f} | new median {st.median(N):.1f} min {min(N):.1f} | per-round ratio median {st.median(R):.3f} rounds {[round(x,3) for x in R]} | min/min {min(B)/min(N):.3f}")
PY
