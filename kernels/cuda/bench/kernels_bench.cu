// Kernel benchmarks on the cuda backend (run by tools/gpu_check.sh on a GPU machine).
// Prints one line per measurement: "name  value  unit  note", easy to join with the
// PyTorch numbers the script measures on the same machine.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "visplay/kernels/adamw.h"
#include "visplay/kernels/attention.h"
#include "visplay/kernels/gemm.h"
#include "visplay/kernels/logprob.h"
#include "visplay/kernels/norm.h"
#include "visplay/kernels/swiglu.h"

namespace cu = visplay::kernels::cuda;

static void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) {
    std::fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(err));
    std::exit(1);
  }
}

// Device buffer filled with uniform values in [lo, hi) (bf16 bits when T is uint16_t).
template <class T>
T* random_device(size_t n, float lo, float hi, uint64_t seed) {
  std::vector<T> host(n);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  for (auto& x : host) {
    float f = dist(rng);
    if constexpr (sizeof(T) == 2) {
      uint32_t u;
      std::memcpy(&u, &f, 4);
      x = static_cast<T>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    } else {
      x = static_cast<T>(f);
    }
  }
  T* d = nullptr;
  check(cudaMalloc(&d, n * sizeof(T)), "cudaMalloc");
  check(cudaMemcpy(d, host.data(), n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
  return d;
}

template <class T>
T* zeros_device(size_t n) {
  T* d = nullptr;
  check(cudaMalloc(&d, n * sizeof(T)), "cudaMalloc");
  check(cudaMemset(d, 0, n * sizeof(T)), "cudaMemset");
  return d;
}

// Mean milliseconds per call over `iters` calls after one warm-up call.
template <class F>
double time_ms(F&& f, int iters) {
  f();
  check(cudaDeviceSynchronize(), "warm-up");
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start);
  for (int i = 0; i < iters; ++i) f();
  cudaEventRecord(stop);
  check(cudaEventSynchronize(stop), "benchmark");
  float ms = 0.0f;
  cudaEventElapsedTime(&ms, start, stop);
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms / iters;
}

static void report(const char* name, double value, const char* unit, const std::string& note = "") {
  std::printf("%-34s %10.2f  %-7s %s\n", name, value, unit, note.c_str());
  std::fflush(stdout);
}

int main() {
  cudaDeviceProp prop;
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  std::printf("# device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);

  // Copy bandwidth: the yardstick for the memory-bound kernels (bytes read + written).
  size_t copy_bytes = size_t(1) << 30;
  char *src = zeros_device<char>(copy_bytes), *dst = zeros_device<char>(copy_bytes);
  double copy_ms =
      time_ms([&] { cudaMemcpyAsync(dst, src, copy_bytes, cudaMemcpyDeviceToDevice); }, 10);
  double copy_gbs = 2.0 * copy_bytes / copy_ms / 1e6;
  report("copy_d2d", copy_gbs, "GB/s");
  cudaFree(src);
  cudaFree(dst);

  // Memory-bound kernels.
  {
    int rows = 16384, dim = 2048;
    float *x = random_device<float>(size_t(rows) * dim, -1, 1, 1),
          *w = random_device<float>(dim, 0.5f, 1.5f, 2);
    float *y = zeros_device<float>(size_t(rows) * dim), *rstd = zeros_device<float>(rows);
    double ms = time_ms([&] { cu::rmsnorm_forward(x, w, rows, dim, 1e-6f, y, rstd, nullptr); }, 20);
    double gbs = 2.0 * rows * dim * 4 / ms / 1e6;
    report("rmsnorm_forward_16384x2048", gbs, "GB/s",
           std::to_string(int(100 * gbs / copy_gbs)) + "% of copy");
    long n = long(rows) * dim;
    float* up = random_device<float>(n, -1, 1, 3);
    ms = time_ms([&] { cu::swiglu_forward(x, up, n, y, nullptr); }, 20);
    gbs = 3.0 * n * 4 / ms / 1e6;
    report("swiglu_forward_32M", gbs, "GB/s",
           std::to_string(int(100 * gbs / copy_gbs)) + "% of copy");
    float *m = zeros_device<float>(n), *v = zeros_device<float>(n);
    cu::AdamWTensor t{y, up, m, v, n};
    cu::AdamWOptions o;
    ms = time_ms([&] { cu::adamw_multi(&t, 1, o, nullptr); }, 20);
    gbs = 7.0 * n * 4 / ms / 1e6;
    report("adamw_32M_params", gbs, "GB/s",
           std::to_string(int(100 * gbs / copy_gbs)) + "% of copy");
    for (float* p : {x, w, y, rstd, up, m, v}) cudaFree(p);
  }

  // GEMM: cuBLASLt vs our tensor-core tiled kernel, bf16 in, f32 out.
  {
    int n = 4096;
    uint16_t *a = random_device<uint16_t>(size_t(n) * n, -1, 1, 4),
             *b = random_device<uint16_t>(size_t(n) * n, -1, 1, 5);
    float* c = zeros_device<float>(size_t(n) * n);
    double flops = 2.0 * n * n * n;
    double ms = time_ms(
        [&] { cu::gemm_bf16(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, nullptr); }, 10);
    report("gemm_bf16_cublaslt_4096", flops / ms / 1e9, "TFLOP/s");
    ms = time_ms(
        [&] { cu::gemm_bf16_tiled(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n, nullptr); },
        3);
    report("gemm_bf16_tiled_4096", flops / ms / 1e9, "TFLOP/s");
    cudaFree(a);
    cudaFree(b);
    cudaFree(c);
  }

  // Flash attention, bf16, head dim 128, S = 4096, 16 heads, batch 1.
  {
    cu::AttentionShape s;
    s.batch = 1;
    s.q_len = s.kv_len = 4096;
    s.q_heads = s.kv_heads = 16;
    s.head_dim = 128;
    s.scale = 1.0f / std::sqrt(128.0f);
    size_t n = size_t(s.batch) * s.q_len * s.q_heads * s.head_dim;
    size_t nl = size_t(s.batch) * s.q_heads * s.q_len;
    uint16_t *q = random_device<uint16_t>(n, -1, 1, 6), *k = random_device<uint16_t>(n, -1, 1, 7),
             *v = random_device<uint16_t>(n, -1, 1, 8);
    float *o = zeros_device<float>(n), *lse = zeros_device<float>(nl),
          *dout = random_device<float>(n, -1, 1, 9);
    float *delta = zeros_device<float>(nl), *dq = zeros_device<float>(n),
          *dk = zeros_device<float>(n), *dv = zeros_device<float>(n);
    for (bool causal : {false, true}) {
      s.causal = causal;
      double flops = 4.0 * s.batch * s.q_heads * double(s.q_len) * s.kv_len * s.head_dim *
                     (causal ? 0.5 : 1.0);
      double ms =
          time_ms([&] { cu::flash_attention_forward(q, k, v, nullptr, s, o, lse, nullptr); }, 10);
      report(causal ? "attention_fwd_causal_S4096_D128" : "attention_fwd_S4096_D128",
             flops / ms / 1e9, "TFLOP/s");
      ms = time_ms(
          [&] {
            cu::flash_attention_backward(q, k, v, nullptr, s, o, dout, lse, delta, dq, dk, dv,
                                         nullptr);
          },
          3);
      report(causal ? "attention_bwd_causal_S4096_D128" : "attention_bwd_S4096_D128",
             2.5 * flops / ms / 1e9, "TFLOP/s");
    }
    for (void* p : {(void*)q, (void*)k, (void*)v, (void*)o, (void*)lse, (void*)dout, (void*)delta,
                    (void*)dq, (void*)dk, (void*)dv})
      cudaFree(p);
  }

  // Fused log-prob at Qwen2's vocabulary: time and the memory beyond inputs/outputs.
  {
    int T = 1024, D = 1536, V = 151936;
    float *h = random_device<float>(size_t(T) * D, -1, 1, 10),
          *w = random_device<float>(size_t(V) * D, -0.05f, 0.05f, 11);
    int* tgt = nullptr;
    std::vector<int> host_tgt(T);
    for (int i = 0; i < T; ++i) host_tgt[i] = (i * 7919) % V;
    check(cudaMalloc(&tgt, T * sizeof(int)), "cudaMalloc");
    cudaMemcpy(tgt, host_tgt.data(), T * sizeof(int), cudaMemcpyHostToDevice);
    float *lp = zeros_device<float>(T), *ent = zeros_device<float>(T),
          *lse = zeros_device<float>(T);
    size_t free_before, total;
    cudaMemGetInfo(&free_before, &total);
    double ms = time_ms([&] { cu::logprob_forward(h, w, tgt, T, D, V, lp, ent, lse, nullptr); }, 3);
    report("logprob_fwd_T1024_D1536_V151936", ms, "ms",
           std::to_string(2.0 * T * D * V / ms / 1e9) + " TFLOP/s");
    report("logprob_fwd_extra_memory", 0.0, "MiB",
           "no T x V buffer; torch's logits alone: " +
               std::to_string(double(T) * V * 4 / (1 << 20)) + " MiB f32");
    uint16_t *hb = random_device<uint16_t>(size_t(T) * D, -1, 1, 12),
             *wb = random_device<uint16_t>(size_t(V) * D, -0.05f, 0.05f, 13);
    ms = time_ms([&] { cu::logprob_forward_bf16(hb, wb, tgt, T, D, V, lp, ent, lse, nullptr); }, 5);
    report("logprob_fwd_bf16_T1024_D1536_V151936", ms, "ms",
           std::to_string(2.0 * T * D * V / ms / 1e9) + " TFLOP/s");
    cudaFree(hb);
    cudaFree(wb);
    std::vector<float> host_lp(T);
    cudaMemcpy(host_lp.data(), lp, T * sizeof(float), cudaMemcpyDeviceToHost);
    int positive = 0;
    for (float x : host_lp) positive += x > 0.0f || std::isnan(x);
    report("logprob_positive_or_nan", positive, "tokens", "must be 0");
    for (void* p : {(void*)h, (void*)w, (void*)tgt, (void*)lp, (void*)ent, (void*)lse}) cudaFree(p);
  }
  return 0;
}
