// Sim-backend tests of the fused log-prob kernels against float64: forward (log-probs,
// entropy, lse) at awkward vocabularies including Qwen2's 151,936, backward (dhidden,
// dweight) against central differences of the float64 forward.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/simt/simt.h"
#include "tests/kernels/reference.h"
#include "visplay/kernels/logprob.h"

namespace {

namespace sim = visplay::kernels::sim;
using visplay::test::expect_close;
using visplay::test::poisoned;
using visplay::test::random_floats;

class LogprobSim : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override { simt::set_seed(GetParam()); }
};

struct Ref {
  std::vector<double> logprob, entropy, lse;
};

Ref logprob64(const std::vector<double>& h, const std::vector<double>& w,
              const std::vector<int>& tgt, int T, int D, int V) {
  Ref r{std::vector<double>(T), std::vector<double>(T), std::vector<double>(T)};
  std::vector<double> z(V);
  for (int t = 0; t < T; ++t) {
    double m = -INFINITY;
    for (int v = 0; v < V; ++v) {
      double acc = 0.0;
      for (int d = 0; d < D; ++d) acc += h[t * D + d] * w[static_cast<size_t>(v) * D + d];
      z[v] = acc;
      m = std::max(m, acc);
    }
    double s = 0.0;
    for (int v = 0; v < V; ++v) s += std::exp(z[v] - m);
    double lse = m + std::log(s), ent = 0.0;
    for (int v = 0; v < V; ++v) {
      double p = std::exp(z[v] - lse);
      ent -= p * (z[v] - lse);
    }
    r.lse[t] = lse;
    r.entropy[t] = ent;
    r.logprob[t] = tgt[t] < 0 ? 0.0 : z[tgt[t]] - lse;
  }
  return r;
}

TEST_P(LogprobSim, ForwardMatchesReference) {
  struct S {
    int T, D, V;
  };
  for (S s : {S{5, 12, 300}, S{9, 7, 128}, S{1, 33, 1000}, S{21, 5, 200}}) {
    auto h = random_floats(s.T * s.D, 1 + s.V, -1.0f, 1.0f);
    auto w = random_floats(static_cast<size_t>(s.V) * s.D, 2 + s.V, -1.0f, 1.0f);
    auto tgt = visplay::test::random_ints(s.T, 3 + s.V, 0, s.V - 1);
    if (s.T > 2) tgt[2] = -1;  // padding
    auto lp = poisoned(s.T), ent = poisoned(s.T), lse = poisoned(s.T);
    sim::logprob_forward(h.data(), w.data(), tgt.data(), s.T, s.D, s.V, lp.data(), ent.data(),
                         lse.data(), nullptr);
    auto want =
        logprob64(visplay::test::to_double(h), visplay::test::to_double(w), tgt, s.T, s.D, s.V);
    std::string what =
        "T=" + std::to_string(s.T) + " D=" + std::to_string(s.D) + " V=" + std::to_string(s.V);
    expect_close(lp, want.logprob, 1e-5, 1e-5, what + " logprob");
    expect_close(ent, want.entropy, 1e-5, 1e-5, what + " entropy");
    expect_close(lse, want.lse, 1e-5, 1e-5, what + " lse");
  }
}

// Qwen2's vocabulary (151,936 = 1187 chunks of 128 exactly; plus a vocab one larger so
// the last chunk is partial), peaked logits, and a token whose target dominates.
TEST_P(LogprobSim, FullQwenVocabularyLogprobsAreNonPositive) {
  for (int V : {151936, 151937}) {
    int T = 3, D = 4;
    auto h = random_floats(T * D, 7, -2.0f, 2.0f);
    auto w = random_floats(static_cast<size_t>(V) * D, 8, -3.0f, 3.0f);
    std::vector<int> tgt = {17, V - 1, 0};
    for (int d = 0; d < D; ++d)
      w[static_cast<size_t>(tgt[2]) * D + d] = 40.0f * h[2 * D + d];  // p ~ 1
    auto lp = poisoned(T), ent = poisoned(T), lse = poisoned(T);
    sim::logprob_forward(h.data(), w.data(), tgt.data(), T, D, V, lp.data(), ent.data(), lse.data(),
                         nullptr);
    auto want = logprob64(visplay::test::to_double(h), visplay::test::to_double(w), tgt, T, D, V);
    expect_close(lp, want.logprob, 1e-5, 1e-5, "logprob V=" + std::to_string(V));
    expect_close(ent, want.entropy, 1e-4, 1e-5, "entropy V=" + std::to_string(V));
    for (float v : lp) EXPECT_LE(v, 0.0f);
    EXPECT_GT(lp[2], -1e-3f);
  }
}

TEST_P(LogprobSim, Bf16TensorCoreForwardMatchesReference) {
  struct S {
    int T, D, V;
  };
  for (S s : {S{5, 32, 300}, S{70, 80, 130}, S{3, 16, 64}}) {
    auto h = visplay::test::to_bf16(random_floats(s.T * s.D, 21 + s.V, -1.0f, 1.0f));
    auto w = visplay::test::to_bf16(random_floats(size_t(s.V) * s.D, 22 + s.V, -1.0f, 1.0f));
    auto tgt = visplay::test::random_ints(s.T, 23 + s.V, 0, s.V - 1);
    tgt[s.T - 1] = s.V - 1;  // the last vocabulary entry, in the partial tile
    if (s.T > 2) tgt[1] = -1;
    auto lp = poisoned(s.T), ent = poisoned(s.T), lse = poisoned(s.T);
    sim::logprob_forward_bf16(h.data(), w.data(), tgt.data(), s.T, s.D, s.V, lp.data(), ent.data(),
                              lse.data(), nullptr);
    auto want =
        logprob64(visplay::test::to_double(visplay::test::from_bf16(h)),
                  visplay::test::to_double(visplay::test::from_bf16(w)), tgt, s.T, s.D, s.V);
    std::string what =
        "bf16 T=" + std::to_string(s.T) + " D=" + std::to_string(s.D) + " V=" + std::to_string(s.V);
    expect_close(lp, want.logprob, 1e-5, 1e-5, what + " logprob");
    expect_close(ent, want.entropy, 1e-5, 1e-5, what + " entropy");
    expect_close(lse, want.lse, 1e-5, 1e-5, what + " lse");
    for (float v : lp) EXPECT_LE(v, 0.0f);
  }
  EXPECT_THROW(sim::logprob_forward_bf16(nullptr, nullptr, nullptr, 1, 24, 10, nullptr, nullptr,
                                         nullptr, nullptr),
               std::invalid_argument);
}

TEST_P(LogprobSim, BackwardMatchesFiniteDifferences) {
  struct S {
    int T, D, V;
  };
  for (S s : {S{5, 6, 150}, S{2, 3, 129}, S{19, 3, 130}}) {
    auto h = random_floats(s.T * s.D, 11 + s.V),
         w = random_floats(static_cast<size_t>(s.V) * s.D, 12 + s.V);
    auto tgt = visplay::test::random_ints(s.T, 13 + s.V, 0, s.V - 1);
    if (s.T > 3) tgt[3] = -1;
    auto g_lp = random_floats(s.T, 14), g_ent = random_floats(s.T, 15);
    for (bool with_entropy : {false, true}) {
      auto lp = poisoned(s.T), ent = poisoned(s.T), lse = poisoned(s.T);
      auto dh = poisoned(s.T * s.D), dw = poisoned(static_cast<size_t>(s.V) * s.D);
      sim::logprob_forward(h.data(), w.data(), tgt.data(), s.T, s.D, s.V, lp.data(), ent.data(),
                           lse.data(), nullptr);
      sim::logprob_backward(h.data(), w.data(), tgt.data(), s.T, s.D, s.V, lse.data(), ent.data(),
                            g_lp.data(), with_entropy ? g_ent.data() : nullptr, dh.data(),
                            dw.data(), nullptr);
      auto loss = [&](const std::vector<double>& hv, const std::vector<double>& wv) {
        Ref r = logprob64(hv, wv, tgt, s.T, s.D, s.V);
        double l = 0.0;
        for (int t = 0; t < s.T; ++t)
          l += g_lp[t] * r.logprob[t] + (with_entropy ? g_ent[t] * r.entropy[t] : 0.0);
        return l;
      };
      auto hd = visplay::test::to_double(h), wd = visplay::test::to_double(w);
      std::string what = "V=" + std::to_string(s.V) + (with_entropy ? " with entropy" : "");
      expect_close(dh, visplay::test::numeric_grad([&](const auto& v) { return loss(v, wd); }, hd),
                   1e-4, 1e-5, what + " dhidden");
      expect_close(dw, visplay::test::numeric_grad([&](const auto& v) { return loss(hd, v); }, wd),
                   1e-4, 1e-5, what + " dweight");
    }
  }
}

TEST(LogprobSimErrors, BadShapeThrows) {
  EXPECT_THROW(
      sim::logprob_forward(nullptr, nullptr, nullptr, 1, 0, 10, nullptr, nullptr, nullptr, nullptr),
      std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Seeds, LogprobSim, ::testing::ValuesIn(visplay::test::sim_seeds()));

}  // namespace
