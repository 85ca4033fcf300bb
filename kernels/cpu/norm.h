// RMSNorm and LayerNorm over the last dimension of a [rows, n] matrix.
// The backward passes reduce the weight gradients over rows in fixed chunks,
// so results do not depend on the number of threads.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// y = x / sqrt(mean(x^2) + eps) * w ; rstd[r] saved for the backward.
template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t n, double eps);
// dw may be null (no weight gradient wanted); dw is overwritten, not accumulated.
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw,
                      int64_t rows, int64_t n);

// y = (x - mean) * rstd * w + b ; mean and rstd saved for the backward.
template <class T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t n, double eps);
template <class T>
void layernorm_backward(const T* dy, const T* x, const T* w, const T* mean, const T* rstd, T* dx,
                        T* dw, T* db, int64_t rows, int64_t n);

}  // namespace visplay::kernels::cpu
