#include "kernels/cpu/parallel.h"
#include "kernels/cpu/rope.h"

#include <cmath>
#include <vector>

namespace visplay::kernels::cpu {

template <class T>
void rope_apply(const T* x, T* y, const int64_t* positions, int64_t B, int64_t S, int64_t H,
                int64_t D, double base, bool inverse) {
  int64_t half = D / 2;
  // Frequencies in f32 as the reference implementation computes them, so
  // positions in the thousands round the same way.
  std::vector<float> inv_freq(half);
  for (int64_t i = 0; i < half; ++i)
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(base), static_cast<float>(2 * i) / D);
#pragma omp parallel for schedule(static) if (B * S * H * D > kParallelMinElements)
  for (int64_t bs = 0; bs < B * S; ++bs) {
    float pos = static_cast<float>(positions[bs]);
    std::vector<T> c(half), s(half);
    for (int64_t i = 0; i < half; ++i) {
      float angle = pos * inv_freq[i];
      c[i] = static_cast<T>(std::cos(angle));
      s[i] = static_cast<T>(inverse ? -std::sin(angle) : std::sin(angle));
    }
    for (int64_t h = 0; h < H; ++h) {
      const T* xr = x + (bs * H + h) * D;
      T* yr = y + (bs * H + h) * D;
      for (int64_t i = 0; i < half; ++i) {
        T a = xr[i], b = xr[i + half];
        yr[i] = a * c[i] - b * s[i];
        yr[i + half] = b * c[i] + a * s[i];
      }
    }
  }
}

template void rope_apply<float>(const float*, float*, const int64_t*, int64_t, int64_t, int64_t,
                                int64_t, double, bool);
template void rope_apply<double>(const double*, double*, const int64_t*, int64_t, int64_t, int64_t,
                                 int64_t, double, bool);

}  // namespace visplay::kernels::cpu
