#!/bin/bash
cd /tmp/demo_ab
run() { local tag=$1; local bin=$2; d=out_sl_$RANDOM; s=$(date +%s.%N); OMP_NUM_THREADS=2 $bin demo --model /work/main/models/shapeworld-base --out $d --seed 1 > $d.log 2>&1; e=$(date +%s.%N); echo "$tag: $(echo "$e - $s" | bc) s  load $(cut -d' ' -f1-3 /proc/loadavg)  md5 $(cat $d/models/iter-3/reasoner/*.safetensors | md5sum | cut -c1-12) report $(md5sum < $d/report.json | cut -c1-12)" >> slices_times.txt; grep -a "100%" $d.log | tr '\r' '\n' | grep -a " in " | sed "s/^/$tag /" >> slices_phases.txt; rm -rf $d; }
for r in 1 2; do run "c971671" /tmp/visplay_c97; run "slices" /tmp/visplay_slices; done
