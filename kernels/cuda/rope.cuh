// RoPE kernel (launcher: visplay/kernels/rope.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void rope_kernel(const float* x, const int* positions, int tokens, int heads,
                            int head_dim, float theta, float sin_sign, float* y);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
