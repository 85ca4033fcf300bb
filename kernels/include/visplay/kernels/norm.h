// RMSNorm and LayerNorm, forward and backward, over the last dimension (rows x dim).
// Declared for both builds of kernels/cuda/norm.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_NORM_H_
#define VISPLAY_KERNELS_NORM_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/norm.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/norm.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

// y = x / sqrt(mean(x^2) + eps) * weight; saves rstd[rows] for the backward.
void rmsnorm_forward(const float* x, const float* weight, int rows, int dim, float eps, float* y,
                     float* rstd, void* stream);
// From dy: dx[rows, dim] and dweight[dim] (overwritten; summed over rows in a fixed
// order, no atomics).
void rmsnorm_backward(const float* x, const float* weight, const float* rstd, const float* dy,
                      int rows, int dim, float* dx, float* dweight, void* stream);

// y = (x - mean) / sqrt(var + eps) * weight + bias (biased variance); saves mean, rstd.
void layernorm_forward(const float* x, const float* weight, const float* bias, int rows, int dim,
                       float eps, float* y, float* mean, float* rstd, void* stream);
// dx, dweight, dbias (the last two overwritten, deterministic).
void layernorm_backward(const float* x, const float* weight, const float* mean, const float* rstd,
                        const float* dy, int rows, int dim, float* dx, float* dweight, float* dbias,
                        void* stream);

#endif
