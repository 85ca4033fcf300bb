#include "kernels/cpu/gemm.h"

#include <cblas.h>

#include <algorithm>
#include <type_traits>

namespace visplay::kernels::cpu {

// f32 up to ~640^3 multiply-adds goes to the packed kernel (gemm_packed.cpp),
// measured 1.6-1.8x OpenBLAS 0.3.21 (Haswell kernel) at the demo model's
// shapes on one core; larger products go to OpenBLAS's cache-blocked path.
namespace {

bool fits_packed(int64_t M, int64_t N, int64_t K) {
  // The packing scratch is kept per thread: bound it too (<= 16 MiB per operand).
  const int64_t k_block = std::min<int64_t>(K, 256);
  return M * N * K <= kPackedGemmMaxWork && M * k_block <= (int64_t(1) << 22) &&
         N * k_block <= (int64_t(1) << 22);
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                 int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if (fits_packed(M, N, K)) {
    gemm_f32_packed(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <>
void gemm<double>(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
                  int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
              K, alpha, A, lda, B, ldb, beta, C, ldc);
}

template <class T>
void gemm_bias(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const T* A, int64_t lda,
               const T* B, int64_t ldb, const T* bias, T* C, int64_t ldc) {
  if (M == 0 || N == 0) return;
  if constexpr (std::is_same_v<T, float>) {
    if (fits_packed(M, N, K)) {
      gemm_f32_packed(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 1.0f, C, ldc, bias);
      return;
    }
  }
  for (int64_t i = 0; i < M; ++i) std::copy(bias, bias + N, C + i * ldc);
  gemm<T>(ta, tb, M, N, K, T(1), A, lda, B, ldb, T(1), C, ldc);
}
template void gemm_bias<float>(bool, bool, int64_t, int64_t, int64_t, const float*, int64_t,
                               const float*, int64_t, const float*, float*, int64_t);
template void gemm_bias<double>(bool, bool, int64_t, int64_t, int64_t, const double*, int64_t,
                                const double*, int64_t, const double*, double*, int64_t);

template <class T>
void gemm_reference(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A,
                    int64_t lda, const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double acc = 0;
      for (int64_t k = 0; k < K; ++k) {
        double a = ta ? A[k * lda + i] : A[i * lda + k];
        double b = tb ? B[j * ldb + k] : B[k * ldb + j];
        acc += a * b;
      }
      double c = beta == T(0) ? 0.0 : static_cast<double>(beta) * C[i * ldc + j];
      C[i * ldc + j] = static_cast<T>(static_cast<double>(alpha) * acc + c);
    }
}
template void gemm_reference<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*,
                                    int64_t, const float*, int64_t, float, float*, int64_t);
template void gemm_reference<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*,
                                     int64_t, const double*, int64_t, double, double*, int64_t);

}  // namespace visplay::kernels::cpu
