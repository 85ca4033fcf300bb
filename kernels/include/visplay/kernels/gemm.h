// Plain GEMMs, row-major: cuBLASLt on the cuda backend, our tiled kernels on sim.
// Declared for both builds of kernels/cuda/gemm.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_GEMM_H_
#define VISPLAY_KERNELS_GEMM_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/gemm.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/gemm.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

// C[M,N] = alpha * op(A) op(B) + beta * C, row-major with leading dimensions (elements).
// op(A) is A[M,K] (lda >= K) or, with trans_a, the transpose of A[K,M] (lda >= M); the
// same for B (B[K,N] or, with trans_b, B[N,K]). beta == 0 never reads C.
// cuda: cuBLASLt. sim: gemm_f32_tiled.
void gemm_f32(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
              const float* B, int ldb, float beta, float* C, int ldc, void* stream);
// The same with bf16 A and B (raw bits, round-to-nearest-even bf16), f32 accumulate and C.
// cuda: cuBLASLt. sim: gemm_bf16_tiled.
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A,
               int lda, const uint16_t* B, int ldb, float beta, float* C, int ldc, void* stream);

// Our hand-written kernels, on both backends: a 32x32 shared-memory tiled f32 GEMM, and
// a bf16 GEMM on tensor cores (mma.sync m16n8k16, 4 warps per 32x32 tile).
void gemm_f32_tiled(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc, void* stream);
void gemm_bf16_tiled(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const uint16_t* A, int lda, const uint16_t* B, int ldb, float beta, float* C,
                     int ldc, void* stream);

#endif
