#include <gtest/gtest.h>

#include <cmath>

#include "runtime/optim.h"
#include "tests/runtime/test_util.h"

using namespace visplay;

TEST(AdamW, TwoStepsMatchHandComputation) {
  Tensor p = Tensor::from_vector<double>({1.0, -2.0}, {2});
  p.set_requires_grad();
  AdamWOptions o;
  o.lr = 0.1;
  o.beta1 = 0.9;
  o.beta2 = 0.99;
  o.eps = 1e-8;
  o.weight_decay = 0.5;
  AdamW opt({p}, o);
  double pv[2] = {1.0, -2.0}, m[2] = {0, 0}, v[2] = {0, 0};
  double grads[2][2] = {{0.5, -1.5}, {0.25, 3.0}};
  for (int t = 1; t <= 2; ++t) {
    p.set_grad(Tensor::from_vector<double>({grads[t - 1][0], grads[t - 1][1]}, {2}));
    opt.step();
    for (int i = 0; i < 2; ++i) {
      double g = grads[t - 1][i];
      m[i] = 0.9 * m[i] + 0.1 * g;
      v[i] = 0.99 * v[i] + 0.01 * g * g;
      double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.99, t));
      pv[i] -= 0.1 * (mhat / (std::sqrt(vhat) + 1e-8) + 0.5 * pv[i]);
    }
    std::vector<double> got = p.to_vector<double>();
    EXPECT_NEAR(got[0], pv[0], 1e-14);
    EXPECT_NEAR(got[1], pv[1], 1e-14);
  }
  EXPECT_EQ(opt.steps(), 2);
}

TEST(AdamW, Bf16ParametersUpdateThroughF32) {
  Tensor p = Tensor::from_vector<float>({1.0f, 2.0f}, {2}, DType::bf16);
  p.set_requires_grad();
  AdamW opt({p}, AdamWOptions{0.5, 0.9, 0.999, 1e-8, 0.0});
  p.set_grad(Tensor::from_vector<float>({1.0f, -1.0f}, {2}, DType::bf16));
  opt.step();
  // First step moves each parameter by -lr * sign(g).
  std::vector<float> got = p.to_vector<float>();
  EXPECT_FLOAT_EQ(got[0], 0.5f);
  EXPECT_FLOAT_EQ(got[1], 2.5f);
}

// Raw bits of a bf16 tensor.
static std::vector<uint16_t> bf16_bits(const Tensor& t) {
  const bf16* d = t.contiguous().data<bf16>();
  std::vector<uint16_t> out(static_cast<size_t>(t.numel()));
  for (size_t i = 0; i < out.size(); ++i) out[i] = d[i].bits;
  return out;
}

// Mixed precision: the f32 master follows a float64 AdamW on the master (fed the same bf16
// gradients) to f32 accuracy, the bf16 parameter is exactly the master rounded to nearest
// even after every step, and updates far below a bf16 ulp still move the weights, while the
// plain bf16 path (widen, step, round back) loses them.
TEST(AdamW, Bf16MasterWeightsFollowFloat64Reference) {
  const int64_t n = 777;
  const int steps = 60;
  // Parameters in [1, 2): one bf16 ulp is 2^-7, ~40x the per-step update of at most ~lr.
  Tensor init = test::random_tensor({n}, 5, DType::f32, 1.0, 2.0).to(DType::bf16);
  Tensor p = init.clone().detach().set_requires_grad();
  Tensor plain = init.clone().detach().set_requires_grad();
  AdamWOptions o{2e-4, 0.9, 0.99, 1e-8, 0.1};
  AdamWOptions om = o;
  om.master_weights = true;
  AdamW opt({p}, om), opt_plain({plain}, o);
  ASSERT_TRUE(opt.master()[0].defined());
  ASSERT_FALSE(opt_plain.master()[0].defined());
  EXPECT_EQ(opt.master()[0].dtype(), DType::f32);

  std::vector<double> ref = init.to_vector<double>(), m(n, 0.0), v(n, 0.0);
  for (int t = 1; t <= steps; ++t) {
    // Mostly positive gradients: the weights drift steadily, by ~lr per step. f32, the dtype
    // the autograd accumulates a bf16 parameter's gradient in.
    Tensor g = test::random_tensor({n}, 100 + t, DType::f32, -0.2, 1.0);
    p.set_grad(g);
    plain.set_grad(g);
    opt.step();
    opt_plain.step();
    std::vector<double> gv = g.to_vector<double>();
    for (int64_t i = 0; i < n; ++i) {
      m[i] = 0.9 * m[i] + 0.1 * gv[i];
      v[i] = 0.99 * v[i] + 0.01 * gv[i] * gv[i];
      double mhat = m[i] / (1 - std::pow(0.9, t)), vhat = v[i] / (1 - std::pow(0.99, t));
      ref[i] -= 2e-4 * (mhat / (std::sqrt(vhat) + 1e-8) + 0.1 * ref[i]);
    }
    std::vector<float> master = opt.master()[0].to_vector<float>();
    std::vector<uint16_t> bits = bf16_bits(p);
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_NEAR(master[i], ref[i], 1e-5) << "step " << t << " element " << i;
      ASSERT_EQ(bits[i], bf16::from_float(master[i])) << "step " << t << " element " << i;
    }
  }
  // The reference moved the weights by up to steps * lr = 1.2e-2, about one bf16 ulp (2^-7):
  // the master path moved most of them, the plain path (each update < half an ulp) none.
  std::vector<uint16_t> start = bf16_bits(init), with_master = bf16_bits(p),
                        without = bf16_bits(plain);
  int64_t moved = 0;
  for (int64_t i = 0; i < n; ++i) moved += with_master[i] != start[i];
  EXPECT_GT(moved, n / 4);
  EXPECT_EQ(without, start);
}

TEST(AdamW, MasterWeightsOnlyForBf16) {
  Tensor a = test::random_tensor({4}, 1, DType::f32).detach().set_requires_grad();
  Tensor b = test::random_tensor({3}, 2, DType::f64).detach().set_requires_grad();
  Tensor c = test::random_tensor({5}, 3, DType::f32).to(DType::bf16).detach().set_requires_grad();
  AdamWOptions o;
  o.master_weights = true;
  AdamW opt({a, b, c}, o);
  EXPECT_FALSE(opt.master()[0].defined());
  EXPECT_FALSE(opt.master()[1].defined());
  ASSERT_TRUE(opt.master()[2].defined());
  EXPECT_EQ(opt.master()[2].to_vector<double>(), c.to_vector<double>());
  // The master is a copy, not a view of the parameter.
  EXPECT_NE(opt.master()[2].storage().get(), c.storage().get());
}

TEST(ClipGradNorm, ScalesToMaxNorm) {
  Tensor a = Tensor::from_vector<double>({0, 0}, {2}), b = Tensor::from_vector<double>({0}, {1});
  a.set_requires_grad();
  b.set_requires_grad();
  a.set_grad(Tensor::from_vector<double>({3, 0}, {2}));
  b.set_grad(Tensor::from_vector<double>({4}, {1}));
  double norm = clip_grad_norm({a, b}, 1.0);
  EXPECT_DOUBLE_EQ(norm, 5.0);
  std::vector<double> ga = a.grad().to_vector<double>(), gb = b.grad().to_vector<double>();
  EXPECT_NEAR(std::sqrt(ga[0] * ga[0] + gb[0] * gb[0]), 1.0, 1e-6);
  EXPECT_NEAR(ga[0] / gb[0], 0.75, 1e-12);
  // Below the limit nothing changes.
  EXPECT_NEAR(clip_grad_norm({a, b}, 10.0), 1.0, 1e-6);
}

TEST(LrSchedule, ConstantWarmupCosine) {
  EXPECT_DOUBLE_EQ(lr_at(LrSchedule::constant, 0.1, 50, 100), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(LrSchedule::linear_warmup, 0.1, 0, 100, 10), 0.01);
  EXPECT_DOUBLE_EQ(lr_at(LrSchedule::linear_warmup, 0.1, 9, 100, 10), 0.1);
  EXPECT_DOUBLE_EQ(lr_at(LrSchedule::linear_warmup, 0.1, 50, 100, 10), 0.1);
  EXPECT_NEAR(lr_at(LrSchedule::cosine, 0.1, 10, 111, 10, 0.0), 0.1, 1e-15);
  EXPECT_NEAR(lr_at(LrSchedule::cosine, 0.1, 60, 111, 10, 0.0), 0.05, 1e-15);
  EXPECT_NEAR(lr_at(LrSchedule::cosine, 0.1, 110, 111, 10, 0.01), 0.01, 1e-15);
  EXPECT_THROW(lr_schedule_from_name("triangle"), std::invalid_argument);
}
