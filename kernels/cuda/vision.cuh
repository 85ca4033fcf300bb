// ViT kernels (launchers: visplay/kernels/vision.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

// Exact GELU and its derivative: Phi(u) + u phi(u).
__device__ __forceinline__ float gelu_erf(float u) {
  return 0.5f * u * (1.0f + erff(u * 0.70710678118654752f));
}
__device__ __forceinline__ float gelu_erf_grad(float u) {
  float cdf = 0.5f * (1.0f + erff(u * 0.70710678118654752f));
  float pdf = 0.39894228040143268f * __expf(-0.5f * u * u);
  return cdf + u * pdf;
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
