// Shared test helpers: random tensors, comparisons, and a float64
// finite-difference gradient check that works for any op.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "runtime/allocator.h"
#include "runtime/ops.h"
#include "runtime/random.h"

namespace visplay::test {

// Every test binary poisons fresh allocations (see set_poison_allocations).
struct PoisonEnvironment : ::testing::Environment {
  void SetUp() override { set_poison_allocations(true); }
};
inline ::testing::Environment* const kPoisonEnvironment =
    ::testing::AddGlobalTestEnvironment(new PoisonEnvironment);

inline Tensor random_tensor(const Shape& shape, uint64_t seed, DType dtype = DType::f64,
                            double lo = -1.0, double hi = 1.0) {
  Rng rng(seed);
  return rand_uniform(shape, rng, lo, hi, dtype);
}

// Max |a - b| / (atol + rtol |b|) <= 1 elementwise; reports the worst index.
inline ::testing::AssertionResult all_close(const std::vector<double>& a, const std::vector<double>& b,
                                            double rtol, double atol) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "size " << a.size() << " vs " << b.size();
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(b[i]))
      return ::testing::AssertionFailure() << "NaN mismatch at " << i << ": " << a[i] << " vs " << b[i];
    double err = std::fabs(a[i] - b[i]) / (atol + rtol * std::fabs(b[i]));
    if (err > worst) worst = err, at = i;
  }
  if (worst <= 1.0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "mismatch at " << at << ": " << a[at] << " vs reference "
                                       << b[at] << " (error " << worst << "x tolerance)";
}

inline ::testing::AssertionResult all_close(const Tensor& a, const std::vector<double>& b,
                                            double rtol, double atol) {
  return all_close(a.to_vector<double>(), b, rtol, atol);
}

// Gradient accumulation over k micro-batches into one bf16 leaf w [n] on `device`: backward
// passes of loss_j = sum(w * x_j), x_j random bf16 values in [-0.5, 1) (a drifting sum, as
// gradients over micro-batches often are), each adding x_j to w.grad. Alongside w.grad (read
// back as doubles), the float64 sum of the x_j, the sum of their magnitudes (for the f32
// rounding bound) and the sum accumulated in bf16 the way a bf16 .grad held it.
struct MicroBatchAccumulation {
  DType grad_dtype = DType::f64;
  std::vector<double> grad, reference, abs_sum, bf16_sum;
};
inline MicroBatchAccumulation accumulate_bf16_micro_batches(Device device, int64_t n, int k,
                                                            uint64_t seed) {
  MicroBatchAccumulation r;
  Tensor w = random_tensor({n}, seed, DType::f32).to(DType::bf16).to(device);
  w.set_requires_grad();
  r.reference.assign(n, 0.0);
  r.abs_sum.assign(n, 0.0);
  Tensor bf16_acc;
  for (int j = 0; j < k; ++j) {
    Tensor x = random_tensor({n}, seed + 1 + j, DType::f32, -0.5, 1.0).to(DType::bf16);
    sum(mul(w, x.to(device))).backward();
    std::vector<double> xv = x.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) r.reference[i] += xv[i], r.abs_sum[i] += std::fabs(xv[i]);
    bf16_acc = bf16_acc.defined() ? add(bf16_acc, x) : x;
  }
  r.grad_dtype = w.grad().dtype();
  r.grad = w.grad().to(kCPU).to_vector<double>();
  r.bf16_sum = bf16_acc.to_vector<double>();
  return r;
}

// The largest |a_i - reference_i|.
inline double max_abs_error(const std::vector<double>& a, const std::vector<double>& reference) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - reference[i]));
  return worst;
}

// Checks the analytic gradients of f at `inputs` (all f64, requires_grad set
// here) against central finite differences of L = sum(f(inputs) * R), R a
// fixed random tensor, so every output element contributes with its own weight.
inline void expect_gradients_match(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                                   std::vector<Tensor> inputs, double h = 1e-6, double rtol = 1e-5,
                                   double atol = 1e-7, int64_t max_checks_per_input = -1) {
  for (Tensor& t : inputs) t.set_requires_grad(true);
  Tensor out = f(inputs);
  Tensor weights = random_tensor(out.shape(), 4242, DType::f64);
  Tensor loss = sum(mul(out, weights));
  loss.backward();
  for (size_t which = 0; which < inputs.size(); ++which) {
    Tensor x = inputs[which];
    ASSERT_TRUE(x.grad().defined()) << "input " << which << " got no gradient";
    std::vector<double> all_analytic = x.grad().to_vector<double>();
    // Large inputs: check an evenly spread subset of elements.
    int64_t stride = 1;
    if (max_checks_per_input > 0 && x.numel() > max_checks_per_input)
      stride = (x.numel() + max_checks_per_input - 1) / max_checks_per_input;
    std::vector<double> analytic, numeric;
    double* px = x.data<double>();
    NoGradGuard no_grad;
    for (int64_t i = 0; i < x.numel(); i += stride) {
      analytic.push_back(all_analytic[i]);
      double saved = px[i];
      px[i] = saved + h;
      double up = sum(mul(f(inputs), weights)).item();
      px[i] = saved - h;
      double down = sum(mul(f(inputs), weights)).item();
      px[i] = saved;
      numeric.push_back((up - down) / (2 * h));
    }
    EXPECT_TRUE(all_close(analytic, numeric, rtol, atol)) << "gradient of input " << which;
  }
}

}  // namespace visplay::test
