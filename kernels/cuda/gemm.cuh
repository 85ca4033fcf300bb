// Tiled GEMM kernels (launchers: visplay/kernels/gemm.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

constexpr int kGemmTile = 32;   // both kernels compute 32x32 tiles of C
constexpr int kGemmF32K = 16;   // k-slice of the f32 kernel
constexpr int kGemmBf16K = 16;  // k-slice of the bf16 kernel (one mma k-step)

// Element (row, col) of op(X) for a row-major X with leading dimension ld.
template <class T>
__device__ __forceinline__ T load_op(const T* X, bool trans, int ld, int row, int col) {
  return trans ? X[static_cast<long>(col) * ld + row] : X[static_cast<long>(row) * ld + col];
}

__global__ void gemm_f32_tiled_kernel(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                      const float* A, int lda, const float* B, int ldb, float beta,
                                      float* C, int ldc);
__global__ void gemm_bf16_tiled_kernel(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                       const __nv_bfloat16* A, int lda, const __nv_bfloat16* B,
                                       int ldb, float beta, float* C, int ldc);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
