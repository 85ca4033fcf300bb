// Sim-backend tests of flash attention (mma.sync bf16 tensor cores) against float64
// attention on the same bf16-rounded inputs: forward output and lse, backward dq, dk,
// dv. Shapes cover head dims 64, 80 and 128, GQA ratio 4, causal and bidirectional, key
// padding, lengths that are not multiples of the 64-row tiles, and q_len != kv_len.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/simt/simt.h"
#include "tests/kernels/reference.h"
#include "visplay/kernels/attention.h"

namespace {

namespace sim = visplay::kernels::sim;
using visplay::test::expect_close;
using visplay::test::expect_relative_l2;
using visplay::test::poisoned;
using visplay::test::random_floats;

class AttentionSim : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override { simt::set_seed(GetParam()); }
};

struct Ref {
  std::vector<double> out, lse, dq, dk, dv;
};

// Plain float64 attention, materialising the whole probability matrix per (b, h).
Ref attention64(const std::vector<float>& q, const std::vector<float>& k,
                const std::vector<float>& v, const std::vector<float>& dout,
                const std::vector<int>& key_len, const sim::AttentionShape& s) {
  int B = s.batch, Sq = s.q_len, Sk = s.kv_len, H = s.q_heads, Hk = s.kv_heads, D = s.head_dim;
  Ref r;
  r.out.assign(static_cast<size_t>(B) * Sq * H * D, 0.0);
  r.lse.assign(static_cast<size_t>(B) * H * Sq, -INFINITY);
  r.dq.assign(r.out.size(), 0.0);
  r.dk.assign(static_cast<size_t>(B) * Sk * Hk * D, 0.0);
  r.dv.assign(r.dk.size(), 0.0);
  auto qi = [&](int b, int i, int h, int d) { return ((size_t(b) * Sq + i) * H + h) * D + d; };
  auto ki = [&](int b, int j, int h, int d) { return ((size_t(b) * Sk + j) * Hk + h) * D + d; };
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      int hk = h / (H / Hk);
      for (int i = 0; i < Sq; ++i) {
        std::vector<double> p(Sk, 0.0);
        double m = -INFINITY;
        for (int j = 0; j < Sk; ++j) {
          bool visible = j < key_len[b] && (!s.causal || j <= i + (Sk - Sq));
          if (!visible) {
            p[j] = -INFINITY;
            continue;
          }
          double acc = 0.0;
          for (int d = 0; d < D; ++d) acc += double(q[qi(b, i, h, d)]) * k[ki(b, j, hk, d)];
          p[j] = acc * s.scale;
          m = std::max(m, p[j]);
        }
        if (m == -INFINITY) continue;  // no visible key: out 0, lse -inf, no gradient
        double sum = 0.0;
        for (int j = 0; j < Sk; ++j) sum += p[j] == -INFINITY ? 0.0 : std::exp(p[j] - m);
        r.lse[(size_t(b) * H + h) * Sq + i] = m + std::log(sum);
        for (int j = 0; j < Sk; ++j) p[j] = p[j] == -INFINITY ? 0.0 : std::exp(p[j] - m) / sum;
        for (int d = 0; d < D; ++d) {
          double acc = 0.0;
          for (int j = 0; j < Sk; ++j) acc += p[j] * v[ki(b, j, hk, d)];
          r.out[qi(b, i, h, d)] = acc;
        }
        // Backward of this row: dP_j = dout . v_j, dS_j = P_j (dP_j - sum_l P_l dP_l).
        std::vector<double> dp(Sk, 0.0);
        double dot = 0.0;
        for (int j = 0; j < Sk; ++j) {
          if (p[j] == 0.0) continue;
          for (int d = 0; d < D; ++d) dp[j] += double(dout[qi(b, i, h, d)]) * v[ki(b, j, hk, d)];
          dot += p[j] * dp[j];
        }
        for (int j = 0; j < Sk; ++j) {
          if (p[j] == 0.0) continue;
          double ds = p[j] * (dp[j] - dot) * s.scale;
          for (int d = 0; d < D; ++d) {
            r.dq[qi(b, i, h, d)] += ds * k[ki(b, j, hk, d)];
            r.dk[ki(b, j, hk, d)] += ds * q[qi(b, i, h, d)];
            r.dv[ki(b, j, hk, d)] += p[j] * dout[qi(b, i, h, d)];
          }
        }
      }
    }
  return r;
}

struct Case {
  int batch, q_len, kv_len, q_heads, kv_heads, head_dim;
  bool causal, padded;
  std::vector<int> key_lengths = {};  // per batch row (overrides `padded`): window segments
};

void run_case(const Case& c) {
  sim::AttentionShape s;
  s.batch = c.batch;
  s.q_len = c.q_len;
  s.kv_len = c.kv_len;
  s.q_heads = c.q_heads;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.causal = c.causal;
  s.scale = 1.0f / std::sqrt(float(c.head_dim));
  size_t nq = size_t(c.batch) * c.q_len * c.q_heads * c.head_dim;
  size_t nk = size_t(c.batch) * c.kv_len * c.kv_heads * c.head_dim;
  uint64_t seed = c.q_len * 131 + c.kv_len * 7 + c.head_dim;
  // Scores of a few units, so the softmax is neither flat nor one-hot.
  auto q =
      visplay::test::from_bf16(visplay::test::to_bf16(random_floats(nq, seed + 1, -2.0f, 2.0f)));
  auto k =
      visplay::test::from_bf16(visplay::test::to_bf16(random_floats(nk, seed + 2, -2.0f, 2.0f)));
  auto v = visplay::test::from_bf16(visplay::test::to_bf16(random_floats(nk, seed + 3)));
  auto dout = random_floats(nq, seed + 4);
  std::vector<int> key_len(c.batch, c.kv_len);
  if (c.padded) key_len[c.batch - 1] = c.kv_len * 2 / 3;
  if (!c.key_lengths.empty()) key_len = c.key_lengths;
  auto qb = visplay::test::to_bf16(q), kb = visplay::test::to_bf16(k),
       vb = visplay::test::to_bf16(v);

  auto out = poisoned(nq), lse = poisoned(size_t(c.batch) * c.q_heads * c.q_len);
  auto delta = poisoned(lse.size()), dq = poisoned(nq), dk = poisoned(nk), dv = poisoned(nk);
  const int* lengths = c.padded || !c.key_lengths.empty() ? key_len.data() : nullptr;
  sim::flash_attention_forward(qb.data(), kb.data(), vb.data(), lengths, s, out.data(), lse.data(),
                               nullptr);
  sim::flash_attention_backward(qb.data(), kb.data(), vb.data(), lengths, s, out.data(),
                                dout.data(), lse.data(), delta.data(), dq.data(), dk.data(),
                                dv.data(), nullptr);
  Ref want = attention64(q, k, v, dout, key_len, s);
  std::string what = "B" + std::to_string(c.batch) + " Sq" + std::to_string(c.q_len) + " Sk" +
                     std::to_string(c.kv_len) + " H" + std::to_string(c.q_heads) + "/" +
                     std::to_string(c.kv_heads) + " D" + std::to_string(c.head_dim) +
                     (c.causal ? " causal" : "") + (c.padded ? " padded" : "") +
                     (c.key_lengths.empty() ? "" : " segments");
  // P, dS and dout are rounded to bf16 before their products: bf16 tolerances per
  // element, plus a relative L2 bound (measured ~1e-3 for out, ~3e-3 for gradients) that a
  // 1 % systematic error would exceed.
  expect_close(out, want.out, 1e-2, 1e-2, what + " out");
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(want.lse[i])) {
      EXPECT_TRUE(std::isinf(lse[i]) && lse[i] < 0) << what << " lse " << i;
      want.lse[i] = 0.0;
      lse[i] = 0.0f;
    }
  }
  expect_close(lse, want.lse, 1e-4, 1e-4, what + " lse");
  expect_close(dq, want.dq, 2e-2, 2e-2, what + " dq");
  expect_close(dk, want.dk, 2e-2, 2e-2, what + " dk");
  expect_close(dv, want.dv, 2e-2, 2e-2, what + " dv");
  expect_relative_l2(out, want.out, 3e-3, what + " out");
  expect_relative_l2(dq, want.dq, 6e-3, what + " dq");
  expect_relative_l2(dk, want.dk, 6e-3, what + " dk");
  expect_relative_l2(dv, want.dv, 6e-3, what + " dv");
}

TEST_P(AttentionSim, HeadDim64GqaCausalPadded) { run_case({2, 70, 70, 4, 1, 64, true, true}); }
TEST_P(AttentionSim, HeadDim128Bidirectional) { run_case({1, 33, 33, 2, 2, 128, false, false}); }
TEST_P(AttentionSim, HeadDim64BidirectionalPaddedGqa2) {
  run_case({2, 20, 45, 2, 1, 64, false, true});
}
TEST_P(AttentionSim, DecodeStyleCausalShortQuery) { run_case({1, 5, 70, 2, 2, 64, true, false}); }
TEST_P(AttentionSim, CausalLongerQueryThanKeysHasEmptyRows) {
  run_case({1, 9, 4, 1, 1, 64, true, false});
}

// Head dim 80: the Qwen2.5-VL vision tower (1280 wide, 16 heads).
TEST_P(AttentionSim, HeadDim80Bidirectional) { run_case({1, 70, 70, 2, 2, 80, false, false}); }
TEST_P(AttentionSim, HeadDim80GqaCausalPadded) { run_case({2, 37, 37, 4, 2, 80, true, true}); }
// Window attention as model/qwen25vl.cpp runs it (segment_attention): the windows are
// a batch padded to the longest, each row's real keys a prefix of its own length; the
// padding query rows still get finite outputs (discarded by the model).
TEST_P(AttentionSim, HeadDim80WindowSegments) {
  run_case({4, 64, 64, 2, 2, 80, false, false, {64, 16, 40, 1}});
}

TEST(AttentionSimErrors, UnsupportedHeadDimThrows) {
  sim::AttentionShape s;
  s.head_dim = 96;
  EXPECT_THROW(sim::flash_attention_forward(nullptr, nullptr, nullptr, nullptr, s, nullptr, nullptr,
                                            nullptr),
               std::invalid_argument);
  s.head_dim = 64;
  s.q_heads = 3;
  s.kv_heads = 2;
  EXPECT_THROW(sim::flash_attention_forward(nullptr, nullptr, nullptr, nullptr, s, nullptr, nullptr,
                                            nullptr),
               std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Seeds, AttentionSim, ::testing::ValuesIn(visplay::test::sim_seeds()));

}  // namespace
