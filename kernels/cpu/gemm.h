// CPU GEMM: C = alpha * op(A) op(B) + beta * C, row-major, via OpenBLAS.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// op(A) is M x K, op(B) is K x N, C is M x N; lda/ldb/ldc are row strides.
template <class T>
void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
          int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

// Naive triple loop in double: the reference every GEMM is checked against.
template <class T>
void gemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, T alpha,
                    const T* A, int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc);

}  // namespace visplay::kernels::cpu
