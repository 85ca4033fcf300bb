#include "kernels/cpu/activation.h"

#include <algorithm>
#include <cmath>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_math.h"

namespace visplay::kernels::cpu {

namespace {
constexpr double kSqrt2OverPi = 0.7978845608028654;
constexpr double kGeluCoef = 0.044715;
template <class T>
inline T sigmoid(T x) {
  return k_sigmoid(x);
}
}  // namespace

// GELU (tanh form) written as v * sigmoid(2u), since 0.5 (1 + tanh u) =
// sigmoid(2u): one exp per element, no cancellation near u = 0, and the f32
// loop vectorises through fast_exp.
template <class T>
void gelu_forward(const T* x, T* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    T v = x[i];
    T u = static_cast<T>(kSqrt2OverPi) * (v + static_cast<T>(kGeluCoef) * v * v * v);
    y[i] = v * sigmoid(T(2) * u);
  }
}

// d/dv [v s(2u)] = s + v * 2 s (1 - s) * du/dv.
template <class T>
void gelu_backward(const T* dy, const T* x, T* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    T v = x[i];
    T u = static_cast<T>(kSqrt2OverPi) * (v + static_cast<T>(kGeluCoef) * v * v * v);
    T s = sigmoid(T(2) * u);
    T du = static_cast<T>(kSqrt2OverPi) * (T(1) + T(3) * static_cast<T>(kGeluCoef) * v * v);
    dx[i] = dy[i] * (s + T(2) * v * s * (T(1) - s) * du);
  }
}

template <class T>
void silu_forward(const T* x, T* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * sigmoid(x[i]);
}

template <class T>
void silu_backward(const T* dy, const T* x, T* dx, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    T s = sigmoid(x[i]);
    dx[i] = dy[i] * s * (T(1) + x[i] * (T(1) - s));
  }
}

template <class T>
void swiglu_forward(const T* gate, const T* up, T* y, int64_t n) {
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) y[i] = gate[i] * sigmoid(gate[i]) * up[i];
}

// Threads take whole 64-element blocks. The compiler's vector body and its scalar
// remainder round 1 + g (1 - s) differently (the remainder fuses the multiply-add,
// the vector body does not), so a thread boundary inside a vector changed an
// element's bits with the thread count; with block boundaries only the array's
// own last elements take the remainder, on any team.
template <class T>
void swiglu_backward(const T* dy, const T* gate, const T* up, T* dgate, T* dup, int64_t n) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t block = 0; block < blocks; ++block) {
    const int64_t begin = block * kBlock, end = std::min(n, begin + kBlock);
    for (int64_t i = begin; i < end; ++i) {
      T g = gate[i], s = sigmoid(g);
      if (dup) dup[i] = dy[i] * g * s;
      if (dgate) dgate[i] = dy[i] * up[i] * s * (T(1) + g * (T(1) - s));
    }
  }
}

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    T m = -INFINITY;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, xr[j]);
    for (int64_t j = 0; j < n; ++j) yr[j] = k_exp(xr[j] - m);  // vectorises
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += yr[j];
    T inv = static_cast<T>(1.0 / sum);
    for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
  }
}

template <class T>
void softmax_backward(const T* dy, const T* y, T* dx, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n > kParallelMinElements)
  for (int64_t r = 0; r < rows; ++r) {
    const T* dyr = dy + r * n;
    const T* yr = y + r * n;
    double dot = 0;
    for (int64_t j = 0; j < n; ++j) dot += static_cast<double>(dyr[j]) * yr[j];
    T* dxr = dx + r * n;
    for (int64_t j = 0; j < n; ++j) dxr[j] = static_cast<T>(yr[j] * (dyr[j] - dot));
  }
}

#define INSTANTIATE(T)                                                             \
  template void gelu_forward<T>(const T*, T*, int64_t);                            \
  template void gelu_backward<T>(const T*, const T*, T*, int64_t);                 \
  template void silu_forward<T>(const T*, T*, int64_t);                            \
  template void silu_backward<T>(const T*, const T*, T*, int64_t);                 \
  template void swiglu_forward<T>(const T*, const T*, T*, int64_t);                \
  template void swiglu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t); \
  template void softmax_forward<T>(const T*, T*, int64_t, int64_t);                \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace visplay::kernels::cpu
