// Test helpers for the kernel tests: seeded random inputs, poisoned outputs, float64
// naive references, and tolerance checks with useful failure messages.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace visplay::test {

// Uniform values in [lo, hi) from a fixed seed: tests are reproducible.
inline std::vector<float> random_floats(size_t n, uint64_t seed, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

inline std::vector<int> random_ints(size_t n, uint64_t seed, int lo, int hi_inclusive) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(lo, hi_inclusive);
  std::vector<int> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// An output buffer full of NaN: any element the kernel forgets to write fails the check.
inline std::vector<float> poisoned(size_t n) {
  return std::vector<float>(n, std::numeric_limits<float>::quiet_NaN());
}

// bf16 helpers on raw bits (round to nearest even), independent of simt.h.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
inline float from_bf16(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline std::vector<uint16_t> to_bf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = to_bf16(v[i]);
  return out;
}
inline std::vector<float> from_bf16(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = from_bf16(v[i]);
  return out;
}

// |got - want| <= atol + rtol * |want| for every element; reports the worst element.
template <class Got>
void expect_close(const std::vector<Got>& got, const std::vector<double>& want, double rtol,
                  double atol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  size_t worst = 0, bad = 0;
  double worst_excess = -1.0;
  for (size_t i = 0; i < got.size(); ++i) {
    double g = static_cast<double>(got[i]);
    double err = std::abs(g - want[i]);
    double excess = err - (atol + rtol * std::abs(want[i]));
    if (!(excess <= 0.0)) ++bad;  // NaN counts as bad
    if (!(excess <= worst_excess)) {
      worst_excess = std::isnan(excess) ? std::numeric_limits<double>::infinity() : excess;
      worst = i;
    }
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " elements out of tolerance; worst at " << worst << ": got "
                     << static_cast<double>(got[worst]) << ", want " << want[worst];
}

// ||got - want|| / ||want|| <= tol: catches small systematic errors (a wrong scale, a
// dropped term) that an elementwise bf16 tolerance would let through.
template <class Got>
void expect_relative_l2(const std::vector<Got>& got, const std::vector<double>& want, double tol,
                        const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < got.size(); ++i) {
    double d = static_cast<double>(got[i]) - want[i];
    err += d * d;
    norm += want[i] * want[i];
  }
  double rel = std::sqrt(err) / std::max(std::sqrt(norm), 1e-30);
  EXPECT_LE(rel, tol) << what << ": relative L2 error " << rel;
}

// Naive float64 C[M,N] = A[M,K] B[K,N] (row-major; transposes via strides).
inline std::vector<double> matmul64(const float* A, const float* B, int M, int N, int K,
                                    bool trans_a = false, bool trans_b = false) {
  std::vector<double> C(static_cast<size_t>(M) * N, 0.0);
  for (int m = 0; m < M; ++m)
    for (int n = 0; n < N; ++n) {
      double acc = 0.0;
      for (int k = 0; k < K; ++k) {
        double a = trans_a ? A[static_cast<size_t>(k) * M + m] : A[static_cast<size_t>(m) * K + k];
        double b = trans_b ? B[static_cast<size_t>(n) * K + k] : B[static_cast<size_t>(k) * N + n];
        acc += a * b;
      }
      C[static_cast<size_t>(m) * N + n] = acc;
    }
  return C;
}

// Central differences of a float64 scalar function: the gradient reference for the
// backward kernels, independent of any hand-derived formula.
inline std::vector<double> numeric_grad(const std::function<double(const std::vector<double>&)>& f,
                                        std::vector<double> x, double h = 1e-5) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double keep = x[i];
    x[i] = keep + h;
    double up = f(x);
    x[i] = keep - h;
    double down = f(x);
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

inline std::vector<double> to_double(const std::vector<float>& v) {
  return std::vector<double>(v.begin(), v.end());
}

inline double dot64(const std::vector<double>& a, const std::vector<float>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// The emulator seeds every kernel test runs under: a race shows as a seed-dependent result.
inline const std::vector<uint64_t>& sim_seeds() {
  static const std::vector<uint64_t> seeds = {1, 0x5eed};
  return seeds;
}

}  // namespace visplay::test
