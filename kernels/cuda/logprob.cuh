// Fused log-prob kernels (launchers: visplay/kernels/logprob.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

constexpr int kLogprobTokens = 16;  // tokens per block
constexpr int kLogprobChunk = 128;  // vocabulary entries per chunk = threads per block

__device__ __forceinline__ float dot_row(const float* a, const float* b, int n) {
  float acc = 0.0f;
  for (int i = 0; i < n; ++i) acc = fmaf(a[i], b[i], acc);
  return acc;
}

// z[t] = hidden row (token0 + t) . w_row for t < count. The weight row is read once
// (k outer); the hidden values are the same address for every thread (broadcast). The
// summation order equals dot_row's, so the target logit matches bit for bit.
__device__ __forceinline__ void token_logits(const float* hidden_rows, const float* w_row,
                                             int count, int dim, float z[kLogprobTokens]) {
  for (int t = 0; t < kLogprobTokens; ++t) z[t] = 0.0f;
  for (int k = 0; k < dim; ++k) {
    float w = w_row[k];
    for (int t = 0; t < kLogprobTokens; ++t)
      if (t < count) z[t] = fmaf(hidden_rows[static_cast<long>(t) * dim + k], w, z[t]);
  }
}

// Online softmax state over a set of logits: max m, s = sum e^(z - m), w = sum e^(z - m) z.
struct SoftmaxState {
  float m, s, w;
};

__device__ __forceinline__ SoftmaxState softmax_merge(SoftmaxState a, SoftmaxState b) {
  float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return a;
  float ea = __expf(a.m - m), eb = __expf(b.m - m);
  return {m, a.s * ea + b.s * eb, a.w * ea + b.w * eb};
}

__global__ void logprob_forward_kernel(const float* hidden, const float* weight, const int* targets,
                                       int tokens, int dim, int vocab, float* logprob,
                                       float* entropy, float* lse);
constexpr int kLogprobMmaRows = 64;  // tokens per block of the bf16 kernel (16 per warp)
constexpr int kLogprobMmaCols = 64;  // vocabulary entries per tile
constexpr int kLogprobMmaK = 64;     // hidden dims per shared-memory slice

__global__ void logprob_forward_bf16_kernel(const unsigned short* hidden,
                                            const unsigned short* weight, const int* targets,
                                            int tokens, int dim, int vocab, float* logprob,
                                            float* entropy, float* lse);
__global__ void logprob_backward_hidden_kernel(const float* hidden, const float* weight,
                                               const int* targets, int tokens, int dim, int vocab,
                                               const float* lse, const float* entropy,
                                               const float* dlogprob, const float* dentropy,
                                               float* dhidden);
__global__ void logprob_backward_weight_kernel(const float* hidden, const float* weight,
                                               const int* targets, int tokens, int dim, int vocab,
                                               const float* lse, const float* entropy,
                                               const float* dlogprob, const float* dentropy,
                                               float* dweight);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
