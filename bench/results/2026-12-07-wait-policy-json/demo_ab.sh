#!/bin/bash
cd /tmp/demo_ab
for cfg in "base 2" "g26 2" "base 1" "g26 2" "base 2"; do
  set -- $cfg
  d=out_$1_t$2_$RANDOM
  s=$(date +%s.%N)
  OMP_NUM_THREADS=$2 /tmp/visplay_$1 demo --model /work/main/models/shapeworld-base --out $d --seed 1 > $d.log 2>&1
  e=$(date +%s.%N)
  echo "$1 threads $2: $(echo "$e - $s" | bc) s  load $(cut -d' ' -f1-3 /proc/loadavg)  models md5 $(cat $d/models/iter-3/reasoner/*.safetensors | md5sum | cut -c1-12)" >> times.txt
done
