#include "kernels/cpu/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/vec_math.h"

namespace visplay::kernels::cpu {

template <class T>
double cross_entropy_forward(const T* logits, const int64_t* targets, T* lse, int64_t N, int64_t V,
                             int64_t ignore_index, int64_t* count_out) {
  std::vector<double> row_loss(N, 0.0);
#pragma omp parallel
  {
    std::vector<T> scratch(V);  // one row's exps, per thread
#pragma omp for schedule(static)
    for (int64_t r = 0; r < N; ++r) {
      const T* x = logits + r * V;
      // The max is one of the inputs, exact in T; exps in T (f32: the inline
      // fast_exp, <= 2 ulp, instead of a libm call per element), sum in double.
      T mt = -INFINITY;
      for (int64_t j = 0; j < V; ++j) mt = std::max(mt, x[j]);
      double s = sum_exp(x, V, mt, scratch.data());
      double l = static_cast<double>(mt) + std::log(s);
      lse[r] = static_cast<T>(l);
      if (targets[r] != ignore_index) row_loss[r] = l - static_cast<double>(x[targets[r]]);
    }
  }
  double total = 0;
  int64_t count = 0;
  for (int64_t r = 0; r < N; ++r)
    if (targets[r] != ignore_index) {
      total += row_loss[r];
      ++count;
    }
  *count_out = count;
  return count ? total / count : 0.0;
}

template <class T>
void cross_entropy_backward(const T* logits, const int64_t* targets, const T* lse, T* dlogits,
                            int64_t N, int64_t V, int64_t ignore_index, double scale) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < N; ++r) {
    T* d = dlogits + r * V;
    if (targets[r] == ignore_index) {
      std::fill(d, d + V, T(0));
      continue;
    }
    const T* x = logits + r * V;
    const T l = lse[r];
    const T scale_t = static_cast<T>(scale);
    for (int64_t j = 0; j < V; ++j) d[j] = scale_t * k_exp(x[j] - l);
    d[targets[r]] -= static_cast<T>(scale);
  }
}

template double cross_entropy_forward<float>(const float*, const int64_t*, float*, int64_t, int64_t,
                                             int64_t, int64_t*);
template double cross_entropy_forward<double>(const double*, const int64_t*, double*, int64_t,
                                              int64_t, int64_t, int64_t*);
template void cross_entropy_backward<float>(const float*, const int64_t*, const float*, float*,
                                            int64_t, int64_t, int64_t, double);
template void cross_entropy_backward<double>(const double*, const int64_t*, const double*, double*,
                                             int64_t, int64_t, int64_t, double);

}  // namespace visplay::kernels::cpu
