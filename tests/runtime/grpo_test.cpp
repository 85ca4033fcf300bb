#include <gtest/gtest.h>

#include <cmath>

#include "runtime/ops.h"
#include "tests/runtime/test_util.h"

using namespace visplay;
namespace kc = visplay::kernels::cpu;

TEST(GroupAdvantages, MatchesHandComputation) {
  Tensor r = Tensor::from_vector<float>({1, 0, 0, 1, 0.5f, 0.5f, 0.5f, 0.5f}, {2, 4});
  std::vector<float> a = group_advantages(r).to_vector<float>();
  // group 0: mean 0.5, unbiased std sqrt(1/3)
  double s = std::sqrt(1.0 / 3.0);
  EXPECT_NEAR(a[0], 0.5 / (s + 1e-6), 1e-5);
  EXPECT_NEAR(a[1], -0.5 / (s + 1e-6), 1e-5);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(a[i], 0.0f);  // constant group
  kc::AdvantageOptions dr;
  dr.scale_by_std = false;
  std::vector<float> b = group_advantages(r, dr).to_vector<float>();
  EXPECT_FLOAT_EQ(b[0], 0.5f);
  EXPECT_FLOAT_EQ(b[1], -0.5f);
  kc::AdvantageOptions biased;
  biased.unbiased_std = false;
  EXPECT_NEAR(group_advantages(r, biased).to_vector<float>()[0], 0.5 / (0.5 + 1e-6), 1e-5);
  Tensor single = Tensor::from_vector<float>({3, 7}, {2, 1});
  for (float x : group_advantages(single).to_vector<float>()) EXPECT_EQ(x, 0.0f);
}

// Per-token reference of the loss in double, written from the formulas.
static double ref_token_loss(double lp, double old, double ref, double A, const kc::GrpoLossOptions& o) {
  double ratio = std::exp(lp - old);
  double pg = std::max(-A * ratio, -A * std::clamp(ratio, 1 - o.clip_low, 1 + o.clip_high));
  if (A < 0 && o.dual_clip > 1) pg = std::min(pg, -A * o.dual_clip);
  double kl = std::exp(ref - lp) - (ref - lp) - 1;
  return pg + o.kl_coef * kl;
}

TEST(GrpoLoss, ValueAndGradientMatchReference) {
  const int N = 4, L = 6;
  Rng rng(11);
  std::vector<float> lp(N * L), old(N * L), ref(N * L), adv(N * L), mask(N * L);
  for (int i = 0; i < N * L; ++i) {
    lp[i] = static_cast<float>(rng.uniform(-3, -0.1));
    // Spread ratios across the clip boundaries and the dual-clip region.
    old[i] = lp[i] - static_cast<float>(rng.uniform(-1.6, 1.6));
    ref[i] = lp[i] - static_cast<float>(rng.uniform(-0.5, 0.5));
    adv[i] = static_cast<float>(i / L % 2 ? rng.uniform(-2, -0.1) : rng.uniform(0.1, 2));
    mask[i] = (i % L) < 2 + i / L ? 1.0f : 0.0f;
  }
  kc::GrpoLossOptions o;
  o.kl_coef = 0.05;
  Tensor logp = Tensor::from_vector(lp, {N, L});
  logp.set_requires_grad();
  kc::GrpoLossStats st;
  Tensor loss = grpo_loss(logp, Tensor::from_vector(old, {N, L}), Tensor::from_vector(ref, {N, L}),
                          Tensor::from_vector(adv, {N, L}), Tensor::from_vector(mask, {N, L}), o, &st);
  double total = 0, count = 0;
  for (int i = 0; i < N * L; ++i)
    if (mask[i]) total += ref_token_loss(lp[i], old[i], ref[i], adv[i], o), count += 1;
  EXPECT_NEAR(loss.item(), total / count, 1e-5);
  EXPECT_GT(st.clip_fraction, 0.0);
  EXPECT_GT(st.dual_clip_fraction, 0.0);
  loss.backward();
  std::vector<float> g = logp.grad().to_vector<float>();
  for (int i = 0; i < N * L; ++i) {
    double h = 1e-6;
    double num = mask[i] ? (ref_token_loss(lp[i] + h, old[i], ref[i], adv[i], o) -
                            ref_token_loss(lp[i] - h, old[i], ref[i], adv[i], o)) / (2 * h) / count
                         : 0.0;
    EXPECT_NEAR(g[i], num, 1e-4) << "token " << i;
  }
}

TEST(GrpoLoss, OnPolicyGradientIsMinusAdvantage) {
  // With logp == old and no KL, d loss / d logp = -A / tokens.
  Tensor lp = Tensor::from_vector<float>({-1, -2, -0.5f}, {1, 3});
  lp.set_requires_grad();
  kc::GrpoLossOptions o;
  o.kl_coef = 0;
  Tensor loss = grpo_loss(lp, lp.detach(), lp.detach(), Tensor::from_vector<float>({1, -2, 0.5f}, {1, 3}),
                          Tensor::ones({1, 3}), o);
  loss.backward();
  std::vector<float> g = lp.grad().to_vector<float>();
  EXPECT_NEAR(g[0], -1.0 / 3, 1e-6);
  EXPECT_NEAR(g[1], 2.0 / 3, 1e-6);
  EXPECT_NEAR(g[2], -0.5 / 3, 1e-6);
}
