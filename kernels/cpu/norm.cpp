#include "kernels/cpu/norm.h"

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/cpu/parallel.h"

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

// f32: rows in groups of four (here and below). Each row's reductions are
// sequential double chains (the order that fixes the values); four rows'
// chains interleaved keep the FPU busy where one chain waited on latency.
// f64 (the reference path) stays one row at a time: there GCC vectorised
// the interleaved form's products differently, which moved whether they
// fuse into the adds, so its bits changed.
constexpr int64_t kGroup = 4;
template <class T>
constexpr int64_t group_rows = std::is_same_v<T, float> ? kGroup : 1;

template <class T>
void rmsnorm_forward(const T* x, const T* w, T* y, T* rstd, int64_t rows, int64_t n, double eps) {
  constexpr int64_t G = group_rows<T>;
  const int64_t groups = (rows + G - 1) / G;
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements)
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = g * G, nr = std::min(G, rows - r0);
    double ss[kGroup] = {0, 0, 0, 0};
    if (G == kGroup && nr == kGroup) {
      const T* xg = x + r0 * n;
      for (int64_t j = 0; j < n; ++j)
        for (int64_t q = 0; q < kGroup; ++q)
          ss[q] += static_cast<double>(xg[q * n + j]) * xg[q * n + j];
    } else {
      for (int64_t q = 0; q < nr; ++q) {
        const T* xr = x + (r0 + q) * n;
        for (int64_t j = 0; j < n; ++j) ss[q] += static_cast<double>(xr[j]) * xr[j];
      }
    }
    for (int64_t q = 0; q < nr; ++q) {
      const int64_t r = r0 + q;
      const T* xr = x + r * n;
      T rs = static_cast<T>(1.0 / std::sqrt(ss[q] / n + eps));
      rstd[r] = rs;
      T* yr = y + r * n;
      for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] * rs * w[j];
    }
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
    const int64_t end = std::min(rows, (c + 1) * kRowChunk);
    for (int64_t r0 = c * kRowChunk; r0 < end; r0 += group_rows<T>) {
      const int64_t nr = std::min(group_rows<T>, end - r0);
      double dot[kGroup] = {0, 0, 0, 0};
      if (nr == kGroup) {
        for (int64_t j = 0; j < n; ++j)
          for (int64_t q = 0; q < kGroup; ++q)
            dot[q] += static_cast<double>(dy[(r0 + q) * n + j]) * w[j] * x[(r0 + q) * n + j];
      } else {
        for (int64_t q = 0; q < nr; ++q)
          for (int64_t j = 0; j < n; ++j)
            dot[q] += static_cast<double>(dy[(r0 + q) * n + j]) * w[j] * x[(r0 + q) * n + j];
      }
      for (int64_t q = 0; q < nr; ++q) {  // in row order: the dw partials sum over rows
        const int64_t r = r0 + q;
        const T* xr = x + r * n;
        const T* dyr = dy + r * n;
        double rs = rstd[r];
        double k = rs * rs * rs * dot[q] / n;
        T* dxr = dx + r * n;
        for (int64_t j = 0; j < n; ++j) dxr[j] = static_cast<T>(rs * dyr[j] * w[j] - k * xr[j]);
        if (dw) {
          double* p = partial.data() + c * n;
          for (int64_t j = 0; j < n; ++j) p[j] += static_cast<double>(dyr[j]) * xr[j] * rs;
        }
      }
    }
  }
  if (dw) sum_partials(partial, chunks, n, dw);
}

template <class T>
void layernorm_forward(const T* x, const T* w, const T* b, T* y, T* mean, T* rstd, int64_t rows,
                       int64_t n, double eps) {
  constexpr int64_t G = group_rows<T>;
  const int64_t groups = (rows + G - 1) / G;
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements)
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = g * G;
    if (G < kGroup || r0 + G > rows) {  // f64, or the last rows: one at a time
      for (int64_t r = r0; r < rows; ++r) {
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
      continue;
    }
    const T* xg = x + r0 * n;
    double m[kGroup] = {0, 0, 0, 0}, v[kGroup] = {0, 0, 0, 0}, rs[kGroup];
    for (int64_t j = 0; j < n; ++j)
      for (int64_t q = 0; q < kGroup; ++q) m[q] += xg[q * n + j];
    for (int64_t q = 0; q < kGroup; ++q) m[q] /= n;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t q = 0; q < kGroup; ++q) v[q] += (xg[q * n + j] - m[q]) * (xg[q * n + j] - m[q]);
    for (int64_t q = 0; q < kGroup; ++q) {
      v[q] /= n;
      rs[q] = 1.0 / std::sqrt(v[q] + eps);
      mean[r0 + q] = static_cast<T>(m[q]);
      rstd[r0 + q] = static_cast<T>(rs[q]);
      const T* xr = xg + q * n;
      T* yr = y + (r0 + q) * n;
      for (int64_t j = 0; j < n; ++j) yr[j] = static_cast<T>((xr[j] - m[q]) * rs[q] * w[j] + b[j]);
    }
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
    const int64_t end = std::min(rows, (c + 1) * kRowChunk);
    for (int64_t r0 = c * kRowChunk; r0 < end; r0 += group_rows<T>) {
      const int64_t nr = std::min(group_rows<T>, end - r0);
      double m[kGroup], rs[kGroup];
      double sum_dxhat[kGroup] = {0, 0, 0, 0}, sum_dxhat_xhat[kGroup] = {0, 0, 0, 0};
      for (int64_t q = 0; q < nr; ++q) m[q] = mean[r0 + q], rs[q] = rstd[r0 + q];
      auto accumulate = [&](int64_t q, int64_t j) {
        const int64_t r = r0 + q;
        double xhat = (x[r * n + j] - m[q]) * rs[q];
        double dxhat = static_cast<double>(dy[r * n + j]) * w[j];
        sum_dxhat[q] += dxhat;
        sum_dxhat_xhat[q] += dxhat * xhat;
      };
      if (nr == kGroup) {
        for (int64_t j = 0; j < n; ++j)
          for (int64_t q = 0; q < kGroup; ++q) accumulate(q, j);
      } else {
        for (int64_t q = 0; q < nr; ++q)
          for (int64_t j = 0; j < n; ++j) accumulate(q, j);
      }
      for (int64_t q = 0; q < nr; ++q) {  // in row order: the dw/db partials sum over rows
        const int64_t r = r0 + q;
        const T* xr = x + r * n;
        const T* dyr = dy + r * n;
        const double mean_dxhat = sum_dxhat[q] / n, mean_dxhat_xhat = sum_dxhat_xhat[q] / n;
        T* dxr = dx + r * n;
        for (int64_t j = 0; j < n; ++j) {
          double xhat = (xr[j] - m[q]) * rs[q];
          double dxhat = static_cast<double>(dyr[j]) * w[j];
          dxr[j] = static_cast<T>(rs[q] * (dxhat - mean_dxhat - xhat * mean_dxhat_xhat));
          if (dw) pw[c * n + j] += dyr[j] * xhat;
          if (db) pb[c * n + j] += dyr[j];
        }
      }
    }
  }
  if (dw) sum_partials(pw, chunks, n, dw);
  if (db) sum_partials(pb, chunks, n, db);
}

#define INSTANTIATE(T)                                                                           \
  template void rmsnorm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, double);        \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, int64_t,     \
                                    int64_t);                                                    \
  template void layernorm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int64_t, int64_t, \
                                     double);                                                    \
  template void layernorm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                      T*, int64_t, int64_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace visplay::kernels::cpu
