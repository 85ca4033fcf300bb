#!/bin/bash
cd /tmp/demo_ab
timeout 1500 sh -c 'while :; do :; done' &
hog=$!
sleep 2
for cfg in "OMP_NUM_THREADS=2 GOMP_SPINCOUNT=1000" "OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive" "OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive" "OMP_NUM_THREADS=2 GOMP_SPINCOUNT=10000"; do
  d=out_loaded_$RANDOM
  s=$(date +%s.%N)
  env $cfg /tmp/visplay_base demo --model /work/main/models/shapeworld-base --out $d --seed 1 > $d.log 2>&1
  e=$(date +%s.%N)
  echo "loaded $cfg: $(echo "$e - $s" | bc) s  load $(cut -d' ' -f1-3 /proc/loadavg)  md5 $(cat $d/models/iter-3/reasoner/*.safetensors | md5sum | cut -c1-12)" >> loaded_times.txt
done
kill $hog
