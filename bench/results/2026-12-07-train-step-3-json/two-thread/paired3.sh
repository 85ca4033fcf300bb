#!/bin/bash
# usage: t2_paired.sh OUTDIR ROUNDS THREADS base_build new_build [PAR_MIN values for new ...]
# Alternates base, new@v1, new@v2, ... each round; 3 repetitions of the train step each.
out=$1; rounds=$2; th=$3; base=$4; new=$5; shift 5
vals=("$@"); [ ${#vals[@]} -eq 0 ] && vals=(32768)
mkdir -p $out
for r in $(seq 1 $rounds); do
  OMP_NUM_THREADS=$th OMP_WAIT_POLICY=passive nice -n 10 $base/bin/vlm_bench --benchmark_filter=train_step --benchmark_repetitions=3 --benchmark_format=json > $out/base-$r.json 2>/dev/null
  for v in "${vals[@]}"; do
    VISPLAY_PAR_MIN=$v OMP_NUM_THREADS=$th OMP_WAIT_POLICY=passive nice -n 10 $new/bin/vlm_bench --benchmark_filter=train_step --benchmark_repetitions=3 --benchmark_format=json > $out/new$v-$r.json 2>/dev/null
  done
  uptime >> $out/load.txt
done
python3 - $out $rounds "${vals[@]}" <<'PY'
import json,sys,statistics as st
out,rounds,vals=sys.argv[1],int(sys.argv[2]),sys.argv[3:]
def get(f,key):
    d=json.load(open(f)); return [b[key] for b in d['benchmarks'] if b.get('run_type')=='iteration']
for key in ['real_time','cpu_time']:
  B=[]; 
  for r in range(1,rounds+1): B+=get(f"{out}/base-{r}.json",key)
  print(f"{key}: base median {st.median(B):.1f} min {min(B):.1f}")
  for v in vals:
    N=[];R=[]
    for r in range(1,rounds+1):
      b=get(f"{out}/base-{r}.json",key); n=get(f"{out}/new{v}-{r}.json",key)
      N+=n;R.append(st.median(b)/st.median(n))
    print(f"  new@{v}: median {st.median(N):.1f} min {min(N):.1f} | per-round ratio median {st.median(R):.3f} rounds {[round(x,3) for x in R]} | min/min {min(B)/min(N):.3f}")
PY
