// Elementary functions for the CPU kernels' inner loops. libm's expf/tanhf are
// scalar calls, so a loop that uses them never vectorises; these are branch-free
// inline versions (Cody-Waite range reduction + polynomial, explicit fma) that
// GCC turns into AVX-512/AVX2 code inside an ordinary `for` loop. They use only
// IEEE operations with fixed rounding, so results are bit-identical run to run
// and independent of the thread count.
//
// Accuracy (checked against double in tests/kernels/vec_math_test.cpp):
// fast_exp within 2 ulp over the whole float range (subnormal results
// included, overflow to +inf, exp(-inf) = 0, NaN propagates).
//
// The double overloads are plain libm: f64 runs are the reference path.
#pragma once
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#if defined(__FMA__)
#include <immintrin.h>
#endif

namespace visplay::kernels::cpu {

// exp(x) = 2^n * exp(r), n = round(x / ln 2), |r| <= ln2 / 2, exp(r) by its
// degree-7 Taylor polynomial (truncation error < 5e-9 relative). 2^n is
// applied in two halves so results down to the subnormal range stay exact.
inline float fast_exp(float x) {
  const float log2e = 1.44269504088896341f;
  const float ln2_hi = 0.693145751953125f;          // the top bits of ln 2: n * ln2_hi is exact
  const float ln2_lo = 1.42860682030941723212e-6f;  // ln 2 - ln2_hi
  const float round_magic = 12582912.0f;            // 1.5 * 2^23: adding it rounds to an integer
  float xc = x < -104.0f ? -104.0f : x;             // exp(-104) rounds to 0 in float
  xc = xc > 89.0f ? 89.0f : xc;                     // exp(89) overflows to +inf below
  float n = (std::fma(xc, log2e, round_magic)) - round_magic;
  float r = std::fma(-n, ln2_hi, xc);
  r = std::fma(-n, ln2_lo, r);
  float p = 1.0f / 5040.0f;
  p = std::fma(p, r, 1.0f / 720.0f);
  p = std::fma(p, r, 1.0f / 120.0f);
  p = std::fma(p, r, 1.0f / 24.0f);
  p = std::fma(p, r, 1.0f / 6.0f);
  p = std::fma(p, r, 0.5f);
  p = std::fma(p, r, 1.0f);
  p = std::fma(p, r, 1.0f);
  int32_t ni = static_cast<int32_t>(n);  // in [-151, 129]
  int32_t n1 = ni / 2, n2 = ni - n1;     // each in [-76, 65]: normal powers of two
  float s1 = std::bit_cast<float>((n1 + 127) << 23);
  float s2 = std::bit_cast<float>((n2 + 127) << 23);
  float y = (p * s1) * s2;
  return x != x ? x : y;  // NaN in, NaN out
}

// 1 / (1 + exp(-x)), accurate at both tails (no cancellation).
inline float fast_sigmoid(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|); for |x| < 0.25 an
// odd polynomial instead, where 1 - e would cancel.
inline float fast_tanh(float x) {
  float ax = std::fabs(x);
  float e = fast_exp(-2.0f * ax);
  float big = (1.0f - e) / (1.0f + e);
  // tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 (|x| < 0.25: error < 1e-9 relative)
  float x2 = x * x;
  float q = 62.0f / 2835.0f;
  q = std::fma(q, x2, -17.0f / 315.0f);
  q = std::fma(q, x2, 2.0f / 15.0f);
  q = std::fma(q, x2, -1.0f / 3.0f);
  float small = std::fma(q * x2, ax, ax);
  float t = ax < 0.25f ? small : big;
  return std::copysign(t, x);
}

// Overloads for the templated kernels: f32 takes the fast path, f64 stays on libm.
inline float k_exp(float x) { return fast_exp(x); }
inline double k_exp(double x) { return std::exp(x); }
inline float k_tanh(float x) { return fast_tanh(x); }
inline double k_tanh(double x) { return std::tanh(x); }
inline float k_sigmoid(float x) { return fast_sigmoid(x); }
inline double k_sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// The kernels' multiply-add: acc + s * x over a GCC vector (s broadcast),
// rounded once where the target has FMA and twice where it has none. GCC
// fuses `acc += s * x` by itself (-ffp-contract=fast) only where its passes
// leave the multiply beside the add: on AVX2 it split some unrolled row loops
// into a multiply and an add, so accumulate_rows and accumulate_rows_n gave
// the same sums different bits (AVX-512 fused both). Kernels whose sums must
// agree bit for bit with another path, or with a reference, say it here.
template <class V, class T>
inline V madd_broadcast(V acc, T s, V x) {
#if defined(__FMA__)
  constexpr bool f32 = std::is_same_v<T, float>;
  if constexpr (sizeof(V) == 16) {
    if constexpr (f32)
      return _mm_fmadd_ps(_mm_set1_ps(s), x, acc);
    else
      return _mm_fmadd_pd(_mm_set1_pd(s), x, acc);
  } else if constexpr (sizeof(V) == 32) {
    if constexpr (f32)
      return _mm256_fmadd_ps(_mm256_set1_ps(s), x, acc);
    else
      return _mm256_fmadd_pd(_mm256_set1_pd(s), x, acc);
#if defined(__AVX512F__)
  } else if constexpr (sizeof(V) == 64) {
    if constexpr (f32)
      return _mm512_fmadd_ps(_mm512_set1_ps(s), x, acc);
    else
      return _mm512_fmadd_pd(_mm512_set1_pd(s), x, acc);
#endif
  }
#endif
  return acc + s * x;
}

// a * b + c by the same rule (for scalar references of those kernels).
template <class T>
inline T madd(T a, T b, T c) {
#if defined(__FMA__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

namespace detail {
// N adjacent 32-byte column chunks of accumulate_rows, N independent
// accumulator chains kept in registers across the rows.
template <int N, class T>
inline void accumulate_chunks(T* __restrict y, const T* __restrict w, const T* __restrict x,
                              int64_t stride, int64_t rows) {
  constexpr int64_t L = 32 / sizeof(T);
  typedef T vec __attribute__((vector_size(32)));
  vec acc[N];
#pragma GCC unroll 4
  for (int n = 0; n < N; ++n) std::memcpy(&acc[n], y + n * L, sizeof(vec));
  for (int64_t r = 0; r < rows; ++r) {
    const T wr = w[r];
    if (wr == T(0)) continue;
    const T* xr = x + r * stride;
#pragma GCC unroll 4
    for (int n = 0; n < N; ++n) {
      vec xv;
      std::memcpy(&xv, xr + n * L, sizeof(vec));
      acc[n] = madd_broadcast(acc[n], wr, xv);
    }
  }
#pragma GCC unroll 4
  for (int n = 0; n < N; ++n) std::memcpy(y + n * L, &acc[n], sizeof(vec));
}
}  // namespace detail

// y[c] += sum_r w[r] * x[r * stride + c] for c < width, rows r in order (rows
// with w[r] == 0 skipped). The accumulators stay in registers across the rows
// (GCC vector extensions, 32-byte vectors: AVX2/AVX-512 with -march=native,
// SSE pairs otherwise), up to four independent chains per pass; a plain loop
// here would store and reload y for every row, a store-forwarding chain that
// made attention's P.V and dQ/dK/dV loops latency bound. Each y[c] sums in
// row order, so results are deterministic.
template <class T>
inline void accumulate_rows(T* __restrict y, int64_t width, const T* __restrict w,
                            const T* __restrict x, int64_t stride, int64_t rows) {
  constexpr int64_t L = 32 / sizeof(T);
  int64_t c0 = 0;
  for (; c0 + 4 * L <= width; c0 += 4 * L)
    detail::accumulate_chunks<4>(y + c0, w, x + c0, stride, rows);
  const int64_t chunks = (width - c0) / L;
  if (chunks == 3) detail::accumulate_chunks<3>(y + c0, w, x + c0, stride, rows);
  if (chunks == 2) detail::accumulate_chunks<2>(y + c0, w, x + c0, stride, rows);
  if (chunks == 1) detail::accumulate_chunks<1>(y + c0, w, x + c0, stride, rows);
  c0 += chunks * L;
  const int64_t rest = width - c0;
  if (rest == 0) return;
  // The last rest < L columns: one vector chunk over a zero-padded copy of
  // them, kRowsPerPass rows at a time, with the same zero-weight skips. So
  // they take the same explicitly fused multiply-adds as the other columns
  // and as accumulate_rows_n's padded chunk, where a scalar loop per column
  // was fused or not as the compiler chose (and ran one latency-bound chain
  // per column).
  constexpr int64_t kRowsPerPass = 64;
  alignas(32) T x_pad[kRowsPerPass * L];
  alignas(32) T y_pad[L];
  for (int64_t c = 0; c < L; ++c) y_pad[c] = c < rest ? y[c0 + c] : T(0);
  for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerPass) {
    const int64_t nr = std::min(kRowsPerPass, rows - r0);
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < L; ++c)
        x_pad[r * L + c] = c < rest ? x[(r0 + r) * stride + c0 + c] : T(0);
    detail::accumulate_chunks<1>(y_pad, w + r0, x_pad, L, nr);
  }
  for (int64_t c = 0; c < rest; ++c) y[c0 + c] = y_pad[c];
}

namespace detail {
// N adjacent 32-byte column chunks for NQ outputs sharing the rows x.
// kFromZero: y starts at 0 (as if zero-filled first; y is not read).
template <int NQ, int N, bool kFromZero, class T>
inline void accumulate_chunks_multi(T* __restrict y, int64_t y_stride, const T* __restrict w,
                                    int64_t w_stride, const T* __restrict x, int64_t stride,
                                    int64_t rows) {
  constexpr int64_t L = 32 / sizeof(T);
  typedef T vec __attribute__((vector_size(32)));
  vec acc[NQ][N];
#pragma GCC unroll 4
  for (int q = 0; q < NQ; ++q)
#pragma GCC unroll 4
    for (int n = 0; n < N; ++n) {
      if (kFromZero)
        acc[q][n] = vec{};
      else
        std::memcpy(&acc[q][n], y + q * y_stride + n * L, sizeof(vec));
    }
  // No zero-weight test per row (accumulate_rows skips zero weights): for
  // finite x and a y without -0, adding a zero product leaves every sum the
  // same bit for bit (acc + (+-0) is acc unless acc is -0, and a sum that
  // starts at +0 never becomes -0: round-to-nearest gives an exact
  // cancellation +0). The four compares and mask moves per row cost more
  // than attention's NQ x N multiply-adds they guarded (backward 1.25x,
  // forward 1.1x faster without them). With an inf or NaN in x, a zero
  // weight now gives NaN, as a matrix product would.
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * stride;
    vec xv[N];
#pragma GCC unroll 4
    for (int n = 0; n < N; ++n) std::memcpy(&xv[n], xr + n * L, sizeof(vec));
#pragma GCC unroll 4
    for (int q = 0; q < NQ; ++q) {
      const T wr = w[q * w_stride + r];
#pragma GCC unroll 4
      for (int n = 0; n < N; ++n) acc[q][n] = madd_broadcast(acc[q][n], wr, xv[n]);
    }
  }
#pragma GCC unroll 4
  for (int q = 0; q < NQ; ++q)
#pragma GCC unroll 4
    for (int n = 0; n < N; ++n) std::memcpy(y + q * y_stride + n * L, &acc[q][n], sizeof(vec));
}

template <int NQ, bool kFromZero, class T>
inline void accumulate_rows_multi(T* __restrict y, int64_t y_stride, int64_t width,
                                  const T* __restrict w, int64_t w_stride, const T* __restrict x,
                                  int64_t stride, int64_t rows) {
  constexpr int64_t L = 32 / sizeof(T);
  int64_t c0 = 0;
  for (; c0 + 4 * L <= width; c0 += 4 * L)
    accumulate_chunks_multi<NQ, 4, kFromZero>(y + c0, y_stride, w, w_stride, x + c0, stride, rows);
  const int64_t chunks = (width - c0) / L;
  if (chunks == 3)
    accumulate_chunks_multi<NQ, 3, kFromZero>(y + c0, y_stride, w, w_stride, x + c0, stride, rows);
  if (chunks == 2)
    accumulate_chunks_multi<NQ, 2, kFromZero>(y + c0, y_stride, w, w_stride, x + c0, stride, rows);
  if (chunks == 1)
    accumulate_chunks_multi<NQ, 1, kFromZero>(y + c0, y_stride, w, w_stride, x + c0, stride, rows);
  c0 += chunks * L;
  const int64_t rest = width - c0;
  if (rest == 0) return;
  // The last rest < L columns: one vector chunk over a zero-padded copy of
  // them, kRowsPerPass rows at a time. Lane c runs the same multiply-adds in
  // the same row order as a scalar chain per column would (the values are
  // identical, zero weights included, as above), but the NQ x rest chains
  // overlap: one at a time they were latency bound (~8% of the attention
  // backward at the decoder's causal widths, 4 past a multiple of 8).
  constexpr int64_t kRowsPerPass = 64;
  alignas(32) T x_pad[kRowsPerPass * L];
  alignas(32) T y_pad[NQ * L];
  for (int q = 0; q < NQ; ++q)
    for (int64_t c = 0; c < L; ++c)
      y_pad[q * L + c] = kFromZero || c >= rest ? T(0) : y[q * y_stride + c0 + c];
  for (int64_t r0 = 0; r0 < rows; r0 += kRowsPerPass) {
    const int64_t nr = std::min(kRowsPerPass, rows - r0);
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < L; ++c)
        x_pad[r * L + c] = c < rest ? x[(r0 + r) * stride + c0 + c] : T(0);
    accumulate_chunks_multi<NQ, 1, false>(y_pad, L, w + r0, w_stride, x_pad, L, nr);
  }
  for (int q = 0; q < NQ; ++q)
    for (int64_t c = 0; c < rest; ++c) y[q * y_stride + c0 + c] = y_pad[q * L + c];
}
}  // namespace detail

// accumulate_rows for nq outputs at once that read the same rows x: output q
// is y + q * y_stride with weights w + q * w_stride. Each output's elements
// sum in the same row order as one accumulate_rows call would, so for finite
// x and a y without -0 the values are identical bit for bit (zero weights
// are multiplied, not skipped: see accumulate_chunks_multi); but
// each row chunk of x is loaded once for all outputs and the nq x 4 chains
// fill the FMA pipes (one output's 4 chains are latency bound).
// from_zero: the sums start at 0 as if y had been zero-filled (y is only
// written), which saves a fill per output row.
template <class T>
inline void accumulate_rows_n(int64_t nq, T* y, int64_t y_stride, int64_t width, const T* w,
                              int64_t w_stride, const T* x, int64_t stride, int64_t rows,
                              bool from_zero = false) {
  auto group = [&]<int NQ>(int64_t q) {
    if (from_zero)
      detail::accumulate_rows_multi<NQ, true>(y + q * y_stride, y_stride, width, w + q * w_stride,
                                              w_stride, x, stride, rows);
    else
      detail::accumulate_rows_multi<NQ, false>(y + q * y_stride, y_stride, width, w + q * w_stride,
                                               w_stride, x, stride, rows);
  };
  int64_t q = 0;
  for (; q + 4 <= nq; q += 4) group.template operator()<4>(q);
  if (nq - q == 3) group.template operator()<3>(q);
  if (nq - q == 2) group.template operator()<2>(q);
  if (nq - q == 1) group.template operator()<1>(q);
}

// dst[u * dst_stride + i] = src[i * src_stride + u] for an 8 x 8 block, with
// three rounds of two-vector shuffles (unpack, 64-bit shuffle, 128-bit lane
// swap) instead of 64 scattered 4-byte stores.
__attribute__((always_inline)) inline void transpose8x8(const float* src, int64_t src_stride,
                                                        float* dst, int64_t dst_stride) {
  typedef float vec8 __attribute__((vector_size(32)));
  vec8 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) std::memcpy(&r[i], src + i * src_stride, sizeof(vec8));
  for (int i = 0; i < 8; i += 2) {
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
  }
  for (int h = 0; h < 8; h += 4) {  // rows 0-3, then 4-7
    u[h + 0] = __builtin_shufflevector(t[h + 0], t[h + 2], 0, 1, 8, 9, 4, 5, 12, 13);
    u[h + 1] = __builtin_shufflevector(t[h + 0], t[h + 2], 2, 3, 10, 11, 6, 7, 14, 15);
    u[h + 2] = __builtin_shufflevector(t[h + 1], t[h + 3], 0, 1, 8, 9, 4, 5, 12, 13);
    u[h + 3] = __builtin_shufflevector(t[h + 1], t[h + 3], 2, 3, 10, 11, 6, 7, 14, 15);
  }
  for (int c = 0; c < 4; ++c) {
    vec8 lo = __builtin_shufflevector(u[c], u[c + 4], 0, 1, 2, 3, 8, 9, 10, 11);    // column c
    vec8 hi = __builtin_shufflevector(u[c], u[c + 4], 4, 5, 6, 7, 12, 13, 14, 15);  // column c + 4
    std::memcpy(dst + c * dst_stride, &lo, sizeof(vec8));
    std::memcpy(dst + (c + 4) * dst_stride, &hi, sizeof(vec8));
  }
}

// dst[c * dst_stride + r] = src[r * src_stride + c] for r < rows, c < cols:
// 8 x 8 register transposes for f32 (attention's per-head K/V and P/dS
// transposes: element by element, their scattered stores were ~17% of the
// forward), element by element for the rest. A copy: values are unchanged.
template <class T>
inline void transpose_into(const T* src, int64_t src_stride, int64_t rows, int64_t cols, T* dst,
                           int64_t dst_stride) {
  int64_t r_full = 0, c_full = 0;
  if constexpr (std::is_same_v<T, float>) {
    r_full = rows / 8 * 8, c_full = cols / 8 * 8;
    for (int64_t r = 0; r < r_full; r += 8)
      for (int64_t c = 0; c < c_full; c += 8)
        transpose8x8(src + r * src_stride + c, src_stride, dst + c * dst_stride + r, dst_stride);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = r < r_full ? c_full : 0; c < cols; ++c)
      dst[c * dst_stride + r] = src[r * src_stride + c];
}

// out[r] = sum_d q[d] * rows[r][d] for 8 rows r, D a multiple of 8:
// eight 8-lane partial-sum vectors, then one transpose-and-add tree that
// reduces all eight at once (7 shuffle pairs for 8 dot products instead of a
// horizontal sum per row). Each dot sums lanes as ((0+1)+(2+3))+((4+5)+(6+7)),
// so its value does not depend on the other seven rows (a row may repeat).
inline void dot8_rows(const float* __restrict q, const float* const* rows, int64_t D,
                      float* __restrict out) {
  typedef float vec __attribute__((vector_size(32)));
  vec acc[8];
#pragma GCC unroll 8
  for (int r = 0; r < 8; ++r) acc[r] = vec{};
  for (int64_t d = 0; d < D; d += 8) {
    vec qv;
    std::memcpy(&qv, q + d, sizeof(vec));
#pragma GCC unroll 8
    for (int r = 0; r < 8; ++r) {
      vec xv;
      std::memcpy(&xv, rows[r] + d, sizeof(vec));
      acc[r] += qv * xv;
    }
  }
  vec s01 = __builtin_shufflevector(acc[0], acc[1], 0, 8, 2, 10, 4, 12, 6, 14) +
            __builtin_shufflevector(acc[0], acc[1], 1, 9, 3, 11, 5, 13, 7, 15);
  vec s23 = __builtin_shufflevector(acc[2], acc[3], 0, 8, 2, 10, 4, 12, 6, 14) +
            __builtin_shufflevector(acc[2], acc[3], 1, 9, 3, 11, 5, 13, 7, 15);
  vec s45 = __builtin_shufflevector(acc[4], acc[5], 0, 8, 2, 10, 4, 12, 6, 14) +
            __builtin_shufflevector(acc[4], acc[5], 1, 9, 3, 11, 5, 13, 7, 15);
  vec s67 = __builtin_shufflevector(acc[6], acc[7], 0, 8, 2, 10, 4, 12, 6, 14) +
            __builtin_shufflevector(acc[6], acc[7], 1, 9, 3, 11, 5, 13, 7, 15);
  vec s0123 = __builtin_shufflevector(s01, s23, 0, 1, 8, 9, 4, 5, 12, 13) +
              __builtin_shufflevector(s01, s23, 2, 3, 10, 11, 6, 7, 14, 15);
  vec s4567 = __builtin_shufflevector(s45, s67, 0, 1, 8, 9, 4, 5, 12, 13) +
              __builtin_shufflevector(s45, s67, 2, 3, 10, 11, 6, 7, 14, 15);
  vec total = __builtin_shufflevector(s0123, s4567, 0, 1, 2, 3, 8, 9, 10, 11) +
              __builtin_shufflevector(s0123, s4567, 4, 5, 6, 7, 12, 13, 14, 15);
  std::memcpy(out, &total, sizeof(vec));
}

// The same for 8 rows at x + r * stride.
inline void dot8_rows(const float* __restrict q, const float* __restrict x, int64_t stride,
                      int64_t D, float* __restrict out) {
  const float* rows[8];
  for (int r = 0; r < 8; ++r) rows[r] = x + r * stride;
  dot8_rows(q, rows, D, out);
}

// max of x[0..n) (-inf when n == 0): eight lanes, then a fixed tree; max is
// exact, so the result equals the sequential one (NaN aside).
inline float max_lanes8(const float* x, int64_t n) {
  float lane[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) lane[u] = std::max(lane[u], x[j + u]);
  for (; j < n; ++j) lane[0] = std::max(lane[0], x[j]);
  return std::max(std::max(std::max(lane[0], lane[1]), std::max(lane[2], lane[3])),
                  std::max(std::max(lane[4], lane[5]), std::max(lane[6], lane[7])));
}

// sum_j exp(x[j] - shift) in double. f32: the exps (fast_exp, vectorised) go to
// `scratch` (n floats), then eight double lanes and a fixed tree add them;
// f64: libm and a sequential sum (the reference path).
inline double sum_exp(const float* x, int64_t n, float shift, float* scratch) {
  for (int64_t j = 0; j < n; ++j) scratch[j] = fast_exp(x[j] - shift);
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) lane[u] += scratch[j + u];
  double tail = 0;
  for (; j < n; ++j) tail += scratch[j];
  return (((lane[0] + lane[1]) + (lane[2] + lane[3])) +
          ((lane[4] + lane[5]) + (lane[6] + lane[7]))) +
         tail;
}
inline double sum_exp(const double* x, int64_t n, double shift, double*) {
  double s = 0;
  for (int64_t j = 0; j < n; ++j) s += std::exp(x[j] - shift);
  return s;
}

}  // namespace visplay::kernels::cpu
