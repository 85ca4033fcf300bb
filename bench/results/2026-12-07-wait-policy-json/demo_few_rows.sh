#!/bin/bash
cd /tmp/demo_ab
run() { local tag=$1; local bin=$2; d=out_fr_$RANDOM; s=$(date +%s.%N); OMP_NUM_THREADS=2 OMP_WAIT_POLICY=passive GOMP_SPINCOUNT=1000 $bin demo --model /work/main/models/shapeworld-base --out $d --seed 1 > $d.log 2>&1; e=$(date +%s.%N); echo "$tag: $(echo "$e - $s" | bc) s  load $(cut -d' ' -f1-3 /proc/loadavg)  md5 $(cat $d/models/iter-3/reasoner/*.safetensors | md5sum | cut -c1-12)" >> fr_times.txt; grep -a "100%" $d.log | tr '\r' '\n' | grep -a " in " | sed "s/^/$tag /" >> fr_phases.txt; rm -rf $d; }
for r in 1 2; do run "threshold 2^21 (636534e)" /tmp/visplay_base; run "few-rows 2^23" /tmp/visplay_fr; done
