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

// C = op(A) op(B) + bias: bias[j] added to every row of C (a linear layer's
// forward). The same values, bit for bit, as C filled with the bias rows and
// gemm(..., alpha 1, beta 1); the f32 packed path adds the bias in its
// epilogue instead of a separate fill and a read of C.
template <class T>
void gemm_bias(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
               const T* B, int64_t ldb, const T* bias, T* C, int64_t ldc);

// f32 through the packed register-blocked kernel (any size; gemm<float> uses
// it up to kPackedGemmMaxWork = M * N * K). C = alpha * op(A) op(B) + beta *
// C0, where C0 is C, or with `bias` the row bias[0, N) repeated (C is then only
// written). With beta == 0, C0 is not read.
// Deterministic: each element's sum runs in k order whatever the thread count.
inline constexpr int64_t kPackedGemmMaxWork = int64_t(1) << 28;
void gemm_f32_packed(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, const float* bias = nullptr);

// Naive triple loop in double: the reference every GEMM is checked against.
template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                    const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace visplay::kernels::cpu
