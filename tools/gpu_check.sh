#!/usr/bin/env bash
# GPU check, one call on a machine with an NVIDIA GPU (H100/H200): build the kernels for
# sm_90a, run the cuda-labelled tests (cuda backend vs sim and float64), the kernel
# benchmarks and, when PyTorch is installed, the same shapes in PyTorch; print a table and
# save everything under bench/results/; with 2 GPUs or more also the NCCL all-reduce bus
# bandwidth (tools/nccl_allreduce_bench.cu). Every step has a timeout; the whole run stays
# inside 8 minutes. Usage: tools/gpu_check.sh [build-dir]   (default build-gpu)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
JOBS=$(nproc 2>/dev/null || echo 8)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p bench/results
LOG=bench/results/gpu_check_${STAMP}.txt
START=$SECONDS
status=0
say() { echo "$*" | tee -a "$LOG"; }
# Seconds a step may take: its own cap, but never past the 8-minute budget (7:40 here,
# leaving time for the summary).
budget() { local left=$((460 - (SECONDS - START))); [ "$1" -lt "$left" ] && echo "$1" || echo $((left > 5 ? left : 5)); }
step() { say ""; say "== $1 ($((SECONDS - START)) s elapsed)"; }

step "configure + build (sm_90a, $JOBS jobs)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee -a "$LOG"
have_tests=1
if timeout "$(budget 90)" cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DVISPLAY_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90a -DVISPLAY_BUILD_BENCH=OFF >>"$LOG" 2>&1; then
  timeout "$(budget 220)" cmake --build "$BUILD" -j"$JOBS" --target test_kernels_cuda visplay_kernels_bench >>"$LOG" 2>&1 \
    || { say "build FAILED (see $LOG)"; tail -30 "$LOG"; exit 1; }
else
  # The project's other dependencies (gtest, libpng, ...) may be missing on a bare GPU
  # machine: build the kernels and the benchmark with nvcc alone, and skip the tests.
  say "configure FAILED (missing packages?): building the benchmark with nvcc only, no tests"
  have_tests=0
  NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  mkdir -p "$BUILD/bin"
  timeout "$(budget 240)" "$NVCC" -O3 -std=c++17 -arch=sm_90a -I. -Ikernels/include -DVISPLAY_KERNELS_NS=cuda \
    kernels/cuda/*.cu kernels/cuda/bench/kernels_bench.cu -lcublasLt -o "$BUILD/bin/visplay_kernels_bench" \
    >>"$LOG" 2>&1 || { say "nvcc build FAILED (see $LOG)"; tail -30 "$LOG"; exit 1; }
fi

if [ $have_tests -eq 1 ]; then
  step "cuda tests"
  timeout "$(budget 120)" "$BUILD/bin/test_kernels_cuda" >>"$LOG" 2>&1
  rc=$?
  grep -E "^\[  (PASSED|FAILED|SKIPPED) " "$LOG" | tail -12
  [ $rc -eq 0 ] || { say "cuda tests: FAILED (exit $rc)"; status=1; }
fi

if [ $have_tests -eq 1 ] && command -v compute-sanitizer >/dev/null 2>&1 && [ $((SECONDS - START)) -lt 240 ]; then
  step "compute-sanitizer memcheck (attention, log-prob)"
  timeout "$(budget 90)" compute-sanitizer --tool memcheck --error-exitcode 3 "$BUILD/bin/test_kernels_cuda" \
    --gtest_filter='*FlashAttention*:*PatchEmbed*:*Advantage*' >>"$LOG" 2>&1
  rc=$?
  case $rc in
    0) say "memcheck: clean" ;;
    124) say "memcheck: timed out (not an error report)" ;;
    *) say "memcheck: ERRORS (exit $rc), see $LOG"; status=1 ;;
  esac
fi

step "kernel benchmarks"
OURS=$(mktemp)
timeout "$(budget 120)" "$BUILD/bin/visplay_kernels_bench" 2>&1 | tee "$OURS" | tee -a "$LOG"
rc=${PIPESTATUS[0]}
[ "$rc" -eq 0 ] || { say "kernel benchmarks: FAILED (exit $rc)"; status=1; }

TORCH=$(mktemp)
if [ $((SECONDS - START)) -lt 390 ] &&
  python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  step "PyTorch on the same shapes"
  timeout "$(budget 60)" python3 - <<'PY' 2>&1 | tee "$TORCH" | tee -a "$LOG"
import math, torch
import torch.nn.functional as F

def time_ms(fn, iters):
    fn(); torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters): fn()
    stop.record(); torch.cuda.synchronize()
    return start.elapsed_time(stop) / iters

dev = "cuda"
B, H, S, D = 1, 16, 4096, 128
q, k, v = (torch.randn(B, H, S, D, device=dev, dtype=torch.bfloat16) for _ in range(3))
for causal in (False, True):
    flops = 4 * B * H * S * S * D * (0.5 if causal else 1.0)
    ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal), 10)
    name = "attention_fwd_causal_S4096_D128" if causal else "attention_fwd_S4096_D128"
    print(f"torch_{name:28s} {flops / ms / 1e9:10.2f}  TFLOP/s")
T, Dm, V = 1024, 1536, 151936
h = torch.rand(T, Dm, device=dev) * 2 - 1
w = (torch.rand(V, Dm, device=dev) * 2 - 1) * 0.05
tgt = (torch.arange(T, device=dev) * 7919) % V
def unfused():
    logits = F.linear(h, w)
    return torch.log_softmax(logits, -1).gather(-1, tgt[:, None]).squeeze(-1)
torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
base = torch.cuda.memory_allocated()
ms = time_ms(unfused, 3)
peak = (torch.cuda.max_memory_allocated() - base) / 2**20
print(f"torch_logprob_fwd_T1024_D1536_V151936 {ms:10.2f}  ms")
print(f"torch_logprob_fwd_extra_memory    {peak:10.2f}  MiB")
hb, wb = h.bfloat16(), w.bfloat16()
def unfused_bf16():
    logits = F.linear(hb, wb).float()
    return torch.log_softmax(logits, -1).gather(-1, tgt[:, None]).squeeze(-1)
torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
base = torch.cuda.memory_allocated()
ms = time_ms(unfused_bf16, 5)
peak = (torch.cuda.max_memory_allocated() - base) / 2**20
print(f"torch_logprob_fwd_bf16_T1024_D1536_V151936 {ms:10.2f}  ms")
print(f"torch_logprob_fwd_bf16_extra_memory {peak:10.2f}  MiB")
PY
else
  say "(PyTorch with CUDA not available, or no time left: no comparison)"
fi

step "summary"
# NCCL all-reduce bandwidth across this machine's GPUs (tools/nccl_allreduce_bench.cu, one
# process, ncclCommInitAll): only with 2 GPUs or more and libnccl present.
NGPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
NCCL_LINE="skipped ($NGPU GPU)"
if [ "$NGPU" -ge 2 ] && [ $((SECONDS - START)) -lt 420 ]; then
  step "NCCL all-reduce bandwidth ($NGPU GPUs)"
  NVCC=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
  CUDA_HOME=$(dirname "$(dirname "$NVCC")")
  if timeout "$(budget 60)" "$NVCC" -O2 -std=c++17 tools/nccl_allreduce_bench.cu -I"$CUDA_HOME/include" \
      -L"$CUDA_HOME/lib64" -L"$CUDA_HOME/lib" -lnccl -o "$BUILD/bin/nccl_allreduce_bench" >>"$LOG" 2>&1; then
    NCCL_OUT=$(timeout "$(budget 40)" "$BUILD/bin/nccl_allreduce_bench" 2>&1 | tee -a "$LOG")
    echo "$NCCL_OUT"
    NCCL_LINE=$(echo "$NCCL_OUT" | awk '/bus bandwidth \(best\)/ { print $(NF-4) " GB/s over " $(NF-1) " GPUs" }')
    [ -n "$NCCL_LINE" ] || { NCCL_LINE="FAILED"; status=1; }
  else
    say "NCCL benchmark build failed (no libnccl?), see $LOG"
    NCCL_LINE="build failed"
  fi
fi

value() { awk -v n="$1" '$1 == n { print $2; exit }' "$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
{
  printf "%-44s %12s %12s %8s  %s\n" "measurement" "ours" "pytorch" "ratio" "target"
  for name in attention_fwd_S4096_D128 attention_fwd_causal_S4096_D128; do
    o=$(value "$name" "$OURS"); t=$(value "torch_$name" "$TORCH")
    printf "%-44s %12s %12s %8s  %s\n" "$name TFLOP/s" "${o:-n/a}" "${t:-n/a}" "$(ratio "$o" "$t")" ">= 0.8"
  done
  o=$(value logprob_fwd_T1024_D1536_V151936 "$OURS"); t=$(value torch_logprob_fwd_T1024_D1536_V151936 "$TORCH")
  printf "%-44s %12s %12s %8s  %s\n" "logprob f32 fwd ms (torch/ours)" "${o:-n/a}" "${t:-n/a}" "$(ratio "$t" "$o")" ">= 1.0"
  o=$(value logprob_fwd_bf16_T1024_D1536_V151936 "$OURS"); t=$(value torch_logprob_fwd_bf16_T1024_D1536_V151936 "$TORCH")
  printf "%-44s %12s %12s %8s  %s\n" "logprob bf16 fwd ms (torch/ours)" "${o:-n/a}" "${t:-n/a}" "$(ratio "$t" "$o")" ">= 1.0"
  t=$(value torch_logprob_fwd_extra_memory "$TORCH"); b=$(value torch_logprob_fwd_bf16_extra_memory "$TORCH")
  printf "%-44s %12s %12s %8s  %s\n" "logprob extra memory MiB f32/bf16" "0" "${t:-n/a}/${b:-n/a}" "" "<= 1/8 of torch"
  for name in rmsnorm_forward_16384x2048 swiglu_forward_32M adamw_32M_params; do
    o=$(value "$name" "$OURS"); c=$(value copy_d2d "$OURS")
    printf "%-44s %12s %12s %8s  %s\n" "$name GB/s" "${o:-n/a}" "copy ${c:-n/a}" "$(ratio "$o" "$c")" ">= 0.70"
  done
  for name in gemm_bf16_cublaslt_4096 gemm_bf16_tiled_4096 attention_bwd_S4096_D128; do
    printf "%-44s %12s\n" "$name" "$(value "$name" "$OURS")"
  done
  printf "%-44s %12s\n" "nccl all-reduce busbw (best size)" "$NCCL_LINE"
} | tee -a "$LOG"
rm -f "$OURS" "$TORCH"
say ""
say "gpu_check: $([ $status -eq 0 ] && echo OK || echo FAILURES) in $((SECONDS - START)) s; log: $LOG"
exit $status
