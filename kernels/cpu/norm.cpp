#include "kernels/cpu/norm.h"
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace visplay::kernels::cpu {

namespace {
constexpr int64_t kRowChunk = 32;  // rows per partial weight-gradient sum

// Sums per-chunk partials [chunks, n] into out[n] in chunk order.
template <class T>
void sum_partials(const std::vector<double>& partial, int64_t chunks, int64_t n, T* out) {
  for (int64_t j = 0; j < n; ++j) {
    double s = 0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * n + j];
    out[j] = static_cast<T>(s);
  }
}
}  // namespace

template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t n, double eps) {
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    double ss = 0;
    for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(xr[j]) * xr[j];
    T rs = static_cast<T>(1.0 / std::sqrt(ss / n + eps));
    rstd[r] = rs;
    T* yr = y + r * n;
    for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] * rs * w[j];
  }
}

// dx = rstd * (w*dy - x * rstd^2 * mean(w*dy*x)); dw = sum_rows dy * x * rstd
template <class T>
void rmsnorm_backward(const T* dy, const T* x, const T* w, const T* rstd, T* dx, T* dw,
                      int64_t rows, int64_t n) {
  int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<double> partial(dw ? chunks * n : 0, 0.0);
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements)
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t r = c * kRowChunk; r < std::min(rows, (c + 1) * kRowChunk); ++r) {
      const T* xr = x + r * n;
      const T* dyr = dy + r * n;
      double rs = rstd[r];
      double dot = 0;
      for (int64_t j = 0; j < n; ++j) dot += static_cast<double>(dyr[j]) * w[j] * xr[j];
      double k = rs * rs * rs * dot / n;
      T* dxr = dx + r * n;
      for (int64_t j = 0; j < n; ++j) dxr[j] = static_cast<T>(rs * dyr[j] * w[j] - k * xr[j]);
      if (dw) {
        double* p = partial.data() + c * n;
        for (int64_t j = 0; j < n; ++j) p[j] += static_cast<double>(dyr[j]) * xr[j] * rs;
      }
    }
  }
  if (dw) sum_partials(partial, chunks, n, dw);
}

template <class T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t n, double eps) {
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    double m = 0;
    for (int64_t j = 0; j < n; ++j) m += xr[j];
    m /= n;
    double v = 0;
    for (int64_t j = 0; j < n; ++j) v += (xr[j] - m) * (xr[j] - m);
    v /= n;
    double rs = 1.0 / std::sqrt(v + eps);
    mean[r] = static_cast<T>(m);
    rstd[r] = static_cast<T>(rs);
    T* yr = y + r * n;
    for (int64_t j = 0; j < n; ++j) yr[j] = static_cast<T>((xr[j] - m) * rs * w[j] + b[j]);
  }
}

// xhat = (x-mean)*rstd; dxhat = dy*w;
// dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat*xhat))
template <class T>
void layernorm_backward(const T* dy, const T* x, const T* w, const T* mean, const T* rstd, T* dx,
                        T* dw, T* db, int64_t rows, int64_t n) {
  int64_t chunks = (rows + kRowChunk - 1) / kRowChunk;
  std::vector<double> pw(dw ? chunks * n : 0, 0.0), pb(db ? chunks * n : 0, 0.0);
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements)
  for (int64_t c = 0; c < chunks; ++c) {
    for (int64_t r = c * kRowChunk; r < std::min(rows, (c + 1) * kRowChunk); ++r) {
      const T* xr = x + r * n;
      const T* dyr = dy + r * n;
      double m = mean[r], rs = rstd[r];
      double sum_dxhat = 0, sum_dxhat_xhat = 0;
      for (int64_t j = 0; j < n; ++j) {
        double xhat = (xr[j] - m) * rs;
        double dxhat = static_cast<double>(dyr[j]) * w[j];
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
      }
      sum_dxhat /= n;
      sum_dxhat_xhat /= n;
      T* dxr = dx + r * n;
      for (int64_t j = 0; j < n; ++j) {
        double xhat = (xr[j] - m) * rs;
        double dxhat = static_cast<double>(dyr[j]) * w[j];
        dxr[j] = static_cast<T>(rs * (dxhat - sum_dxhat - xhat * sum_dxhat_xhat));
        if (dw) pw[c * n + j] += dyr[j] * xhat;
        if (db) pb[c * n + j] += dyr[j];
      }
    }
  }
  if (dw) sum_partials(pw, chunks, n, dw);
  if (db) sum_partials(pb, chunks, n, db);
}

#define INSTANTIATE(T)                                                                         \
  template void rmsnorm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, double);      \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t,   \
                                    int64_t);                                                  \
  template void layernorm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t,        \
                                     int64_t, double);                                         \
  template void layernorm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, \
                                      T*, int64_t, int64_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace visplay::kernels::cpu
