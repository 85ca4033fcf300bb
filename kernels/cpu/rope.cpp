#include "kernels/cpu/parallel.h"
#include "kernels/cpu/rope.h"

#include <algorithm>
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
  // cos/sin per distinct position, computed once: a batch repeats positions
  // (every row counts from 0), and libm's cos/sin cost more than the rotation.
  // Same float expressions as a per-row computation, so results are unchanged.
  // Positions far apart (or a huge range) fall back to one table row per token.
  int64_t min_pos = B * S > 0 ? positions[0] : 0, max_pos = min_pos;
  for (int64_t bs = 0; bs < B * S; ++bs)
    min_pos = std::min(min_pos, positions[bs]), max_pos = std::max(max_pos, positions[bs]);
  const bool by_position = max_pos - min_pos < 2 * B * S + 64;
  const int64_t table_rows = by_position ? max_pos - min_pos + 1 : B * S;
  auto row_of = [&](int64_t bs) { return by_position ? positions[bs] - min_pos : bs; };
  std::vector<T> cos_table(table_rows * half), sin_table(table_rows * half);
  std::vector<char> filled(table_rows, 0);
  for (int64_t bs = 0; bs < B * S; ++bs) {
    int64_t row = row_of(bs);
    if (filled[row]) continue;
    filled[row] = 1;
    float pos = static_cast<float>(positions[bs]);
    for (int64_t i = 0; i < half; ++i) {
      float angle = pos * inv_freq[i];
      cos_table[row * half + i] = static_cast<T>(std::cos(angle));
      sin_table[row * half + i] = static_cast<T>(inverse ? -std::sin(angle) : std::sin(angle));
    }
  }
#pragma omp parallel for schedule(static) if (B * S * H * D > kParallelMinElements)
  for (int64_t bs = 0; bs < B * S; ++bs) {
    const T* c = cos_table.data() + row_of(bs) * half;
    const T* s = sin_table.data() + row_of(bs) * half;
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
