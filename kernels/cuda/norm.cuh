// RMSNorm / LayerNorm kernels (launchers: visplay/kernels/norm.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

// mean == nullptr selects RMSNorm (no centring, no bias).
__global__ void norm_forward_kernel(const float* x, const float* weight, const float* bias, int dim,
                                    float eps, float* y, float* mean, float* rstd);
__global__ void norm_backward_dx_kernel(const float* x, const float* weight, const float* mean,
                                        const float* rstd, const float* dy, int dim, float* dx);
__global__ void norm_backward_params_kernel(const float* x, const float* mean, const float* rstd,
                                            const float* dy, int rows, int dim, float* dweight,
                                            float* dbias);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
