// SwiGLU kernels (launchers: visplay/kernels/swiglu.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + __expf(-x)); }

__global__ void swiglu_forward_kernel(const float* gate, const float* up, long n, float* y);
__global__ void swiglu_backward_kernel(const float* gate, const float* up, const float* dy, long n,
                                       float* dgate, float* dup);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
