// gelu_erf against an independent float64 reference: erf from its Taylor
// series summed in long double (not std::erf), plus a few known values.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/ops_gelu_erf.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

double erf_series(double x) {
  long double sum = 0, term = x;  // term_n = (-1)^n x^(2n+1) / n!
  for (int n = 0; n < 200; ++n) {
    sum += term / (2 * n + 1);
    term *= -static_cast<long double>(x) * x / (n + 1);
  }
  return static_cast<double>(sum * 2 / std::sqrt(static_cast<long double>(M_PI)));
}

double gelu_reference(double x) { return 0.5 * x * (1 + erf_series(x / std::sqrt(2.0))); }

TEST(GeluErf, MatchesSeriesReferenceF32AndF64) {
  Tensor x64 = test::random_tensor({7, 33}, 11, DType::f64, -4.0, 4.0);
  std::vector<double> ref;
  for (double v : x64.to_vector<double>()) ref.push_back(gelu_reference(v));
  EXPECT_TRUE(test::all_close(gelu_erf(x64), ref, 1e-12, 1e-14));
  EXPECT_TRUE(test::all_close(gelu_erf(x64.to(DType::f32)), ref, 1e-6, 1e-7));
  // Known values: Phi(1) = 0.841344746068543, so gelu(1) = 0.841344746068543.
  Tensor known = Tensor::from_vector<double>({1.0, -1.0, 0.0}, {3});
  EXPECT_TRUE(
      test::all_close(gelu_erf(known), {0.841344746068543, -0.158655253931457, 0.0}, 1e-12, 1e-14));
  // Differs from the tanh form (the runtime's gelu), so a mix-up shows.
  Tensor far = Tensor::from_vector<double>({-2.5}, {1});
  EXPECT_GT(std::fabs(gelu_erf(far).item() - gelu(far).item()), 1e-4);
}

TEST(GeluErf, GradientMatchesFiniteDifferences) {
  test::expect_gradients_match([](const std::vector<Tensor>& in) { return gelu_erf(in[0]); },
                               {test::random_tensor({5, 9}, 12, DType::f64, -3.0, 3.0)});
}

TEST(GeluErf, Bf16RoundsTheF32Result) {
  Tensor x = test::random_tensor({64}, 13, DType::f32, -3.0, 3.0).to(DType::bf16);
  Tensor y = gelu_erf(x);
  EXPECT_EQ(y.dtype(), DType::bf16);
  std::vector<double> ref;
  for (double v : x.to_vector<double>()) ref.push_back(gelu_reference(v));
  EXPECT_TRUE(test::all_close(y, ref, 1e-2, 1e-2));
}

}  // namespace
}  // namespace visplay
