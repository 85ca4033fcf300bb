// CPU GEMM: C = alpha * op(A) op(B) + beta * C, row-major: f32 products up to
// kPackedGemmMaxWork multiply-adds on our packed kernel, the rest (and f64) on
// OpenBLAS.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// op(A) is M x K, op(B) is K x N, C is M x N; lda/ldb/ldc are row strides.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// f32 through the packed register-blocked kernel (any size; gemm<float> uses
// it up to kPackedGemmMaxWork = M * N * K). With beta == 0, C is not read.
// Deterministic: each element's sum runs in k order whatever the thread count.
inline constexpr int64_t kPackedGemmMaxWork = int64_t(1) << 28;
void gemm_f32_packed(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc);

// Naive triple loop in double: the reference every GEMM is checked against.
template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                    const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace visplay::kernels::cpu
