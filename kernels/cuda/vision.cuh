// ViT kernels (launchers: visplay/kernels/vision.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

// Exact GELU and its derivative: Phi(u) + u phi(u).
// GELU in its tanh form, the one the runtime's gelu op (and the ViT) uses, so
// this epilogue can replace linear + gelu without changing results.
__device__ __forceinline__ float gelu_tanh_vision(float u) {
  const float k = 0.7978845608028654f;
  return 0.5f * u * (1.0f + tanhf(k * (u + 0.044715f * u * u * u)));
}
__device__ __forceinline__ float gelu_tanh_vision_grad(float u) {
  const float k = 0.7978845608028654f;
  float t = tanhf(k * (u + 0.044715f * u * u * u));
  return 0.5f * (1.0f + t) + 0.5f * u * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * u * u);
}

__global__ void patch_embed_kernel(const float* image_f32, const uint8_t* image_u8,
                                   const float* mean, const float* std, int channels, int height,
                                   int width, int patch, const float* weight, const float* bias,
                                   const float* pos, int embed, float* out);
__global__ void bias_gelu_forward_kernel(const float* x, const float* bias, long total, int dim,
                                         float* y);
__global__ void bias_gelu_backward_kernel(const float* x, const float* bias, const float* dy,
                                          long total, int dim, float* dx);
__global__ void column_sum_kernel(const float* x, int rows, int dim, float* sums);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
