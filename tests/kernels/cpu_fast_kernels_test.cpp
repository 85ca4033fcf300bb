// The optimised f32 CPU kernels against independent float64 references:
// vectorised exp/tanh/sigmoid, GELU/SiLU/SwiGLU/softmax, AdamW, the packed
// GEMM, attention forward/backward, the KV-cache decode attention, the fused
// log-prob and cross-entropy, and the register-accumulator row sums. Inputs
// are seeded random values, outputs are NaN-poisoned before each call.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/adamw.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cross_entropy.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/logprob.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_math.h"
#include "runtime/ops.h"
#include "tests/kernels/reference.h"

using namespace visplay::kernels::cpu;
using visplay::test::poisoned;
using visplay::test::random_floats;
using visplay::test::random_ints;

namespace {

std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// Distance from the float nearest to `ref` in units of the float spacing there.
double ulp_error(float got, double ref) {
  if (std::isnan(ref)) return std::isnan(got) ? 0.0 : 1e30;
  float ref_f = static_cast<float>(ref);
  if (std::isinf(ref_f)) return got == ref_f ? 0.0 : 1e30;
  double spacing = std::nextafter(std::fabs(ref_f), INFINITY) - std::fabs(ref_f);
  return std::fabs(static_cast<double>(got) - ref) / spacing;
}

// max |got - ref| / (atol + rtol |ref|) <= 1, with the worst index on failure.
::testing::AssertionResult close_to(const std::vector<float>& got, const std::vector<double>& ref,
                                    double rtol, double atol) {
  if (got.size() != ref.size())
    return ::testing::AssertionFailure() << "size " << got.size() << " vs " << ref.size();
  for (size_t i = 0; i < got.size(); ++i) {
    if (static_cast<double>(got[i]) == ref[i]) continue;  // also equal infinities
    double err = std::fabs(got[i] - ref[i]);
    if (!(err <= atol + rtol * std::fabs(ref[i])))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << ", reference " << ref[i];
  }
  return ::testing::AssertionSuccess();
}

}  // namespace

// ---------------------------------------------------------------------------
TEST(VecMath, ExpWithinTwoUlpOverTheFloatRange) {
  // A strided sweep over every float in [-104, 89] (normal, subnormal and
  // overflowing results), plus random arguments in the softmax range.
  double worst = 0;
  float worst_x = 0;
  for (uint32_t bits = 0; bits < 0xffffffffu - 997; bits += 997) {
    float x;
    std::memcpy(&x, &bits, 4);
    if (!(x > -104.0f && x < 89.0f)) continue;
    double ref = std::exp(static_cast<double>(x));
    double err = ref < 1.1754943508222875e-38
                     ? std::fabs(fast_exp(x) - ref) / 1.401298464324817e-45  // subnormal: absolute
                     : ulp_error(fast_exp(x), ref);
    if (err > worst) worst = err, worst_x = x;
  }
  EXPECT_LE(worst, 2.0) << "at x = " << worst_x;
  for (float x : random_floats(4096, 1, -20.0f, 5.0f))
    EXPECT_LE(ulp_error(fast_exp(x), std::exp(static_cast<double>(x))), 2.0) << x;
  EXPECT_EQ(fast_exp(-INFINITY), 0.0f);
  EXPECT_EQ(fast_exp(-200.0f), 0.0f);
  EXPECT_EQ(fast_exp(INFINITY), INFINITY);
  EXPECT_EQ(fast_exp(100.0f), INFINITY);
  EXPECT_EQ(fast_exp(0.0f), 1.0f);
  EXPECT_TRUE(std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())));
}

TEST(VecMath, TanhAndSigmoidMatchDouble) {
  double worst_tanh = 0, worst_sig = 0;
  for (uint32_t bits = 0; bits < 0xffffffffu - 991; bits += 991) {
    float x;
    std::memcpy(&x, &bits, 4);
    if (!(std::fabs(x) < 30.0f)) continue;
    worst_tanh = std::max(worst_tanh, ulp_error(fast_tanh(x), std::tanh(static_cast<double>(x))));
    worst_sig = std::max(
        worst_sig, ulp_error(fast_sigmoid(x), 1.0 / (1.0 + std::exp(-static_cast<double>(x)))));
  }
  EXPECT_LE(worst_tanh, 4.0);
  EXPECT_LE(worst_sig, 4.0);
  EXPECT_EQ(fast_tanh(50.0f), 1.0f);
  EXPECT_EQ(fast_tanh(-50.0f), -1.0f);
  EXPECT_EQ(fast_sigmoid(-200.0f), 0.0f);
  EXPECT_TRUE(std::isnan(fast_tanh(std::numeric_limits<float>::quiet_NaN())));
}

TEST(VecMath, AccumulateRowsMatchesDouble) {
  for (int64_t width : {1, 7, 8, 24, 32, 33, 70}) {
    const int64_t rows = 13, stride = width + 5;
    std::vector<float> x = random_floats(rows * stride, 10 + width);
    std::vector<float> w = random_floats(rows, 20 + width);
    w[3] = 0.0f;  // skipped rows must not change the result
    x[3 * stride] = std::numeric_limits<float>::quiet_NaN();
    std::vector<float> y = random_floats(width, 30 + width);
    std::vector<double> ref(y.begin(), y.end());
    for (int64_t r = 0; r < rows; ++r)
      if (w[r] != 0.0f)
        for (int64_t c = 0; c < width; ++c) ref[c] += double(w[r]) * x[r * stride + c];
    accumulate_rows(y.data(), width, w.data(), x.data(), stride, rows);
    EXPECT_TRUE(close_to(y, ref, 1e-6, 1e-6)) << "width " << width;
  }
}

// accumulate_rows_n (nq outputs over shared rows; the leftover columns past
// a multiple of 8 as a padded vector chunk) must give each output exactly
// what one accumulate_rows call gives it: every width 1-70 (all tails), rows
// past one 64-row pass of the tail, zero weights (which accumulate_rows skips
// and accumulate_rows_n multiplies; some zero for only part of the outputs),
// accumulating into y or from zero; f32 and f64.
template <class T>
void check_accumulate_rows_n_bit_identical() {
  std::mt19937_64 rng(77);
  for (int64_t width = 1; width <= 70; ++width)
    for (int64_t nq : {1, 3, 4, 7}) {
      const int64_t rows = width % 3 == 0 ? 150 : 1 + width % 40, stride = width + 3;
      const int64_t w_stride = rows + 2, y_stride = width + 1;
      std::vector<float> xf = random_floats(rows * stride, 10 + width);
      std::vector<float> wf = random_floats(nq * w_stride, 20 + width + nq);
      std::vector<float> yf = random_floats(nq * y_stride, 30 + width);
      for (int64_t q = 0; q < nq; ++q)
        for (int64_t r = 0; r < rows; ++r)
          if (rng() % 5 == 0) wf[q * w_stride + r] = 0.0f;
      std::vector<T> x(xf.begin(), xf.end()), w(wf.begin(), wf.end()), y0(yf.begin(), yf.end());
      for (bool from_zero : {false, true}) {
        std::vector<T> expected = y0, got = y0;
        for (int64_t q = 0; q < nq; ++q) {
          if (from_zero) std::fill(&expected[q * y_stride], &expected[q * y_stride] + width, T(0));
          accumulate_rows(&expected[q * y_stride], width, &w[q * w_stride], x.data(), stride, rows);
        }
        accumulate_rows_n(nq, got.data(), y_stride, width, w.data(), w_stride, x.data(), stride,
                          rows, from_zero);
        ASSERT_EQ(std::memcmp(got.data(), expected.data(), got.size() * sizeof(T)), 0)
            << "width " << width << " nq " << nq << " rows " << rows << " from_zero " << from_zero;
      }
    }
}

TEST(VecMath, AccumulateRowsNBitIdenticalToSingleRows) {
  check_accumulate_rows_n_bit_identical<float>();
  check_accumulate_rows_n_bit_identical<double>();
}

// ---------------------------------------------------------------------------
TEST(FastKernels, ActivationsF32MatchDouble) {
  const int64_t n = 5000;  // above the parallel threshold's vector tails too
  std::vector<float> x = random_floats(n, 40, -8.0f, 8.0f), u = random_floats(n, 41, -3.0f, 3.0f),
                     dy = random_floats(n, 42);
  std::vector<double> gelu_ref(n), dgelu_ref(n), silu_ref(n), dsilu_ref(n), swiglu_ref(n),
      dgate_ref(n), dup_ref(n);
  const double c = std::sqrt(2.0 / M_PI);
  for (int64_t i = 0; i < n; ++i) {
    double v = x[i], a = c * (v + 0.044715 * v * v * v), t = std::tanh(a);
    gelu_ref[i] = 0.5 * v * (1 + t);
    dgelu_ref[i] = dy[i] * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v));
    double s = 1.0 / (1.0 + std::exp(-v));
    silu_ref[i] = v * s;
    dsilu_ref[i] = dy[i] * s * (1 + v * (1 - s));
    swiglu_ref[i] = v * s * u[i];
    dgate_ref[i] = dy[i] * u[i] * s * (1 + v * (1 - s));
    dup_ref[i] = dy[i] * v * s;
  }
  auto out = poisoned(n), out2 = poisoned(n);
  gelu_forward(x.data(), out.data(), n);
  EXPECT_TRUE(close_to(out, gelu_ref, 4e-6, 1e-6));
  gelu_backward(dy.data(), x.data(), out.data(), n);
  EXPECT_TRUE(close_to(out, dgelu_ref, 1e-5, 1e-6));
  silu_forward(x.data(), out.data(), n);
  EXPECT_TRUE(close_to(out, silu_ref, 4e-6, 1e-6));
  silu_backward(dy.data(), x.data(), out.data(), n);
  EXPECT_TRUE(close_to(out, dsilu_ref, 1e-5, 1e-6));
  swiglu_forward(x.data(), u.data(), out.data(), n);
  EXPECT_TRUE(close_to(out, swiglu_ref, 4e-6, 1e-6));
  out = poisoned(n);
  swiglu_backward(dy.data(), x.data(), u.data(), out.data(), out2.data(), n);
  EXPECT_TRUE(close_to(out, dgate_ref, 1e-5, 1e-6));
  EXPECT_TRUE(close_to(out2, dup_ref, 1e-5, 1e-6));
}

TEST(FastKernels, SoftmaxF32MatchesDouble) {
  const int64_t rows = 7, n = 277;
  std::vector<float> x = random_floats(rows * n, 50, -30.0f, 30.0f);
  std::vector<double> ref(rows * n);
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, z = 0;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, double(x[r * n + j]));
    for (int64_t j = 0; j < n; ++j) z += std::exp(x[r * n + j] - m);
    for (int64_t j = 0; j < n; ++j) ref[r * n + j] = std::exp(x[r * n + j] - m) / z;
  }
  auto y = poisoned(rows * n);
  softmax_forward(x.data(), y.data(), rows, n);
  EXPECT_TRUE(close_to(y, ref, 1e-5, 1e-12));
}

TEST(FastKernels, AdamWF32MatchesDouble) {
  const int64_t n = 3001;
  std::vector<float> p = random_floats(n, 60, -0.1f, 0.1f), m(n, 0.0f), v(n, 0.0f);
  std::vector<double> pd(p.begin(), p.end()), md(n, 0.0), vd(n, 0.0);
  const double lr = 1e-3, b1 = 0.9, b2 = 0.95, eps = 1e-8, wd = 0.01;
  for (int64_t step = 1; step <= 3; ++step) {
    std::vector<float> g = random_floats(n, 60 + step, -2.0f, 2.0f);
    for (int64_t i = 0; i < n; i += 97) g[i] = 0.0f;  // zero gradients: only decay moves p
    adamw_step(p.data(), g.data(), m.data(), v.data(), n, lr, b1, b2, eps, wd, step);
    for (int64_t i = 0; i < n; ++i) {
      md[i] = b1 * md[i] + (1 - b1) * g[i];
      vd[i] = b2 * vd[i] + (1 - b2) * double(g[i]) * g[i];
      double update =
          (md[i] / (1 - std::pow(b1, step))) / (std::sqrt(vd[i] / (1 - std::pow(b2, step))) + eps);
      pd[i] -= lr * (update + wd * pd[i]);
    }
  }
  // The parameters move by ~3e-3; f32 rounding of p itself is ~1e-8.
  EXPECT_TRUE(close_to(p, pd, 1e-6, 1e-8));
  // The moments are stored in f32 (as before): rounding ~1e-7 of |g| ~ 1.
  EXPECT_TRUE(close_to(m, md, 1e-5, 2e-7));
  EXPECT_TRUE(close_to(v, vd, 1e-5, 2e-7));
}

// Mixed precision: the master follows the f32 step exactly (same code path) and the bf16
// copy is the master rounded to nearest even: ties to even both ways, NaN stays NaN, the
// largest finite values round to infinity as __float2bfloat16_rn does.
TEST(FastKernels, AdamWBf16MasterRoundsToNearestEven) {
  // Rounding on hand-picked bit patterns: 1 + 2^-8 is a tie (to 1.0), 1 + 3*2^-8 a tie up.
  auto bits_of = [](float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  auto from_bits = [](uint32_t u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  };
  EXPECT_EQ(float_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16_bits(from_bits(0x3f808000u)), 0x3f80);  // tie, even below
  EXPECT_EQ(float_to_bf16_bits(from_bits(0x3f818000u)), 0x3f82);  // tie, even above
  EXPECT_EQ(float_to_bf16_bits(from_bits(0x3f808001u)), 0x3f81);  // just above the tie
  EXPECT_EQ(float_to_bf16_bits(from_bits(0xbf807fffu)), 0xbf80);  // negative, just below
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(float_to_bf16_bits(std::numeric_limits<float>::max()), 0x7f80);
  uint16_t nan = float_to_bf16_bits(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7f80, 0x7f80);
  EXPECT_NE(nan & 0x7f, 0);

  const int64_t n = 1501;
  std::vector<float> master = random_floats(n, 70, -3.0f, 3.0f);
  std::vector<float> plain = master, m(n, 0.0f), v(n, 0.0f), m2(n, 0.0f), v2(n, 0.0f);
  std::vector<uint16_t> param(n, 0xffff);
  for (int64_t step = 1; step <= 3; ++step) {
    std::vector<float> g = random_floats(n, 80 + step, -1.0f, 1.0f);
    adamw_step_bf16_master(master.data(), param.data(), g.data(), m.data(), v.data(), n, 1e-3, 0.9,
                           0.95, 1e-8, 0.01, step);
    adamw_step(plain.data(), g.data(), m2.data(), v2.data(), n, 1e-3, 0.9, 0.95, 1e-8, 0.01, step);
  }
  EXPECT_EQ(std::memcmp(master.data(), plain.data(), n * 4), 0);
  EXPECT_EQ(std::memcmp(m.data(), m2.data(), n * 4), 0);
  for (int64_t i = 0; i < n; ++i) {
    // Round to nearest even from the definition: the nearer bf16 neighbour, the even one on a tie.
    uint32_t u = bits_of(master[i]);
    uint32_t lower = u & 0xffff0000u, upper = lower + 0x10000u;
    double below = std::fabs(double(master[i]) - from_bits(lower));
    double above = std::fabs(double(from_bits(upper)) - master[i]);
    uint32_t want = below < above   ? lower
                    : above < below ? upper
                                    : ((lower >> 16) & 1 ? upper : lower);
    ASSERT_EQ(param[i], want >> 16) << i;
  }
}

// ---------------------------------------------------------------------------
// The packed GEMM, every transpose combination, edge tiles (M, N not
// multiples of 8 / 32), K over one K block (256), alpha/beta.
TEST(FastKernels, PackedGemmMatchesDoubleReference) {
  struct Case {
    int64_t M, N, K;
    float alpha, beta;
  };
  const Case cases[] = {{1, 1, 1, 1.0f, 0.0f},      {8, 32, 16, 1.0f, 0.0f},
                        {13, 45, 7, 0.5f, 0.0f},    {37, 70, 300, 1.0f, 1.0f},
                        {64, 277, 128, 1.0f, 0.0f}, {100, 33, 520, -1.5f, 0.25f},
                        {20, 90, 300, 0.5f, -1.0f}};  // few rows x B^T: the transposed form
  for (const Case& c : cases)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t lda = (ta ? c.M : c.K) + 3, ldb = (tb ? c.K : c.N) + 1, ldc = c.N + 2;
        std::vector<float> A = random_floats((ta ? c.K : c.M) * lda, 70 + c.M);
        std::vector<float> B = random_floats((tb ? c.N : c.K) * ldb, 71 + c.N);
        std::vector<float> C = c.beta == 0.0f ? poisoned(c.M * ldc) : random_floats(c.M * ldc, 72);
        std::vector<double> ref(c.M * ldc), bound(c.M * ldc);
        for (int64_t i = 0; i < c.M; ++i)
          for (int64_t j = 0; j < c.N; ++j) {
            double acc = 0, mag = 0;
            for (int64_t k = 0; k < c.K; ++k) {
              double a = ta ? A[k * lda + i] : A[i * lda + k];
              double b = tb ? B[j * ldb + k] : B[k * ldb + j];
              acc += a * b, mag += std::fabs(a * b);
            }
            double prior = c.beta == 0.0f ? 0.0 : double(c.beta) * C[i * ldc + j];
            ref[i * ldc + j] = c.alpha * acc + prior;
            bound[i * ldc + j] = 2e-7 * (std::fabs(c.alpha) * mag + std::fabs(prior)) * 4 + 1e-30;
          }
        std::vector<float> padding_before(C);
        gemm_f32_packed(ta, tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb, c.beta,
                        C.data(), ldc);
        for (int64_t i = 0; i < c.M; ++i) {
          for (int64_t j = 0; j < c.N; ++j)
            ASSERT_LE(std::fabs(C[i * ldc + j] - ref[i * ldc + j]), bound[i * ldc + j])
                << "M " << c.M << " N " << c.N << " K " << c.K << " ta " << ta << " tb " << tb
                << " at (" << i << ", " << j << ")";
          for (int64_t j = c.N; j < ldc; ++j)  // the row padding is never written
            ASSERT_TRUE(std::memcmp(&C[i * ldc + j], &padding_before[i * ldc + j], 4) == 0);
        }
      }
}

// A row-major A is read in place by the micro-kernel; A^T is packed first.
// Both feed the same values in the same k order, so op(A) given either way
// must give the same bits (edge rows: M % 8 != 0; two K blocks; beta != 0).
TEST(FastKernels, PackedGemmInPlaceAMatchesPackedTransposedA) {
  const int64_t M = 45, N = 70, K = 300, lda = K + 5, ldt = M + 3;
  std::vector<float> A = random_floats(M * lda, 90), B = random_floats(K * N, 91);
  std::vector<float> At(K * ldt);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) At[k * ldt + i] = A[i * lda + k];
  std::vector<float> c_in_place = random_floats(M * N, 92), c_packed = c_in_place;
  gemm_f32_packed(false, false, M, N, K, 0.75f, A.data(), lda, B.data(), N, 0.5f, c_in_place.data(),
                  N);
  gemm_f32_packed(true, false, M, N, K, 0.75f, At.data(), ldt, B.data(), N, 0.5f, c_packed.data(),
                  N);
  EXPECT_EQ(std::memcmp(c_in_place.data(), c_packed.data(), c_packed.size() * 4), 0);
}

namespace {

// The packed GEMM's summation order, written out as scalar code: per C
// element, one k-ordered chain of multiply-adds per K block of 256 (each
// starting from 0), then y = alpha * chain + beta * C on the first block and
// y = chain + C on later ones. Register tile shapes, packing, loop order and
// threading may change, but the published demo numbers and exact resume
// depend on these bits, so the kernel must match this exactly. (The scalar
// expressions are the kernel's, so both get the same FMA contraction. With
// alpha != 1 and a prior C, alpha * chain + C has two contractions to choose
// from and the kernel's vector and edge-tile code may choose differently: no
// caller uses alpha != 1, so that case is pinned only for one K block, beta 0.)
void gemm_blocked_scalar_order(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                               const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                               float* C, int64_t ldc) {
  constexpr int64_t kBlock = 256;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k0 = 0; k0 < K; k0 += kBlock) {
        const float block_beta = k0 == 0 ? beta : 1.0f;
        float chain = 0.0f;
        for (int64_t k = k0; k < std::min(K, k0 + kBlock); ++k) {
          const float a = ta ? A[k * lda + i] : A[i * lda + k];
          const float b = tb ? B[j * ldb + k] : B[k * ldb + j];
          // The kernels' multiply-add rule (fused where the target has FMA),
          // explicitly: left to the compiler, this test's inlined copies were
          // contracted in some call sites and not in others.
          chain = madd(a, b, chain);
        }
        float y = alpha == 1.0f ? chain : alpha * chain;
        if (block_beta != 0.0f) y += block_beta * C[i * ldc + j];
        C[i * ldc + j] = y;
      }
}

}  // namespace

// Many random shapes (odd sizes, edge tiles in both directions, one to three
// K blocks, the few-rows form) x every transpose x alpha/beta: the packed
// GEMM must equal the scalar order above bit for bit, on 1 and 2 threads.
TEST(FastKernels, PackedGemmBitIdenticalToBlockedScalarOrder) {
  std::mt19937_64 rng(20261207);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const float alphas[] = {1.0f, 1.0f, 0.5f, -1.25f}, betas[] = {0.0f, 1.0f, 0.25f, -0.75f};
  const int before = omp_get_max_threads();
  for (int trial = 0; trial < 48; ++trial) {
    // Mostly small shapes (fast in the scalar reference), some at the demo
    // model's sizes: 1024 ViT rows, K up to three blocks.
    const int64_t M = trial % 8 == 0 ? pick(200, 1030) : pick(1, 80);
    const int64_t N = trial % 8 == 1 ? pick(150, 300) : pick(1, 100);
    const float alpha = alphas[trial % 4];
    const float beta = alpha == 1.0f ? betas[(trial / 4) % 4] : 0.0f;
    const int64_t K = alpha != 1.0f ? pick(1, 256) : trial % 3 == 0 ? pick(257, 700) : pick(1, 200);
    omp_set_num_threads(1 + trial % 2);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t lda = (ta ? M : K) + trial % 3, ldb = (tb ? K : N) + trial % 2, ldc = N + 1;
        std::vector<float> A = random_floats((ta ? K : M) * lda, 500 + trial);
        std::vector<float> B = random_floats((tb ? N : K) * ldb, 600 + trial);
        std::vector<float> C = beta == 0.0f ? poisoned(M * ldc) : random_floats(M * ldc, 700);
        std::vector<float> expected = C;
        gemm_blocked_scalar_order(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta,
                                  expected.data(), ldc);
        gemm_f32_packed(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
        for (int64_t i = 0; i < M; ++i)
          ASSERT_EQ(std::memcmp(&C[i * ldc], &expected[i * ldc], N * sizeof(float)), 0)
              << "M " << M << " N " << N << " K " << K << " ta " << ta << " tb " << tb << " alpha "
              << alpha << " beta " << beta << ": first differing row " << i;
      }
  }
  omp_set_num_threads(before);
}

// The parallel path (over 2^21 multiply-adds) on teams of 1, 2, 3 and 5
// threads: each thread packs the B panels of its own run of tiles (a panel
// split between two runs is packed by both), A^T panels alternate between two
// buffers across K blocks, and teams larger than the tile count leave threads
// idle. The result must equal the scalar order bit for bit on every team.
TEST(FastKernels, PackedGemmBitIdenticalOnAnyTeamSize) {
  struct Case {
    int64_t M, N, K;
  };
  // Split column panels (N = 96: three panels over two threads), one panel,
  // one tile with 24 K blocks, edge tiles, the demo's weight gradients.
  const Case cases[] = {{640, 96, 200},  {1030, 30, 90},  {12, 32, 6000},  {13, 33, 5000},
                        {128, 320, 640}, {277, 128, 700}, {203, 150, 300}, {25, 600, 260}};
  const int before = omp_get_max_threads();
  int trial = 0;
  for (const Case& cs : cases)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb, ++trial) {
        const int64_t M = cs.M, N = cs.N, K = cs.K;
        const float beta = trial % 2 ? 1.0f : 0.0f;
        const int64_t lda = (ta ? M : K) + 1, ldb = (tb ? K : N) + 2, ldc = N + 1;
        std::vector<float> A = random_floats((ta ? K : M) * lda, 1100 + trial);
        std::vector<float> B = random_floats((tb ? N : K) * ldb, 1200 + trial);
        std::vector<float> C0 = beta == 0.0f ? poisoned(M * ldc) : random_floats(M * ldc, 1300);
        std::vector<float> expected = C0;
        gemm_blocked_scalar_order(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta,
                                  expected.data(), ldc);
        for (int team : {1, 2, 3, 5}) {
          omp_set_num_threads(team);
          std::vector<float> C = C0;
          gemm_f32_packed(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
          for (int64_t i = 0; i < M; ++i)
            ASSERT_EQ(std::memcmp(&C[i * ldc], &expected[i * ldc], N * sizeof(float)), 0)
                << "M " << M << " N " << N << " K " << K << " ta " << ta << " tb " << tb
                << " threads " << team << ": first differing row " << i;
          ASSERT_TRUE(std::isnan(C[ldc - 1]) || beta != 0.0f) << "wrote past the N columns";
        }
      }
  omp_set_num_threads(before);
}

// gemm_bias (a linear layer's x W^T + b, the bias added in the packed GEMM's
// epilogue) must equal what linear did before, bit for bit: C filled with the
// bias rows, then gemm with beta = 1 (= the scalar order above). Shapes cover
// the main path (edge tiles, one to three K blocks, every transpose, 1 and 2
// threads), the few-rows form (M <= 96, x W^T) and f64 (fill + BLAS); C starts
// poisoned, so a read of C before it is written shows.
TEST(FastKernels, GemmBiasBitIdenticalToFilledC) {
  std::mt19937_64 rng(20261208);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const int before = omp_get_max_threads();
  for (int trial = 0; trial < 40; ++trial) {
    const int64_t M = trial % 4 == 0 ? pick(200, 1030) : trial % 4 == 1 ? pick(1, 96) : pick(1, 80);
    const int64_t N = trial % 4 == 1 ? pick(2 * M, 2 * M + 150) : pick(1, 300);
    const int64_t K = trial % 3 == 0 ? pick(257, 700) : pick(1, 200);
    omp_set_num_threads(1 + trial % 2);
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        const int64_t lda = (ta ? M : K) + trial % 3, ldb = (tb ? K : N) + trial % 2, ldc = N + 3;
        std::vector<float> A = random_floats((ta ? K : M) * lda, 800 + trial);
        std::vector<float> B = random_floats((tb ? N : K) * ldb, 900 + trial);
        std::vector<float> bias = random_floats(N, 1000 + trial, -3.0f, 3.0f);
        std::vector<float> expected = poisoned(M * ldc), C = poisoned(M * ldc);
        for (int64_t i = 0; i < M; ++i) std::copy(bias.begin(), bias.end(), &expected[i * ldc]);
        gemm_blocked_scalar_order(ta, tb, M, N, K, 1.0f, A.data(), lda, B.data(), ldb, 1.0f,
                                  expected.data(), ldc);
        gemm_bias<float>(ta, tb, M, N, K, A.data(), lda, B.data(), ldb, bias.data(), C.data(), ldc);
        for (int64_t i = 0; i < M; ++i)
          ASSERT_EQ(std::memcmp(&C[i * ldc], &expected[i * ldc], N * sizeof(float)), 0)
              << "M " << M << " N " << N << " K " << K << " ta " << ta << " tb " << tb
              << ": first differing row " << i;
        ASSERT_TRUE(std::isnan(C[ldc - 1])) << "wrote past the N columns of a row";
      }
  }
  omp_set_num_threads(before);
  // f64: the bias rows plus the product, against the float64 reference.
  const int64_t M = 37, N = 53, K = 300;
  std::vector<double> A(M * K), B(N * K), bias(N), C(M * N), expected(M * N);
  std::mt19937_64 drng(5);
  std::uniform_real_distribution<double> u(-1, 1);
  for (auto* v : {&A, &B, &bias})
    for (double& x : *v) x = u(drng);
  for (int64_t i = 0; i < M; ++i) std::copy(bias.begin(), bias.end(), &expected[i * N]);
  gemm_reference<double>(false, true, M, N, K, 1.0, A.data(), K, B.data(), K, 1.0, expected.data(),
                         N);
  gemm_bias<double>(false, true, M, N, K, A.data(), K, B.data(), K, bias.data(), C.data(), N);
  for (int64_t i = 0; i < M * N; ++i) ASSERT_NEAR(C[i], expected[i], 1e-12) << i;
}

TEST(FastKernels, PackedGemmBitIdenticalAcrossThreadCounts) {
  // The main path, and the few-rows form (M <= 96, N >= 2M, x B^T), each large
  // enough to split over threads.
  for (const auto& [M, N, K] : {std::array<int64_t, 3>{203, 150, 300}, {64, 600, 300}}) {
    ASSERT_GT(M * N * K,
              M <= 96 ? kGemmFewRowsParallelMinMultiplyAdds : kGemmParallelMinMultiplyAdds);
    std::vector<float> A = random_floats(M * K, 80), B = random_floats(N * K, 81);
    std::vector<float> c1 = poisoned(M * N), c2 = poisoned(M * N);
    int before = omp_get_max_threads();
    omp_set_num_threads(1);
    gemm<float>(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, c1.data(), N);
    omp_set_num_threads(2);
    gemm<float>(false, true, M, N, K, 1.0f, A.data(), K, B.data(), K, 0.0f, c2.data(), N);
    omp_set_num_threads(before);
    EXPECT_EQ(std::memcmp(c1.data(), c2.data(), c1.size() * 4), 0) << "M " << M;
  }
}

// ---------------------------------------------------------------------------
// f32 attention forward and backward against the f64 kernels (which the
// runtime tests check against a naive reference and finite differences), at
// the demo model's head sizes: D = 32 causal with left padding and GQA, D = 24
// bidirectional over 64 patches, and a tile-crossing length.
TEST(FastKernels, AttentionF32MatchesF64) {
  struct Case {
    AttentionShape s;
    bool padded;
  };
  const Case cases[] = {{{3, 40, 40, 4, 2, 32, true, 1 / std::sqrt(32.0)}, true},
                        {{2, 64, 64, 4, 4, 24, false, 1 / std::sqrt(24.0)}, false},
                        {{1, 20, 90, 2, 1, 16, true, 0.3}, true}};
  for (const Case& c : cases) {
    const AttentionShape& s = c.s;
    const int64_t nq = s.B * s.Sq * s.H * s.D, nk = s.B * s.Sk * s.Hkv * s.D;
    std::vector<float> q = random_floats(nq, 90, -2, 2), k = random_floats(nk, 91, -2, 2),
                       v = random_floats(nk, 92), dout = random_floats(nq, 93);
    std::vector<int32_t> mask(s.B * s.Sk, 1);
    if (c.padded)
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t j = 0; j < 3 * b + 1; ++j) mask[b * s.Sk + j] = 0;
    const int32_t* pm = c.padded ? mask.data() : nullptr;
    auto qd = to_double(q), kd = to_double(k), vd = to_double(v), dod = to_double(dout);
    std::vector<double> out_d(nq), lse_d(s.B * s.H * s.Sq), dq_d(nq), dk_d(nk), dv_d(nk);
    attention_forward<double>(s, qd.data(), kd.data(), vd.data(), pm, out_d.data(), lse_d.data());
    attention_backward<double>(s, qd.data(), kd.data(), vd.data(), pm, out_d.data(), lse_d.data(),
                               dod.data(), dq_d.data(), dk_d.data(), dv_d.data());
    auto out = poisoned(nq), lse = poisoned(s.B * s.H * s.Sq), dq = poisoned(nq), dk = poisoned(nk),
         dv = poisoned(nk);
    attention_forward<float>(s, q.data(), k.data(), v.data(), pm, out.data(), lse.data());
    EXPECT_TRUE(close_to(out, out_d, 1e-5, 2e-6));
    EXPECT_TRUE(close_to(lse, lse_d, 1e-6, 1e-6));
    attention_backward<float>(s, q.data(), k.data(), v.data(), pm, out.data(), lse.data(),
                              dout.data(), dq.data(), dk.data(), dv.data());
    EXPECT_TRUE(close_to(dq, dq_d, 1e-4, 1e-5));
    EXPECT_TRUE(close_to(dk, dk_d, 1e-4, 1e-5));
    EXPECT_TRUE(close_to(dv, dv_d, 1e-4, 1e-5));
  }
}

// One query per row over a cache with unwritten slots past `length`, left
// padding, a fully masked row, GQA (2 query heads per kv head).
namespace {

// The short-sequence attention kernels' order of operations, one query row at
// a time (the kernel before it grouped rows): scores by accumulate_rows over
// the transposed keys, scale and mask, max, exp and the normaliser (sum_exp
// for f32), P.V by accumulate_rows; backward: P and dS per row, dq, then dk
// and dv per key over the query rows. The kernel may group rows, vectorise
// and transpose however it likes, but its values must equal these bit for
// bit (the published demo numbers and exact resume depend on them).
bool key_seen(const AttentionShape& s, const int32_t* mask, int64_t b, int64_t i, int64_t j) {
  return !(s.causal && j > i + (s.Sk - s.Sq)) && !(mask && mask[b * s.Sk + j] == 0);
}

template <class T>
void attention_rows_in_order(const AttentionShape& s, const T* q, const T* k, const T* v,
                             const int32_t* mask, const T* dout, T* out, T* lse, T* dq, T* dk,
                             T* dv) {
  const int64_t Sq = s.Sq, Sk = s.Sk, D = s.D, group = s.H / s.Hkv;
  auto qo = [&](int64_t b, int64_t i, int64_t h) { return ((b * Sq + i) * s.H + h) * D; };
  auto ko = [&](int64_t b, int64_t j, int64_t hk) { return ((b * Sk + j) * s.Hkv + hk) * D; };
  const T scale = static_cast<T>(s.scale);
  std::vector<T> k_t(D * Sk), v_t(D * Sk), sc(Sk), dp(Sk), p(Sq * Sk), ds(Sq * Sk);
  std::vector<T> p_t(Sk * Sq), ds_t(Sk * Sq);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t hk = 0; hk < s.Hkv; ++hk) {
      for (int64_t j = 0; j < Sk; ++j)
        for (int64_t d = 0; d < D; ++d)
          k_t[d * Sk + j] = k[ko(b, j, hk) + d], v_t[d * Sk + j] = v[ko(b, j, hk) + d];
      for (int64_t j = 0; j < Sk; ++j)
        for (int64_t d = 0; d < D; ++d) dk[ko(b, j, hk) + d] = 0, dv[ko(b, j, hk) + d] = 0;
      for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
        for (int64_t i = 0; i < Sq; ++i) {  // forward
          const int64_t nk = s.causal ? std::max<int64_t>(0, std::min(Sk, i + 1 + Sk - Sq)) : Sk;
          std::fill(sc.begin(), sc.end(), T(0));
          accumulate_rows(sc.data(), nk, q + qo(b, i, h), k_t.data(), Sk, D);
          T m = -INFINITY;
          for (int64_t j = 0; j < nk; ++j)
            sc[j] = sc[j] * scale + (key_seen(s, mask, b, i, j) ? T(0) : T(-INFINITY));
          if constexpr (std::is_same_v<T, float>) {
            m = max_lanes8(sc.data(), nk);  // (which of +0 / -0 a max returns is order dependent)
          } else {
            for (int64_t j = 0; j < nk; ++j) m = std::max(m, sc[j]);
          }
          T* oi = out + qo(b, i, h);
          T& l = lse[(b * s.H + h) * Sq + i];
          if (m == -INFINITY) {
            std::fill(oi, oi + D, T(0));
            l = -INFINITY;
            continue;
          }
          T sum = 0;
          if constexpr (std::is_same_v<T, float>) {
            sum = static_cast<T>(sum_exp(sc.data(), nk, m, sc.data()));
          } else {
            for (int64_t j = 0; j < nk; ++j) sc[j] = k_exp(sc[j] - m), sum += sc[j];
          }
          std::vector<T> acc(D, T(0));
          accumulate_rows(acc.data(), D, sc.data(), v + ko(b, 0, hk), s.Hkv * D, nk);
          for (int64_t d = 0; d < D; ++d) oi[d] = acc[d] / sum;
          l = m + std::log(sum);
        }
        std::fill(p.begin(), p.end(), T(0));
        std::fill(ds.begin(), ds.end(), T(0));
        for (int64_t i = 0; i < Sq; ++i) {  // backward: P, dS, dq
          T* dqi = dq + qo(b, i, h);
          std::fill(dqi, dqi + D, T(0));
          const T l = lse[(b * s.H + h) * Sq + i];
          if (l == -INFINITY) continue;
          const int64_t nk = s.causal ? std::max<int64_t>(0, std::min(Sk, i + 1 + Sk - Sq)) : Sk;
          T di = 0;
          for (int64_t d = 0; d < D; ++d) di += dout[qo(b, i, h) + d] * out[qo(b, i, h) + d];
          std::fill(sc.begin(), sc.end(), T(0));
          std::fill(dp.begin(), dp.end(), T(0));
          accumulate_rows(sc.data(), nk, q + qo(b, i, h), k_t.data(), Sk, D);
          accumulate_rows(dp.data(), nk, dout + qo(b, i, h), v_t.data(), Sk, D);
          for (int64_t j = 0; j < nk; ++j) {
            const T bias = key_seen(s, mask, b, i, j) ? T(0) : T(-INFINITY);
            p[i * Sk + j] = k_exp(sc[j] * scale - l + bias);
            ds[i * Sk + j] = p[i * Sk + j] * (dp[j] - di) * scale;
          }
          accumulate_rows(dqi, D, &ds[i * Sk], k + ko(b, 0, hk), s.Hkv * D, nk);
        }
        for (int64_t i = 0; i < Sq; ++i)
          for (int64_t j = 0; j < Sk; ++j)
            p_t[j * Sq + i] = p[i * Sk + j], ds_t[j * Sq + i] = ds[i * Sk + j];
        for (int64_t j = 0; j < Sk; ++j) {
          accumulate_rows(dv + ko(b, j, hk), D, &p_t[j * Sq], dout + qo(b, 0, h), s.H * D, Sq);
          accumulate_rows(dk + ko(b, j, hk), D, &ds_t[j * Sq], q + qo(b, 0, h), s.H * D, Sq);
        }
      }
    }
}

template <class T>
void check_attention_rows_bit_identical(int trials, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
  };
  const int before = omp_get_max_threads();
  for (int trial = 0; trial < trials; ++trial) {
    AttentionShape s;
    s.B = pick(1, 3), s.Hkv = pick(1, 2), s.H = s.Hkv * pick(1, 3), s.D = pick(1, 40);
    s.Sq = pick(1, 70), s.causal = trial % 2 == 0;
    s.Sk = s.causal ? s.Sq + pick(0, 4) : pick(1, 70);
    s.scale = 1.0 / std::sqrt(double(s.D));
    if (trial % 7 == 3) s.B = 16, s.Sq = s.Sk = 64, s.H = s.Hkv = 4, s.D = 24, s.causal = false;
    const int64_t nq = s.B * s.Sq * s.H * s.D, nk = s.B * s.Sk * s.Hkv * s.D;
    auto rand_t = [&](int64_t n, uint64_t sd) {
      std::vector<float> f = random_floats(n, sd, -1.5f, 1.5f);
      return std::vector<T>(f.begin(), f.end());
    };
    std::vector<T> q = rand_t(nq, 900 + trial), k = rand_t(nk, 901), v = rand_t(nk, 902);
    std::vector<T> dout = rand_t(nq, 903);
    if (trial % 3 == 0)  // exact zeros: accumulate_rows skips zero weights
      for (int64_t i = 0; i < nq; i += 5) q[i] = 0, dout[i] = 0;
    std::vector<int32_t> mask(s.B * s.Sk, 1);
    const bool masked = trial % 4 < 2;
    if (masked)  // left padding; row 0 fully masked (sees no key)
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t j = 0, pad = b == 0 ? s.Sk : pick(0, s.Sk); j < pad; ++j)
          mask[b * s.Sk + j] = 0;
    const int32_t* m = masked ? mask.data() : nullptr;
    std::vector<T> out(nq), lse(s.B * s.H * s.Sq), dq(nq), dk(nk), dv(nk);
    std::vector<T> out_r(nq), lse_r(s.B * s.H * s.Sq), dq_r(nq), dk_r(nk), dv_r(nk);
    attention_rows_in_order<T>(s, q.data(), k.data(), v.data(), m, dout.data(), out_r.data(),
                               lse_r.data(), dq_r.data(), dk_r.data(), dv_r.data());
    omp_set_num_threads(1 + trial % 2);
    attention_forward<T>(s, q.data(), k.data(), v.data(), m, out.data(), lse.data());
    attention_backward<T>(s, q.data(), k.data(), v.data(), m, out.data(), lse.data(), dout.data(),
                          dq.data(), dk.data(), dv.data());
    auto same = [](const std::vector<T>& a, const std::vector<T>& b) {
      return std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
    };
    const std::string shape = "trial " + std::to_string(trial) + ": B " + std::to_string(s.B) +
                              " Sq " + std::to_string(s.Sq) + " Sk " + std::to_string(s.Sk) +
                              " H " + std::to_string(s.H) + " Hkv " + std::to_string(s.Hkv) +
                              " D " + std::to_string(s.D) + " causal " + std::to_string(s.causal);
    ASSERT_TRUE(same(out, out_r)) << "out, " << shape;
    ASSERT_TRUE(same(lse, lse_r)) << "lse, " << shape;
    ASSERT_TRUE(same(dq, dq_r)) << "dq, " << shape;
    ASSERT_TRUE(same(dk, dk_r)) << "dk, " << shape;
    ASSERT_TRUE(same(dv, dv_r)) << "dv, " << shape;
  }
  omp_set_num_threads(before);
}

}  // namespace

// Random short-sequence shapes (the whole-row path), causal or not, padding
// masks with a row that sees no key, GQA, exact zeros, 1 and 2 threads, the
// ViT's 16 x 64 x 4 x 24: forward and backward equal the one-row-at-a-time
// order above bit for bit, f32 and f64.
TEST(FastKernels, AttentionRowsBitIdenticalToPerRowOrder) {
  check_attention_rows_bit_identical<float>(60, 31);
  check_attention_rows_bit_identical<double>(20, 32);
}

// The f32 norms process rows in groups of four (interleaved reduction
// chains); a row's values must not depend on that: every row's output,
// mean/rstd and input gradient equal a call on that row alone bit for bit
// (odd row counts leave rows outside any group). The weight gradients' order
// (rows within fixed chunks) is unchanged and checked against float64 by the
// runtime tests.
TEST(FastKernels, NormRowGroupsBitIdenticalToSingleRows) {
  for (int64_t rows : {4, 37, 130})
    for (int64_t n : {1, 45, 96, 128}) {
      std::vector<float> x = random_floats(rows * n, 40 + n, -2.0f, 2.0f);
      std::vector<float> dy = random_floats(rows * n, 41 + n), w = random_floats(n, 42);
      std::vector<float> b = random_floats(n, 43);
      std::vector<float> y(rows * n), mean(rows), rstd(rows), dx(rows * n), dw(n), db(n);
      std::vector<float> y1(n), mean1(1), rstd1(1), dx1(n), dw1(n), db1(n);
      auto same = [](const float* a, const float* c, int64_t len) {
        return std::memcmp(a, c, len * sizeof(float)) == 0;
      };
      layernorm_forward<float>(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(),
                               rows, n, 1e-5);
      layernorm_backward<float>(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), dx.data(),
                                dw.data(), db.data(), rows, n);
      for (int64_t r = 0; r < rows; ++r) {
        layernorm_forward<float>(&x[r * n], w.data(), b.data(), y1.data(), mean1.data(),
                                 rstd1.data(), 1, n, 1e-5);
        layernorm_backward<float>(&dy[r * n], &x[r * n], w.data(), mean1.data(), rstd1.data(),
                                  dx1.data(), dw1.data(), db1.data(), 1, n);
        ASSERT_TRUE(same(&y[r * n], y1.data(), n) && mean[r] == mean1[0] && rstd[r] == rstd1[0])
            << "layernorm forward, rows " << rows << " n " << n << " row " << r;
        ASSERT_TRUE(same(&dx[r * n], dx1.data(), n))
            << "layernorm backward, rows " << rows << " n " << n << " row " << r;
      }
      rmsnorm_forward<float>(x.data(), w.data(), y.data(), rstd.data(), rows, n, 1e-6);
      rmsnorm_backward<float>(dy.data(), x.data(), w.data(), rstd.data(), dx.data(), dw.data(),
                              rows, n);
      for (int64_t r = 0; r < rows; ++r) {
        rmsnorm_forward<float>(&x[r * n], w.data(), y1.data(), rstd1.data(), 1, n, 1e-6);
        rmsnorm_backward<float>(&dy[r * n], &x[r * n], w.data(), rstd1.data(), dx1.data(), nullptr,
                                1, n);
        ASSERT_TRUE(same(&y[r * n], y1.data(), n) && rstd[r] == rstd1[0])
            << "rmsnorm forward, rows " << rows << " n " << n << " row " << r;
        ASSERT_TRUE(same(&dx[r * n], dx1.data(), n))
            << "rmsnorm backward, rows " << rows << " n " << n << " row " << r;
      }
    }
}

// The element-wise, norm and AdamW kernels split rows or elements over
// threads only above kParallelMinElements and promise the same bits on any
// team: sizes just below and above the threshold (and a few times it, odd
// sizes that split mid-vector) on 1, 2 and 3 threads must agree bit for bit,
// the norms' weight gradients (partials over fixed row chunks) included.
TEST(FastKernels, ThresholdedKernelsBitIdenticalAcrossThreadCounts) {
  const int before = omp_get_max_threads();
  const int64_t n = 96;  // row width of the norms and softmax
  for (int64_t total : {kParallelMinElements - 1, kParallelMinElements + 1,
                        4 * kParallelMinElements + 37, int64_t{204800}, int64_t{98304}}) {
    const int64_t rows = total / n, rn = rows * n;
    std::vector<float> x = random_floats(total, 1400, -3.0f, 3.0f), dy = random_floats(total, 1401);
    std::vector<float> up = random_floats(total, 1402), w = random_floats(n, 1403);
    std::vector<float> b = random_floats(n, 1404);
    std::vector<std::vector<std::vector<float>>> runs;
    std::vector<std::string> names;
    for (int team : {1, 2}) {
      omp_set_num_threads(team);
      std::vector<std::vector<float>> out;
      names.clear();
      auto keep = [&](const char* name, const std::vector<float>& v) {
        out.push_back(v);
        names.push_back(name);
      };
      std::vector<float> y = poisoned(total), dx = poisoned(total), d2 = poisoned(total);
      gelu_forward<float>(x.data(), y.data(), total);
      gelu_backward<float>(dy.data(), x.data(), dx.data(), total);
      keep("gelu_forward", y), keep("gelu_backward", dx);
      silu_forward<float>(x.data(), y.data(), total);
      silu_backward<float>(dy.data(), x.data(), dx.data(), total);
      keep("silu_forward", y), keep("silu_backward", dx);
      swiglu_forward<float>(x.data(), up.data(), y.data(), total);
      swiglu_backward<float>(dy.data(), x.data(), up.data(), dx.data(), d2.data(), total);
      keep("swiglu_forward", y), keep("swiglu_backward dgate", dx), keep("swiglu_backward dup", d2);
      std::vector<float> sy = poisoned(rn), sdx = poisoned(rn);
      softmax_forward<float>(x.data(), sy.data(), rows, n);
      softmax_backward<float>(dy.data(), sy.data(), sdx.data(), rows, n);
      keep("softmax_forward", sy), keep("softmax_backward", sdx);
      std::vector<float> mean = poisoned(rows), rstd = poisoned(rows), dw = poisoned(n),
                         db = poisoned(n);
      layernorm_forward<float>(x.data(), w.data(), b.data(), sy.data(), mean.data(), rstd.data(),
                               rows, n, 1e-5);
      layernorm_backward<float>(dy.data(), x.data(), w.data(), mean.data(), rstd.data(), sdx.data(),
                                dw.data(), db.data(), rows, n);
      keep("layernorm_forward y", sy), keep("layernorm mean", mean), keep("layernorm rstd", rstd);
      keep("layernorm_backward dx", sdx), keep("layernorm dw", dw), keep("layernorm db", db);
      rmsnorm_forward<float>(x.data(), w.data(), sy.data(), rstd.data(), rows, n, 1e-6);
      rmsnorm_backward<float>(dy.data(), x.data(), w.data(), rstd.data(), sdx.data(), dw.data(),
                              rows, n);
      keep("rmsnorm_forward y", sy), keep("rmsnorm rstd", rstd), keep("rmsnorm_backward dx", sdx);
      keep("rmsnorm dw", dw);
      std::vector<float> p = x, m = random_floats(total, 1405),
                         v = random_floats(total, 1406, 0, 1);
      adamw_step<float>(p.data(), dy.data(), m.data(), v.data(), total, 1e-3, 0.9, 0.95, 1e-8, 0.01,
                        3);
      keep("adamw param", p), keep("adamw m", m), keep("adamw v", v);
      runs.push_back(std::move(out));
    }
    for (size_t t = 1; t < runs.size(); ++t)
      for (size_t k = 0; k < names.size(); ++k)
        ASSERT_EQ(std::memcmp(runs[0][k].data(), runs[t][k].data(), runs[0][k].size() * 4), 0)
            << names[k] << ", elements " << total << ": " << t + 1 << " threads differ from 1";
  }
  omp_set_num_threads(before);
}

TEST(FastKernels, DecodeAttentionMatchesDouble) {
  const int64_t B = 4, H = 4, Hkv = 2, D = 32, cap = 50, length = 37;
  std::vector<float> q = random_floats(B * H * D, 100, -2, 2);
  std::vector<float> kc = random_floats(B * cap * Hkv * D, 101, -2, 2);
  std::vector<float> vc = random_floats(B * cap * Hkv * D, 102);
  std::vector<int32_t> mask(B * cap, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 2 * b; j < length; ++j) mask[b * cap + j] = b == 3 ? 0 : 1;
  for (int64_t j = length; j < cap; ++j)  // unwritten slots: garbage that must not be read
    for (int64_t b = 0; b < B; ++b) {
      mask[b * cap + j] = 1;
      for (int64_t d = 0; d < Hkv * D; ++d)
        kc[(b * cap + j) * Hkv * D + d] = vc[(b * cap + j) * Hkv * D + d] = NAN;
    }
  const double scale = 1 / std::sqrt(double(D));
  std::vector<double> ref(B * H * D, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      int64_t hk = h / (H / Hkv);
      std::vector<double> sc(length, -INFINITY);
      double m = -INFINITY;
      for (int64_t j = 0; j < length; ++j) {
        if (!mask[b * cap + j]) continue;
        double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += double(q[(b * H + h) * D + d]) * kc[((b * cap + j) * Hkv + hk) * D + d];
        sc[j] = dot * scale, m = std::max(m, sc[j]);
      }
      if (m == -INFINITY) continue;
      double z = 0;
      for (int64_t j = 0; j < length; ++j) z += std::exp(sc[j] - m);
      for (int64_t j = 0; j < length; ++j) {
        if (sc[j] == -INFINITY) continue;
        double p = std::exp(sc[j] - m) / z;
        for (int64_t d = 0; d < D; ++d)
          ref[(b * H + h) * D + d] += p * vc[((b * cap + j) * Hkv + hk) * D + d];
      }
    }
  auto out = poisoned(B * H * D);
  decode_attention(q.data(), kc.data(), vc.data(), mask.data(), out.data(), B, H, Hkv, D, cap,
                   length, scale);
  EXPECT_TRUE(close_to(out, ref, 1e-5, 2e-6));
  for (int64_t i = 3 * H * D; i < 4 * H * D; ++i) EXPECT_EQ(out[i], 0.0f);  // the masked row
}

// decode_attention splits its (row, head) pairs over threads above 2^18
// multiply-adds of work; the output must not depend on the team. (The demo
// model's generation no longer reaches that split: it decodes its rows in one
// slice per thread, model/sampler.cpp. SharedPrefixDecode covers the
// shared-prefix kernel.) 96 rows, 4 heads of 32, 70 slots: ~860 K.
TEST(FastKernels, DecodeAttentionBitIdenticalAcrossThreadCounts) {
  const int64_t B = 96, H = 4, Hkv = 2, D = 32, cap = 76, len = 70;
  ASSERT_GT(B * H * len * D, int64_t{1} << 18);
  std::vector<float> q = random_floats(B * H * D, 1500, -2, 2);
  std::vector<float> kc = random_floats(B * cap * Hkv * D, 1501, -2, 2);
  std::vector<float> vc = random_floats(B * cap * Hkv * D, 1502);
  std::vector<int32_t> mask(B * cap, 1);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < b % 9; ++j) mask[b * cap + j] = 0;  // left padding
  const double scale = 1 / std::sqrt(double(D));
  const int before = omp_get_max_threads();
  std::vector<std::vector<float>> out;
  for (int team : {1, 2}) {
    omp_set_num_threads(team);
    out.push_back(poisoned(B * H * D));
    decode_attention(q.data(), kc.data(), vc.data(), mask.data(), out.back().data(), B, H, Hkv, D,
                     cap, len, scale);
  }
  omp_set_num_threads(before);
  for (float x : out[0]) ASSERT_TRUE(std::isfinite(x));
  EXPECT_EQ(std::memcmp(out[0].data(), out[1].data(), B * H * D * 4), 0)
      << "decode_attention: 2 threads differ from 1";
}

// Long sequences take the tiled (flash-style) path, short ones the whole-row
// path. Queries are independent and dK/dV sum over them, so the tiled result
// for 130 causal queries must equal the whole-row path run on two query
// blocks ([0, 64) against keys [0, 64), [64, 130) against keys [0, 130)),
// with the blocks' dK/dV added. f64, padding and GQA included.
TEST(FastKernels, TiledAttentionMatchesWholeRowPathOnQueryBlocks) {
  const int64_t B = 2, S = 130, H = 4, Hkv = 2, D = 8;
  const double scale = 1 / std::sqrt(double(D));
  auto qv = to_double(random_floats(B * S * H * D, 110, -2, 2));
  auto kv = to_double(random_floats(B * S * Hkv * D, 111, -2, 2));
  auto vv = to_double(random_floats(B * S * Hkv * D, 112));
  auto dov = to_double(random_floats(B * S * H * D, 113));
  std::vector<int32_t> mask(B * S, 1);
  for (int64_t j = 0; j < 5; ++j) mask[1 * S + j] = 0;  // row 1 left-padded
  const AttentionShape full{B, S, S, H, Hkv, D, true, scale};
  ASSERT_GT(S * S, 128 * 128) << "must exercise the tiled path";
  std::vector<double> out(qv.size()), lse(B * H * S), dq(qv.size()), dk(kv.size()), dv(kv.size());
  attention_forward<double>(full, qv.data(), kv.data(), vv.data(), mask.data(), out.data(),
                            lse.data());
  attention_backward<double>(full, qv.data(), kv.data(), vv.data(), mask.data(), out.data(),
                             lse.data(), dov.data(), dq.data(), dk.data(), dv.data());

  std::vector<double> dk_ref(kv.size(), 0.0), dv_ref(kv.size(), 0.0);
  const int64_t blocks[2][2] = {{0, 64}, {64, S}};
  for (const auto& blk : blocks) {
    const int64_t i0 = blk[0], nq = blk[1] - blk[0], nk = blk[1];
    const AttentionShape s{B, nq, nk, H, Hkv, D, true, scale};
    std::vector<double> q(B * nq * H * D), k(B * nk * Hkv * D), v(k.size()), dout(q.size());
    std::vector<int32_t> m(B * nk);
    for (int64_t b = 0; b < B; ++b) {
      std::copy_n(&qv[(b * S + i0) * H * D], nq * H * D, &q[b * nq * H * D]);
      std::copy_n(&dov[(b * S + i0) * H * D], nq * H * D, &dout[b * nq * H * D]);
      std::copy_n(&kv[b * S * Hkv * D], nk * Hkv * D, &k[b * nk * Hkv * D]);
      std::copy_n(&vv[b * S * Hkv * D], nk * Hkv * D, &v[b * nk * Hkv * D]);
      std::copy_n(&mask[b * S], nk, &m[b * nk]);
    }
    std::vector<double> o(q.size()), l(B * H * nq), gq(q.size()), gk(k.size()), gv(k.size());
    attention_forward<double>(s, q.data(), k.data(), v.data(), m.data(), o.data(), l.data());
    attention_backward<double>(s, q.data(), k.data(), v.data(), m.data(), o.data(), l.data(),
                               dout.data(), gq.data(), gk.data(), gv.data());
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t x = 0; x < nq * H * D; ++x) {
        ASSERT_NEAR(out[(b * S + i0) * H * D + x], o[b * nq * H * D + x], 1e-12);
        ASSERT_NEAR(dq[(b * S + i0) * H * D + x], gq[b * nq * H * D + x], 1e-11);
      }
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < nq; ++i) {
          double a = lse[(b * H + h) * S + i0 + i], e = l[(b * H + h) * nq + i];
          if (a != e) {  // padded rows: both -inf
            ASSERT_NEAR(a, e, 1e-12);
          }
        }
      for (int64_t x = 0; x < nk * Hkv * D; ++x) {
        dk_ref[b * S * Hkv * D + x] += gk[b * nk * Hkv * D + x];
        dv_ref[b * S * Hkv * D + x] += gv[b * nk * Hkv * D + x];
      }
    }
  }
  for (size_t x = 0; x < dk.size(); ++x) {
    ASSERT_NEAR(dk[x], dk_ref[x], 1e-11) << x;
    ASSERT_NEAR(dv[x], dv_ref[x], 1e-11) << x;
  }
}

// Cross-entropy in f32 (fast exp, double sums) against float64, with an
// ignored row; logits spread wide enough that exp underflows for some.
TEST(FastKernels, CrossEntropyF32MatchesDouble) {
  const int64_t N = 9, V = 277, ignore = -100;
  std::vector<float> logits = random_floats(N * V, 120, -40.0f, 40.0f);
  std::vector<int> t = random_ints(N, 121, 0, V - 1);
  std::vector<int64_t> targets(t.begin(), t.end());
  targets[4] = ignore;
  std::vector<double> lse_ref(N), dref(N * V, 0.0);
  double loss_ref = 0;
  int64_t count_ref = 0;
  const double scale = 0.37;
  for (int64_t r = 0; r < N; ++r) {
    double m = -INFINITY, s = 0;
    for (int64_t j = 0; j < V; ++j) m = std::max(m, double(logits[r * V + j]));
    for (int64_t j = 0; j < V; ++j) s += std::exp(double(logits[r * V + j]) - m);
    lse_ref[r] = m + std::log(s);
    if (targets[r] == ignore) continue;
    loss_ref += lse_ref[r] - logits[r * V + targets[r]];
    ++count_ref;
    for (int64_t j = 0; j < V; ++j)
      dref[r * V + j] =
          scale * std::exp(logits[r * V + j] - lse_ref[r]) - (j == targets[r] ? scale : 0);
  }
  loss_ref /= count_ref;
  auto lse = poisoned(N), dlogits = poisoned(N * V);
  int64_t count = -1;
  double loss =
      cross_entropy_forward<float>(logits.data(), targets.data(), lse.data(), N, V, ignore, &count);
  EXPECT_EQ(count, count_ref);
  EXPECT_NEAR(loss, loss_ref, 1e-5 * std::fabs(loss_ref));
  EXPECT_TRUE(close_to(lse, lse_ref, 1e-6, 1e-6));
  cross_entropy_backward<float>(logits.data(), targets.data(), lse.data(), dlogits.data(), N, V,
                                ignore, scale);
  EXPECT_TRUE(close_to(dlogits, dref, 1e-5, 1e-7));
}

// The runtime's f32 log_softmax (fast exp, double sums) and its backward
// against float64.
TEST(FastKernels, LogSoftmaxF32MatchesDouble) {
  const int64_t rows = 5, n = 277;
  std::vector<float> xv = random_floats(rows * n, 130, -30.0f, 30.0f);
  std::vector<float> gv = random_floats(rows * n, 131);
  std::vector<double> y_ref(rows * n), dx_ref(rows * n);
  for (int64_t r = 0; r < rows; ++r) {
    double m = -INFINITY, s = 0, gsum = 0;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, double(xv[r * n + j]));
    for (int64_t j = 0; j < n; ++j) s += std::exp(double(xv[r * n + j]) - m);
    for (int64_t j = 0; j < n; ++j) gsum += gv[r * n + j];
    for (int64_t j = 0; j < n; ++j) {
      y_ref[r * n + j] = xv[r * n + j] - (m + std::log(s));
      dx_ref[r * n + j] = gv[r * n + j] - std::exp(y_ref[r * n + j]) * gsum;
    }
  }
  visplay::Tensor x = visplay::Tensor::from_vector(xv, {rows, n});
  x.set_requires_grad();
  visplay::Tensor y = visplay::log_softmax(x);
  visplay::sum(visplay::mul(y, visplay::Tensor::from_vector(gv, {rows, n}))).backward();
  EXPECT_TRUE(close_to(y.to_vector<float>(), y_ref, 1e-6, 2e-6));
  EXPECT_TRUE(close_to(x.grad().to_vector<float>(), dx_ref, 1e-5, 2e-6));
}
