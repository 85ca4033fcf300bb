// Sim-backend tests of the RL kernels (group advantage, GRPO loss) against float64
// references written here, under every emulator seed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "kernels/simt/simt.h"
#include "tests/kernels/reference.h"
#include "visplay/kernels/advantage.h"
#include "visplay/kernels/grpo.h"

namespace {

namespace sim = visplay::kernels::sim;
using visplay::test::expect_close;
using visplay::test::poisoned;
using visplay::test::random_floats;

class RlKernelsSim : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override { simt::set_seed(GetParam()); }
};

std::vector<double> advantage64(const std::vector<float>& r, int groups, int g, bool unbiased,
                                bool scale, double eps) {
  std::vector<double> out(r.size());
  for (int k = 0; k < groups; ++k) {
    double mean = 0.0, ss = 0.0;
    for (int i = 0; i < g; ++i) mean += r[k * g + i];
    mean /= g;
    for (int i = 0; i < g; ++i) ss += (r[k * g + i] - mean) * (r[k * g + i] - mean);
    int dof = unbiased ? g - 1 : g;
    double sd = dof > 0 ? std::sqrt(ss / dof) : 0.0;
    for (int i = 0; i < g; ++i) {
      double c = g > 1 ? r[k * g + i] - mean : 0.0;
      out[k * g + i] = scale ? c / (sd + eps) : c;
    }
  }
  return out;
}

TEST_P(RlKernelsSim, GroupAdvantageAllOptions) {
  struct Shape {
    int groups, size;
  };
  for (Shape s : {Shape{3, 8}, Shape{5, 1}, Shape{2, 45}, Shape{9, 5}}) {
    auto r = random_floats(s.groups * s.size, 100 + s.size, 0.0f, 2.0f);
    for (bool unbiased : {true, false})
      for (bool scale : {true, false}) {
        auto a = poisoned(r.size());
        sim::group_advantage(r.data(), s.groups, s.size, unbiased, scale, 1e-6f, a.data(), nullptr);
        std::string what = std::to_string(s.groups) + "x" + std::to_string(s.size) +
                           (unbiased ? " unbiased" : " biased") + (scale ? " scaled" : "");
        expect_close(a, advantage64(r, s.groups, s.size, unbiased, scale, 1e-6), 1e-5, 1e-5, what);
        if (s.size == 1) {
          for (float v : a) EXPECT_EQ(v, 0.0f) << "a group of one has no advantage";
        }
      }
  }
}

TEST_P(RlKernelsSim, GroupAdvantageEqualRewardsGiveZero) {
  std::vector<float> r(16, 0.75f);
  auto a = poisoned(16);
  sim::group_advantage(r.data(), 2, 8, true, true, 1e-6f, a.data(), nullptr);
  for (float v : a) EXPECT_EQ(v, 0.0f);
}

TEST_P(RlKernelsSim, BroadcastAdvantage) {
  int responses = 7, tokens = 13;
  auto a = random_floats(responses, 5);
  auto out = poisoned(responses * tokens);
  sim::broadcast_advantage(a.data(), responses, tokens, out.data(), nullptr);
  std::vector<double> want(out.size());
  for (int i = 0; i < responses * tokens; ++i) want[i] = a[i / tokens];
  expect_close(out, want, 0.0, 0.0, "token advantages");
}

TEST(RlKernelsSimErrors, BadShapesThrow) {
  float x = 1.0f;
  EXPECT_THROW(sim::group_advantage(&x, 1, 0, true, true, 1e-6f, &x, nullptr),
               std::invalid_argument);
  EXPECT_THROW(sim::broadcast_advantage(&x, 1, 0, &x, nullptr), std::invalid_argument);
}

// float64 GRPO loss: value by the formula, gradient by central differences of the
// (piecewise smooth) per-token loss, so the reference shares no code with the kernel.
struct Grpo64 {
  double loss, pg, kl, clipped;
  std::vector<double> grad;
};

double token_loss64(double lp, double old_lp, double ref, double A, const sim::GrpoLossOptions& o,
                    double* pg_out, double* kl_out, bool* clipped_out) {
  double ratio = std::exp(lp - old_lp);
  double clipped_ratio = std::clamp(ratio, 1.0 - o.eps_low, 1.0 + o.eps_high);
  double pg = std::max(-ratio * A, -clipped_ratio * A);
  bool clipped = -clipped_ratio * A > -ratio * A;
  if (o.dual_clip > 1.0f && A < 0.0 && pg > -o.dual_clip * A) {
    pg = -o.dual_clip * A;
    clipped = true;
  }
  double kl = std::exp(ref - lp) - (ref - lp) - 1.0;
  if (pg_out) *pg_out = pg;
  if (kl_out) *kl_out = kl;
  if (clipped_out) *clipped_out = clipped;
  return pg + o.kl_coef * kl;
}

Grpo64 grpo64(const std::vector<float>& lp, const std::vector<float>& old_lp,
              const std::vector<float>& ref, const std::vector<float>& adv,
              const std::vector<float>& mask, const sim::GrpoLossOptions& o) {
  Grpo64 r{0, 0, 0, 0, std::vector<double>(lp.size(), 0.0)};
  double count = 0.0;
  for (float m : mask) count += m;
  for (size_t i = 0; i < lp.size(); ++i) {
    if (mask[i] == 0.0f) continue;
    double pg, kl;
    bool clipped;
    r.loss += token_loss64(lp[i], old_lp[i], ref[i], adv[i], o, &pg, &kl, &clipped);
    r.pg += pg;
    r.kl += kl;
    r.clipped += clipped;
    double h = 1e-6;
    double up = token_loss64(lp[i] + h, old_lp[i], ref[i], adv[i], o, nullptr, nullptr, nullptr);
    double down = token_loss64(lp[i] - h, old_lp[i], ref[i], adv[i], o, nullptr, nullptr, nullptr);
    r.grad[i] = (up - down) / (2 * h) / count;
  }
  r.loss /= count;
  r.pg /= count;
  r.kl /= count;
  r.clipped /= count;
  return r;
}

TEST_P(RlKernelsSim, GrpoLossForwardBackward) {
  for (int n : {1, 37, 300, 1029}) {
    auto old_lp = random_floats(n, 10 + n, -3.0f, -0.1f);
    auto delta = random_floats(n, 20 + n, -0.6f, 0.6f);  // ratios both inside and outside the band
    auto ref = random_floats(n, 30 + n, -3.0f, -0.1f);
    auto adv = random_floats(n, 40 + n, -2.0f, 2.0f);
    auto mask_f = random_floats(n, 50 + n, 0.0f, 1.0f);
    std::vector<float> lp(n), mask(n);
    for (int i = 0; i < n; ++i) {
      lp[i] = old_lp[i] + delta[i];
      mask[i] = (mask_f[i] < 0.8f || i == 0) ? 1.0f : 0.0f;
    }
    // Keep tokens away from the kinks, where a finite difference is meaningless.
    for (int i = 0; i < n; ++i)
      for (double edge : {std::log(0.8), std::log(1.3)})
        if (std::abs(delta[i] - edge) < 1e-3) lp[i] += 3e-3f;
    for (float dual : {3.0f, 0.0f}) {
      sim::GrpoLossOptions o;
      o.dual_clip = dual;
      o.kl_coef = 0.05f;
      auto grad = poisoned(n);
      auto stats = poisoned(4);
      sim::grpo_loss(lp.data(), old_lp.data(), ref.data(), adv.data(), mask.data(), n, o,
                     grad.data(), stats.data(), nullptr);
      Grpo64 want = grpo64(lp, old_lp, ref, adv, mask, o);
      std::string what = "n=" + std::to_string(n) + " dual=" + std::to_string(dual);
      expect_close(stats, {want.loss, want.pg, want.kl, want.clipped}, 1e-5, 1e-6, what + " stats");
      expect_close(grad, want.grad, 1e-4, 1e-7, what + " grad");
      for (int i = 0; i < n; ++i)
        if (mask[i] == 0.0f) {
          EXPECT_EQ(grad[i], 0.0f);
        }
    }
  }
}

TEST_P(RlKernelsSim, GrpoDualClipCapsNegativeAdvantageLoss) {
  // ratio e^2 with A = -1: unclipped loss 7.39, dual clip caps it at 3 and stops the gradient.
  std::vector<float> lp = {0.0f}, old_lp = {-2.0f}, ref = {0.0f}, adv = {-1.0f}, mask = {1.0f};
  sim::GrpoLossOptions o;
  o.kl_coef = 0.0f;
  auto grad = poisoned(1), stats = poisoned(4);
  sim::grpo_loss(lp.data(), old_lp.data(), ref.data(), adv.data(), mask.data(), 1, o, grad.data(),
                 stats.data(), nullptr);
  EXPECT_FLOAT_EQ(stats[0], 3.0f);
  EXPECT_EQ(grad[0], 0.0f);
  EXPECT_EQ(stats[3], 1.0f);
}

TEST_P(RlKernelsSim, GrpoAllMaskedIsZero) {
  int n = 10;
  auto lp = random_floats(n, 1, -2.0f, -0.1f);
  std::vector<float> mask(n, 0.0f);
  auto grad = poisoned(n), stats = poisoned(4);
  sim::grpo_loss(lp.data(), lp.data(), lp.data(), lp.data(), mask.data(), n, {}, grad.data(),
                 stats.data(), nullptr);
  for (float v : grad) EXPECT_EQ(v, 0.0f);
  for (float v : stats) EXPECT_EQ(v, 0.0f);
}

INSTANTIATE_TEST_SUITE_P(Seeds, RlKernelsSim, ::testing::ValuesIn(visplay::test::sim_seeds()));

}  // namespace
