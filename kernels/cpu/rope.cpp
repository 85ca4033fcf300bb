#include "kernels/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"

namespace visplay::kernels::cpu {

namespace {

// cos/sin of pos * inv_freq[i] for positions [0, rows), per thread, grown on
// demand and kept across calls for the last (base, D): decoding calls RoPE
// for every token of every layer, and libm's cos/sin cost more than the
// rotation. The values are the same float expressions as computing them per
// call, so results do not change.
template <class T>
struct RopeTable {
  double base = 0;
  int64_t dim = 0, rows = 0;
  std::vector<T> cos, sin;

  void ensure(double b, int64_t D, int64_t needed_rows) {
    if (b != base || D != dim) base = b, dim = D, rows = 0, cos.clear(), sin.clear();
    if (needed_rows <= rows) return;
    const int64_t half = D / 2, grown = std::max(needed_rows, 2 * rows);
    std::vector<float> inv_freq(half);
    // Frequencies in f32 as the reference implementation computes them, so
    // positions in the thousands round the same way.
    for (int64_t i = 0; i < half; ++i)
      inv_freq[i] = 1.0f / std::pow(static_cast<float>(b), static_cast<float>(2 * i) / D);
    cos.resize(grown * half), sin.resize(grown * half);
    for (int64_t p = rows; p < grown; ++p) {
      const float pos = static_cast<float>(p);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = pos * inv_freq[i];
        cos[p * half + i] = static_cast<T>(std::cos(angle));
        sin[p * half + i] = static_cast<T>(std::sin(angle));
      }
    }
    rows = grown;
  }
};

constexpr int64_t kRopeTableMaxPositions = 1 << 17;

}  // namespace

// Rotate-half RoPE; inverse rotates by -angle (the backward). Positions in
// [0, 2^17) read the per-thread table; others (negative, huge) are computed
// per token.
template <class T>
void rope_apply(const T* x, T* y, const int64_t* positions, int64_t B, int64_t S, int64_t H,
                int64_t D, double base, bool inverse) {
  const int64_t half = D / 2, tokens = B * S;
  int64_t min_pos = 0, max_pos = -1;
  for (int64_t bs = 0; bs < tokens; ++bs) {
    min_pos = std::min(min_pos, positions[bs]);
    max_pos = std::max(max_pos, positions[bs]);
  }
  static thread_local RopeTable<T> table;
  const bool tabled = min_pos >= 0 && max_pos < kRopeTableMaxPositions;
  std::vector<T> own_cos, own_sin;  // the untabled case: one row per token
  if (tabled) {
    table.ensure(base, D, max_pos + 1);
  } else {
    std::vector<float> inv_freq(half);
    for (int64_t i = 0; i < half; ++i)
      inv_freq[i] = 1.0f / std::pow(static_cast<float>(base), static_cast<float>(2 * i) / D);
    own_cos.resize(tokens * half), own_sin.resize(tokens * half);
    for (int64_t bs = 0; bs < tokens; ++bs)
      for (int64_t i = 0; i < half; ++i) {
        const float angle = static_cast<float>(positions[bs]) * inv_freq[i];
        own_cos[bs * half + i] = static_cast<T>(std::cos(angle));
        own_sin[bs * half + i] = static_cast<T>(std::sin(angle));
      }
  }
  const T* cos_base = tabled ? table.cos.data() : own_cos.data();
  const T* sin_base = tabled ? table.sin.data() : own_sin.data();
  const T sign = inverse ? T(-1) : T(1);
#pragma omp parallel for schedule(static) if (tokens * H * D > kParallelMinElements)
  for (int64_t bs = 0; bs < tokens; ++bs) {
    const int64_t row = tabled ? positions[bs] : bs;
    const T* c = cos_base + row * half;
    const T* sn = sin_base + row * half;
    T s[512];
    const bool small = half <= 512;
    std::vector<T> big;
    if (!small) big.resize(half);
    T* sv = small ? s : big.data();
    for (int64_t i = 0; i < half; ++i) sv[i] = sign * sn[i];  // exact: a sign flip
    for (int64_t h = 0; h < H; ++h) {
      const T* xr = x + (bs * H + h) * D;
      T* yr = y + (bs * H + h) * D;
      for (int64_t i = 0; i < half; ++i) {
        T a = xr[i], b = xr[i + half];
        yr[i] = a * c[i] - b * sv[i];
        yr[i + half] = b * c[i] + a * sv[i];
      }
    }
  }
}

template void rope_apply<float>(const float*, float*, const int64_t*, int64_t, int64_t, int64_t,
                                int64_t, double, bool);
template void rope_apply<double>(const double*, double*, const int64_t*, int64_t, int64_t, int64_t,
                                 int64_t, double, bool);

}  // namespace visplay::kernels::cpu
