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
