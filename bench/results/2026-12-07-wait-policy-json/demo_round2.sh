#!/bin/bash
cd /tmp/demo_ab
run() { local tag=$1; shift; d=out_r2_$RANDOM; s=$(date +%s.%N); env "$@" /tmp/visplay_base demo --model /work/main/models/shapeworld-base --out $d --seed 1 > $d.log 2>&1; e=$(date +%s.%N); echo "$tag $*: $(echo "$e - $s" | bc) s  load $(cut -d' ' -f1-3 /proc/loadavg)  md5 $(cat $d/models/iter-3/reasoner/*.safetensors | md5sum | cut -c1-12)" >> round2_times.txt; rm -rf $d; }
for r in 1 2; do
  run quiet OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
  run quiet OMP_NUM_THREADS=2 GOMP_SPINCOUNT=1000
done
timeout 1200 sh -c 'while :; do :; done' & h1=$!
timeout 1200 sh -c 'while :; do :; done' & h2=$!
sleep 2
run two-hogs OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive
run two-hogs OMP_NUM_THREADS=2 GOMP_SPINCOUNT=1000
kill $h1 $h2
