// Every op: the forward against a naive float64 reference written here, and
// the backward against central finite differences in float64.
#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>

#include "runtime/ops.h"
#include "tests/runtime/test_util.h"

using namespace visplay;
using test::all_close;
using test::expect_gradients_match;
using test::random_tensor;
using V = std::vector<double>;

// ---------------------------------------------------------------------------
// elementwise + broadcasting

TEST(Ops, BroadcastAddSubMul) {
  Tensor a = random_tensor({2, 3, 4}, 1), b = random_tensor({4}, 2), c = random_tensor({3, 1}, 3);
  V av = a.to_vector<double>(), bv = b.to_vector<double>(), cv = c.to_vector<double>();
  V add_ref(24), sub_ref(24), mul_ref(24);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      for (int k = 0; k < 4; ++k) {
        int at = (i * 3 + j) * 4 + k;
        add_ref[at] = av[at] + bv[k];
        sub_ref[at] = av[at] - cv[j];
        mul_ref[at] = av[at] * cv[j];
      }
  EXPECT_TRUE(all_close(add(a, b), add_ref, 1e-15, 0));
  EXPECT_TRUE(all_close(sub(a, c), sub_ref, 1e-15, 0));
  EXPECT_TRUE(all_close(mul(a, c), mul_ref, 1e-15, 0));
  // Non-contiguous operand
  Tensor at = random_tensor({4, 3}, 4).transpose(0, 1);
  V atv = at.contiguous().to_vector<double>();
  V ref(12);
  for (int i = 0; i < 12; ++i) ref[i] = atv[i] * bv[i % 4];
  EXPECT_TRUE(all_close(mul(at, b), ref, 1e-15, 0));
  EXPECT_THROW(add(a, random_tensor({3}, 5)), std::invalid_argument);
}

TEST(Ops, ElementwiseGradients) {
  expect_gradients_match([](const std::vector<Tensor>& x) { return mul(add(x[0], x[1]), sub(x[0], x[2])); },
                         {random_tensor({2, 3, 4}, 10), random_tensor({4}, 11), random_tensor({3, 1}, 12)});
  expect_gradients_match([](const std::vector<Tensor>& x) { return exp(scale(x[0], 0.5)); },
                         {random_tensor({7}, 13)});
  expect_gradients_match([](const std::vector<Tensor>& x) { return log(add_scalar(x[0], 2.0)); },
                         {random_tensor({7}, 14)});
}

TEST(Ops, SumMean) {
  Tensor a = random_tensor({3, 4, 5}, 20);
  V av = a.to_vector<double>();
  double total = 0;
  for (double v : av) total += v;
  EXPECT_NEAR(sum(a).item(), total, 1e-12);
  EXPECT_NEAR(mean(a).item(), total / 60, 1e-14);
  V ref(3 * 5, 0.0);
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 4; ++j)
      for (int k = 0; k < 5; ++k) ref[i * 5 + k] += av[(i * 4 + j) * 5 + k];
  Tensor s1 = sum(a, 1);
  EXPECT_EQ(s1.shape(), (Shape{3, 5}));
  EXPECT_TRUE(all_close(s1, ref, 1e-14, 1e-15));
  EXPECT_EQ(mean(a, -1, true).shape(), (Shape{3, 4, 1}));
  expect_gradients_match([](const std::vector<Tensor>& x) { return sum(x[0], 1, false); },
                         {random_tensor({3, 4, 5}, 21)});
  expect_gradients_match([](const std::vector<Tensor>& x) { return mean(x[0], -1, true); },
                         {random_tensor({3, 4, 5}, 22)});
  expect_gradients_match([](const std::vector<Tensor>& x) { return mean(x[0]); }, {random_tensor({6}, 23)});
}

// ---------------------------------------------------------------------------
// matmul / linear

static V naive_matmul(const V& a, const V& b, int batch, int M, int K, int N, bool shared_b) {
  V c(batch * M * N, 0.0);
  for (int z = 0; z < batch; ++z)
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < N; ++j) {
        double acc = 0;
        for (int k = 0; k < K; ++k) acc += a[(z * M + i) * K + k] * b[(shared_b ? 0 : z * K * N) + k * N + j];
        c[(z * M + i) * N + j] = acc;
      }
  return c;
}

TEST(Ops, MatmulBatchedSharedAndTransposed) {
  Tensor a = random_tensor({2, 5, 7}, 30), b = random_tensor({2, 7, 3}, 31), w = random_tensor({7, 3}, 32);
  V ref = naive_matmul(a.to_vector<double>(), b.to_vector<double>(), 2, 5, 7, 3, false);
  EXPECT_TRUE(all_close(matmul(a, b), ref, 1e-13, 1e-14));
  V ref_shared = naive_matmul(a.to_vector<double>(), w.to_vector<double>(), 2, 5, 7, 3, true);
  EXPECT_TRUE(all_close(matmul(a, w), ref_shared, 1e-13, 1e-14));
  // Transposed views go through BLAS flags, not copies; the result is the same.
  Tensor bt = random_tensor({2, 3, 7}, 33);
  V btc = bt.transpose(1, 2).contiguous().to_vector<double>();
  V ref_t = naive_matmul(a.to_vector<double>(), btc, 2, 5, 7, 3, false);
  EXPECT_TRUE(all_close(matmul(a, bt.transpose(1, 2)), ref_t, 1e-13, 1e-14));
  // f32 against the f64 reference.
  EXPECT_TRUE(all_close(matmul(a.to(DType::f32), b.to(DType::f32)), ref, 1e-5, 1e-6));
  // bf16 storage, f32 accumulation.
  EXPECT_TRUE(all_close(matmul(a.to(DType::bf16), b.to(DType::bf16)), ref, 2e-2, 2e-2));
}

TEST(Ops, MatmulGradients) {
  expect_gradients_match([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                         {random_tensor({2, 3, 4}, 34), random_tensor({2, 4, 5}, 35)});
  expect_gradients_match([](const std::vector<Tensor>& x) { return matmul(x[0], x[1]); },
                         {random_tensor({2, 3, 4}, 36), random_tensor({4, 5}, 37)});
  expect_gradients_match([](const std::vector<Tensor>& x) { return matmul(x[0], x[1].transpose(0, 1)); },
                         {random_tensor({3, 4}, 38), random_tensor({5, 4}, 39)});
}

TEST(Ops, Linear) {
  Tensor x = random_tensor({2, 3, 6}, 40), w = random_tensor({4, 6}, 41), b = random_tensor({4}, 42);
  V xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
  V ref(2 * 3 * 4);
  for (int r = 0; r < 6; ++r)
    for (int o = 0; o < 4; ++o) {
      double acc = bv[o];
      for (int i = 0; i < 6; ++i) acc += xv[r * 6 + i] * wv[o * 6 + i];
      ref[r * 4 + o] = acc;
    }
  EXPECT_TRUE(all_close(linear(x, w, b), ref, 1e-13, 1e-14));
  expect_gradients_match([](const std::vector<Tensor>& t) { return linear(t[0], t[1], t[2]); },
                         {random_tensor({2, 3, 6}, 43), random_tensor({4, 6}, 44), random_tensor({4}, 45)});
  expect_gradients_match([](const std::vector<Tensor>& t) { return linear(t[0], t[1]); },
                         {random_tensor({5, 6}, 46), random_tensor({4, 6}, 47)});
  EXPECT_THROW(linear(x, random_tensor({4, 5}, 48)), std::invalid_argument);
}

// ---------------------------------------------------------------------------
// embedding, norms, rope

TEST(Ops, Embedding) {
  Tensor w = random_tensor({10, 4}, 50);
  Tensor ids = Tensor::from_vector<int32_t>({3, 0, 9, 3, 3, 1}, {2, 3});
  V wv = w.to_vector<double>(), ref;
  for (int id : {3, 0, 9, 3, 3, 1})
    for (int d = 0; d < 4; ++d) ref.push_back(wv[id * 4 + d]);
  Tensor out = embedding(w, ids);
  EXPECT_EQ(out.shape(), (Shape{2, 3, 4}));
  EXPECT_TRUE(all_close(out, ref, 0, 0));
  expect_gradients_match([ids](const std::vector<Tensor>& t) { return embedding(t[0], ids); },
                         {random_tensor({10, 4}, 51)});
  EXPECT_THROW(embedding(w, Tensor::from_vector<int64_t>({10}, {1})), std::invalid_argument);
}

TEST(Ops, RMSNormAndLayerNorm) {
  Tensor x = random_tensor({3, 5, 8}, 60), w = random_tensor({8}, 61), b = random_tensor({8}, 62);
  V xv = x.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>();
  V rms_ref(xv.size()), ln_ref(xv.size());
  for (int r = 0; r < 15; ++r) {
    double ss = 0, m = 0, var = 0;
    for (int j = 0; j < 8; ++j) ss += xv[r * 8 + j] * xv[r * 8 + j], m += xv[r * 8 + j];
    m /= 8;
    for (int j = 0; j < 8; ++j) var += (xv[r * 8 + j] - m) * (xv[r * 8 + j] - m);
    var /= 8;
    for (int j = 0; j < 8; ++j) {
      rms_ref[r * 8 + j] = xv[r * 8 + j] / std::sqrt(ss / 8 + 1e-6) * wv[j];
      ln_ref[r * 8 + j] = (xv[r * 8 + j] - m) / std::sqrt(var + 1e-5) * wv[j] + bv[j];
    }
  }
  EXPECT_TRUE(all_close(rmsnorm(x, w, 1e-6), rms_ref, 1e-12, 1e-14));
  EXPECT_TRUE(all_close(layernorm(x, w, b, 1e-5), ln_ref, 1e-12, 1e-14));
  EXPECT_TRUE(all_close(rmsnorm(x.to(DType::f32), w.to(DType::f32), 1e-6), rms_ref, 1e-5, 1e-6));
  expect_gradients_match([](const std::vector<Tensor>& t) { return rmsnorm(t[0], t[1], 1e-6); },
                         {random_tensor({70, 8}, 63), random_tensor({8}, 64)});  // > one row chunk
  expect_gradients_match([](const std::vector<Tensor>& t) { return layernorm(t[0], t[1], t[2], 1e-5); },
                         {random_tensor({70, 8}, 65), random_tensor({8}, 66), random_tensor({8}, 67)});
}

TEST(Ops, RopeRotateHalf) {
  int B = 2, S = 3, H = 2, D = 8;
  Tensor x = random_tensor({B, S, H, D}, 70);
  Tensor pos = Tensor::from_vector<int64_t>({0, 1, 2, 5, 6, 7}, {B, S});  // second row left-padded
  double base = 10000;
  V xv = x.to_vector<double>(), ref(xv.size());
  std::vector<int64_t> pv = pos.to_vector<int64_t>();
  for (int b = 0; b < B; ++b)
    for (int s = 0; s < S; ++s)
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < D / 2; ++i) {
          double a = pv[b * S + s] * std::pow(base, -2.0 * i / D);
          int o = ((b * S + s) * H + h) * D;
          ref[o + i] = xv[o + i] * std::cos(a) - xv[o + i + D / 2] * std::sin(a);
          ref[o + i + D / 2] = xv[o + i + D / 2] * std::cos(a) + xv[o + i] * std::sin(a);
        }
  // The angles are computed in f32 (as the reference models do): ~1e-6 relative.
  EXPECT_TRUE(all_close(rope(x, pos, base), ref, 1e-5, 1e-6));
  expect_gradients_match([pos](const std::vector<Tensor>& t) { return rope(t[0], pos, 10000); },
                         {random_tensor({B, S, H, D}, 71)});
  // Positions shared by the batch
  Tensor shared = Tensor::from_vector<int32_t>({4, 5, 6}, {S});
  EXPECT_EQ(rope(x, shared, base).shape(), x.shape());
}

// ---------------------------------------------------------------------------
// activations

TEST(Ops, Activations) {
  Tensor x = random_tensor({4, 9}, 80, DType::f64, -3, 3), u = random_tensor({4, 9}, 81);
  V xv = x.to_vector<double>(), uv = u.to_vector<double>();
  V gelu_ref, silu_ref, swiglu_ref, sm_ref(36), lsm_ref(36);
  for (size_t i = 0; i < xv.size(); ++i) {
    double v = xv[i];
    gelu_ref.push_back(0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))));
    silu_ref.push_back(v / (1 + std::exp(-v)));
    swiglu_ref.push_back(v / (1 + std::exp(-v)) * uv[i]);
  }
  for (int r = 0; r < 4; ++r) {
    double s = 0;
    for (int j = 0; j < 9; ++j) s += std::exp(xv[r * 9 + j]);
    for (int j = 0; j < 9; ++j) {
      sm_ref[r * 9 + j] = std::exp(xv[r * 9 + j]) / s;
      lsm_ref[r * 9 + j] = xv[r * 9 + j] - std::log(s);
    }
  }
  EXPECT_TRUE(all_close(gelu(x), gelu_ref, 1e-13, 1e-15));
  EXPECT_TRUE(all_close(silu(x), silu_ref, 1e-13, 1e-15));
  EXPECT_TRUE(all_close(swiglu(x, u), swiglu_ref, 1e-13, 1e-15));
  EXPECT_TRUE(all_close(softmax(x), sm_ref, 1e-13, 1e-15));
  EXPECT_TRUE(all_close(log_softmax(x), lsm_ref, 1e-13, 1e-15));
  auto one = [](Tensor (*f)(const Tensor&)) {
    return [f](const std::vector<Tensor>& t) { return f(t[0]); };
  };
  expect_gradients_match(one(gelu), {random_tensor({4, 9}, 82, DType::f64, -3, 3)});
  expect_gradients_match(one(silu), {random_tensor({4, 9}, 83, DType::f64, -3, 3)});
  expect_gradients_match(one(softmax), {random_tensor({4, 9}, 84, DType::f64, -3, 3)});
  expect_gradients_match(one(log_softmax), {random_tensor({4, 9}, 85, DType::f64, -3, 3)});
  expect_gradients_match([](const std::vector<Tensor>& t) { return swiglu(t[0], t[1]); },
                         {random_tensor({4, 9}, 86, DType::f64, -3, 3), random_tensor({4, 9}, 87)});
}

// ---------------------------------------------------------------------------
// attention

// Naive reference: the full score matrix per head, in double.
static V naive_attention(const V& q, const V& k, const V& v, int B, int Sq, int Sk, int H, int Hkv, int D,
                         bool causal, const std::vector<int32_t>* mask) {
  V out(B * Sq * H * D, 0.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      int hk = h / (H / Hkv);
      for (int i = 0; i < Sq; ++i) {
        std::vector<double> s(Sk, -INFINITY);
        double m = -INFINITY;
        for (int j = 0; j < Sk; ++j) {
          if (causal && j > i + (Sk - Sq)) continue;
          if (mask && (*mask)[b * Sk + j] == 0) continue;
          double acc = 0;
          for (int d = 0; d < D; ++d) acc += q[((b * Sq + i) * H + h) * D + d] * k[((b * Sk + j) * Hkv + hk) * D + d];
          s[j] = acc / std::sqrt(double(D));
          m = std::max(m, s[j]);
        }
        if (m == -INFINITY) continue;
        double z = 0;
        for (int j = 0; j < Sk; ++j) z += s[j] == -INFINITY ? 0 : std::exp(s[j] - m);
        for (int j = 0; j < Sk; ++j) {
          if (s[j] == -INFINITY) continue;
          double p = std::exp(s[j] - m) / z;
          for (int d = 0; d < D; ++d) out[((b * Sq + i) * H + h) * D + d] += p * v[((b * Sk + j) * Hkv + hk) * D + d];
        }
      }
    }
  return out;
}

struct AttnCase {
  int B, Sq, Sk, H, Hkv, D;
  bool causal, masked;
};

class AttentionTest : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionTest, ForwardMatchesNaive) {
  AttnCase c = GetParam();
  Tensor q = random_tensor({c.B, c.Sq, c.H, c.D}, 90), k = random_tensor({c.B, c.Sk, c.Hkv, c.D}, 91),
         v = random_tensor({c.B, c.Sk, c.Hkv, c.D}, 92);
  std::vector<int32_t> mask(c.B * c.Sk, 1);
  // Left padding: sequence b has its first 2*b keys masked.
  for (int b = 0; b < c.B; ++b)
    for (int j = 0; j < std::min(c.Sk, 2 * b); ++j) mask[b * c.Sk + j] = 0;
  AttentionOptions opt;
  opt.causal = c.causal;
  if (c.masked) opt.key_mask = Tensor::from_vector<int32_t>(mask, {c.B, c.Sk});
  V ref = naive_attention(q.to_vector<double>(), k.to_vector<double>(), v.to_vector<double>(), c.B, c.Sq,
                          c.Sk, c.H, c.Hkv, c.D, c.causal, c.masked ? &mask : nullptr);
  EXPECT_TRUE(all_close(attention(q, k, v, opt), ref, 1e-12, 1e-13));
  EXPECT_TRUE(all_close(attention(q.to(DType::f32), k.to(DType::f32), v.to(DType::f32), opt), ref, 1e-5, 1e-5));
}

TEST_P(AttentionTest, GradientsMatchFiniteDifferences) {
  AttnCase c = GetParam();
  // Large cases check a spread subset of elements (each check is two forwards).
  int64_t checks = c.Sq * c.Sk * c.H * c.D > 4000 ? 24 : -1;
  std::vector<int32_t> mask(c.B * c.Sk, 1);
  for (int b = 0; b < c.B; ++b)
    for (int j = 0; j < std::min(c.Sk, 2 * b); ++j) mask[b * c.Sk + j] = 0;
  AttentionOptions opt;
  opt.causal = c.causal;
  if (c.masked) opt.key_mask = Tensor::from_vector<int32_t>(mask, {c.B, c.Sk});
  expect_gradients_match(
      [opt](const std::vector<Tensor>& t) { return attention(t[0], t[1], t[2], opt); },
      {random_tensor({c.B, c.Sq, c.H, c.D}, 93), random_tensor({c.B, c.Sk, c.Hkv, c.D}, 94),
       random_tensor({c.B, c.Sk, c.Hkv, c.D}, 95)},
      1e-6, 1e-5, 1e-7, checks);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionTest,
    ::testing::Values(AttnCase{1, 5, 5, 2, 2, 4, true, false},     // causal, tiny
                      AttnCase{2, 6, 6, 4, 1, 4, false, true},     // bidirectional, GQA 4, padding
                      AttnCase{2, 3, 7, 2, 1, 4, true, true},      // KV-cache style Sq < Sk
                      AttnCase{1, 37, 37, 2, 2, 64, true, false},  // S not a multiple of the tile
                      AttnCase{2, 70, 70, 4, 1, 128, false, true}  // head dim 128, > one key tile
                      ),
    [](const ::testing::TestParamInfo<AttnCase>& info) {
      const AttnCase& c = info.param;
      return "B" + std::to_string(c.B) + "_Sq" + std::to_string(c.Sq) + "_Sk" + std::to_string(c.Sk) + "_H" +
             std::to_string(c.H) + "_Hkv" + std::to_string(c.Hkv) + "_D" + std::to_string(c.D) +
             (c.causal ? "_causal" : "_bidir") + (c.masked ? "_padded" : "");
    });

// ---------------------------------------------------------------------------
// cross-entropy, concat, gather

TEST(Ops, CrossEntropy) {
  Tensor logits = random_tensor({5, 7}, 100, DType::f64, -4, 4);
  Tensor targets = Tensor::from_vector<int64_t>({0, 6, -100, 3, 3}, {5});
  V lv = logits.to_vector<double>();
  double total = 0;
  int count = 0;
  std::vector<int64_t> tv = {0, 6, -100, 3, 3};
  for (int r = 0; r < 5; ++r) {
    if (tv[r] == -100) continue;
    double z = 0;
    for (int j = 0; j < 7; ++j) z += std::exp(lv[r * 7 + j]);
    total += std::log(z) - lv[r * 7 + tv[r]];
    ++count;
  }
  EXPECT_NEAR(cross_entropy(logits, targets).item(), total / count, 1e-12);
  expect_gradients_match([targets](const std::vector<Tensor>& t) { return cross_entropy(t[0], targets); },
                         {random_tensor({5, 7}, 101, DType::f64, -4, 4)});
  EXPECT_THROW(cross_entropy(logits, Tensor::from_vector<int64_t>({0, 7, 0, 0, 0}, {5})), std::invalid_argument);
}

TEST(Ops, ConcatAndGather) {
  Tensor a = random_tensor({2, 3}, 110), b = random_tensor({2, 2}, 111);
  Tensor c = concat({a, b}, 1);
  V av = a.to_vector<double>(), bv = b.to_vector<double>();
  V ref = {av[0], av[1], av[2], bv[0], bv[1], av[3], av[4], av[5], bv[2], bv[3]};
  EXPECT_TRUE(all_close(c, ref, 0, 0));
  EXPECT_THROW(concat({a, random_tensor({3, 2}, 112)}, 1), std::invalid_argument);
  expect_gradients_match([](const std::vector<Tensor>& t) { return concat({t[0], t[1]}, 0); },
                         {random_tensor({2, 3}, 113), random_tensor({1, 3}, 114)});

  Tensor x = random_tensor({3, 5}, 115);
  Tensor idx = Tensor::from_vector<int64_t>({4, 0, 1, 1, 2, 2}, {3, 2});
  V xv = x.to_vector<double>();
  V gref = {xv[4], xv[0], xv[5 + 1], xv[5 + 1], xv[10 + 2], xv[10 + 2]};
  EXPECT_TRUE(all_close(gather(x, 1, idx), gref, 0, 0));
  expect_gradients_match([idx](const std::vector<Tensor>& t) { return gather(t[0], 1, idx); },
                         {random_tensor({3, 5}, 116)});
  EXPECT_THROW(gather(x, 1, Tensor::from_vector<int64_t>({5, 0, 0, 0, 0, 0}, {3, 2})), std::invalid_argument);
}

// ---------------------------------------------------------------------------
// determinism: same inputs, same bits, for 1 and 2 threads

TEST(Ops, BitIdenticalAcrossThreadCounts) {
  auto run = [] {
    Tensor x = random_tensor({300, 64}, 120, DType::f32), w = random_tensor({64}, 121, DType::f32);
    x.set_requires_grad();
    w.set_requires_grad();
    Tensor y = sum(mul(rmsnorm(x, w, 1e-6), rmsnorm(x, w, 1e-6)));
    y.backward();
    V out = w.grad().to_vector<double>();
    out.push_back(y.item());
    return out;
  };
  int prev = omp_get_max_threads();
  omp_set_num_threads(1);
  V one = run();
  omp_set_num_threads(2);
  V two = run();
  omp_set_num_threads(prev);
  EXPECT_EQ(one, two);
}

// ---------------------------------------------------------------------------
// patch embedding: against a naive conv written here

TEST(Ops, PatchEmbed) {
  int B = 2, C = 3, H = 8, W = 12, P = 4, E = 5, N = (H / P) * (W / P);
  Tensor img = random_tensor({B, C, H, W}, 130, DType::f32);
  Tensor w = random_tensor({E, C, P, P}, 131, DType::f32), b = random_tensor({E}, 132, DType::f32),
         pos = random_tensor({N, E}, 133, DType::f32);
  V iv = img.to_vector<double>(), wv = w.to_vector<double>(), bv = b.to_vector<double>(), pv = pos.to_vector<double>();
  V ref(B * N * E);
  for (int bb = 0; bb < B; ++bb)
    for (int n = 0; n < N; ++n)
      for (int e = 0; e < E; ++e) {
        double acc = bv[e] + pv[n * E + e];
        int y0 = n / (W / P) * P, x0 = n % (W / P) * P;
        for (int c = 0; c < C; ++c)
          for (int ky = 0; ky < P; ++ky)
            for (int kx = 0; kx < P; ++kx)
              acc += wv[((e * C + c) * P + ky) * P + kx] * iv[((bb * C + c) * H + y0 + ky) * W + x0 + kx];
        ref[(bb * N + n) * E + e] = acc;
      }
  EXPECT_TRUE(all_close(patch_embed(img, w, b, pos, P), ref, 1e-5, 1e-5));
  // Gradients (weight, bias, pos) against finite differences in f64 inputs;
  // the op computes in f32 and is linear in them, so a large step is exact
  // up to f32 rounding.
  expect_gradients_match(
      [img, P](const std::vector<Tensor>& t) { return patch_embed(img, t[0], t[1], t[2], P).to(DType::f64); },
      {random_tensor({E, C * P * P}, 134), random_tensor({E}, 135), random_tensor({N, E}, 136)}, 0.1, 1e-3, 1e-4);
  EXPECT_THROW(patch_embed(random_tensor({1, 3, 9, 8}, 1, DType::f32), w, b, Tensor(), P), std::invalid_argument);
}
