// Elementwise, reduction and softmax kernels (launchers: visplay/kernels/elementwise.h).
#pragma once

#include "kernels/cuda/common.cuh"
#include "visplay/kernels/elementwise.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void binary_kernel(BinaryOp op, const float* a, const float* b, float* out,
                              StridedShape shape, int64_t total);
__global__ void unary_forward_kernel(UnaryOp op, const float* x, float* out, int64_t n, float p);
__global__ void unary_backward_kernel(UnaryOp op, const float* dy, const float* x, const float* y,
                                      float* dx, int64_t n, float p);
__global__ void sum_dim_kernel(const float* x, float* out, int64_t outer, int64_t n, int64_t inner);
__global__ void sum_all_kernel(const float* x, float* out, int64_t n);
__global__ void softmax_forward_kernel(const float* x, float* y, int64_t n, bool log);
__global__ void softmax_backward_kernel(const float* dy, const float* y, float* dx, int64_t n,
                                        bool log);
__global__ void gather_forward_kernel(const float* x, const int64_t* index, float* out,
                                      int64_t outer, int64_t n, int64_t m, int64_t inner);
__global__ void gather_backward_kernel(const float* dy, const int64_t* index, float* dx,
                                       int64_t outer, int64_t n, int64_t m, int64_t inner);

__global__ void unfold_patches_kernel(const float* images, int64_t B, int64_t C, int64_t H, int64_t W,
                                      int64_t P, float* patches);
__global__ void embedding_forward_kernel(const float* table, const int64_t* ids, int64_t total,
                                         int64_t dim, float* out);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
