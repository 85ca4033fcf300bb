#include <gtest/gtest.h>

#include <cstdio>

#include "runtime/allocator.h"
#include "runtime/ops.h"
#include "tests/runtime/test_util.h"

using namespace visplay;

TEST(Autograd, DiamondGraphSumsBothPaths) {
  // y = x*x + x  -> dy/dx = 2x + 1
  Tensor x = test::random_tensor({5}, 3);
  x.set_requires_grad();
  Tensor y = sum(add(mul(x, x), x));
  y.backward();
  std::vector<double> xv = x.to_vector<double>(), g = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_NEAR(g[i], 2 * xv[i] + 1, 1e-12);
}

TEST(Autograd, AccumulatesAcrossBackwardCalls) {
  Tensor x = test::random_tensor({3}, 4);
  x.set_requires_grad();
  sum(scale(x, 2.0)).backward();
  sum(scale(x, 3.0)).backward();
  for (double g : x.grad().to_vector<double>()) EXPECT_DOUBLE_EQ(g, 5.0);
  x.zero_grad();
  EXPECT_FALSE(x.grad().defined());
}

TEST(Autograd, NoGradAndDetachRecordNothing) {
  Tensor x = test::random_tensor({3}, 5);
  x.set_requires_grad();
  {
    NoGradGuard guard;
    Tensor y = mul(x, x);
    EXPECT_FALSE(y.requires_grad());
  }
  Tensor d = x.detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_EQ(d.storage(), x.storage());
  Tensor y = mul(x, d);  // gradient flows only through the first factor
  sum(y).backward();
  std::vector<double> xv = x.to_vector<double>(), g = x.grad().to_vector<double>();
  for (size_t i = 0; i < xv.size(); ++i) EXPECT_NEAR(g[i], xv[i], 1e-12);
}

TEST(Autograd, ViewsPropagateGradients) {
  Tensor x = test::random_tensor({2, 3}, 6);
  x.set_requires_grad();
  Tensor y = x.transpose(0, 1).slice(0, 1, 3).reshape({4});
  Tensor w = Tensor::from_vector<double>({1, 2, 3, 4}, {4});
  sum(mul(y, w)).backward();
  // y = [x01, x11, x02, x12]
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{0, 1, 3, 0, 2, 4}));
}

TEST(Autograd, ErrorsAreClear) {
  Tensor x = test::random_tensor({2, 2}, 7);
  EXPECT_THROW(x.backward(), std::invalid_argument);  // does not require grad
  x.set_requires_grad();
  Tensor y = mul(x, x);
  EXPECT_THROW(y.backward(), std::invalid_argument);  // non-scalar without a gradient
  EXPECT_THROW(y.set_requires_grad(), std::invalid_argument);  // not a leaf
  EXPECT_THROW(Tensor::zeros({2}, DType::i64).set_requires_grad(), std::invalid_argument);
}

TEST(Autograd, Bf16ComputesThroughF32) {
  Tensor x = test::random_tensor({4, 8}, 8, DType::f32).to(DType::bf16);
  x.set_requires_grad();
  Tensor y = sum(gelu(x));
  EXPECT_EQ(y.dtype(), DType::bf16);
  y.backward();
  ASSERT_TRUE(x.grad().defined());
  EXPECT_EQ(x.grad().dtype(), DType::f32);  // a bf16 leaf's gradient accumulates in f32
}

// 32 micro-batch backward passes into a bf16 leaf: the f32 .grad equals the float64 sum of the
// contributions to f32 rounding (k - 1 additions, each off by at most 2^-24 of a partial sum),
// while the sum a bf16 .grad accumulated is off by a few bf16 ulps of the sum.
TEST(Autograd, Bf16LeafGradientAccumulatesInF32) {
  const int k = 32;
  test::MicroBatchAccumulation r = test::accumulate_bf16_micro_batches(kCPU, 4096, k, 60);
  EXPECT_EQ(r.grad_dtype, DType::f32);
  for (size_t i = 0; i < r.grad.size(); ++i)
    ASSERT_LE(std::fabs(r.grad[i] - r.reference[i]), (k - 1) * std::ldexp(r.abs_sum[i], -24))
        << "element " << i;
  const double f32_error = test::max_abs_error(r.grad, r.reference);
  const double bf16_error = test::max_abs_error(r.bf16_sum, r.reference);
  std::printf("max |grad - float64 sum| over %d micro-batches: f32 .grad %.3g, bf16 .grad %.3g\n",
              k, f32_error, bf16_error);
  EXPECT_GT(bf16_error, 1000 * f32_error);
}

// A gradient set by hand in bf16 is widened to f32 by the next backward, which adds to it.
TEST(Autograd, Bf16GradSetByHandIsWidenedWhenAccumulated) {
  Tensor w = Tensor::from_vector<float>({1.0f, 2.0f}, {2}, DType::bf16);
  w.set_requires_grad();
  w.set_grad(Tensor::from_vector<float>({256.0f, -3.0f}, {2}, DType::bf16));
  sum(w).backward();
  ASSERT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_EQ(w.grad().to_vector<double>(), (std::vector<double>{257.0, -2.0}));  // 257: not bf16
}

// ---- activation recomputation (checkpoint) ----

namespace {

// A pre-norm transformer-like block: RMSNorm, causal attention, residual, RMSNorm, SwiGLU
// MLP, residual; x [B, S, D]. The weights are leaves of `w`.
Tensor block(const Tensor& x, const std::vector<Tensor>& w, int64_t heads) {
  int64_t B = x.size(0), S = x.size(1), D = x.size(2), hd = D / heads;
  Tensor h = rmsnorm(x, w[0], 1e-6);
  Tensor q = linear(h, w[1]).reshape({B, S, heads, hd});
  Tensor k = linear(h, w[2]).reshape({B, S, heads, hd});
  Tensor v = linear(h, w[3]).reshape({B, S, heads, hd});
  AttentionOptions opt;
  opt.causal = true;
  Tensor x1 = add(x, linear(attention(q, k, v, opt).reshape({B, S, D}), w[4]));
  Tensor h2 = rmsnorm(x1, w[5], 1e-6);
  return add(x1, linear(swiglu(linear(h2, w[6]), linear(h2, w[7])), w[8]));
}

struct Stack {
  std::vector<std::vector<Tensor>> layers;
  Stack(int64_t num_layers, int64_t D, int64_t F, DType dt, uint64_t seed) {
    for (int64_t l = 0; l < num_layers; ++l) {
      std::vector<Tensor> w;
      uint64_t s = seed + 100 * l;
      w.push_back(test::random_tensor({D}, s, dt, 0.5, 1.5));
      for (int i = 1; i <= 4; ++i) w.push_back(test::random_tensor({D, D}, s + i, dt, -0.3, 0.3));
      w.push_back(test::random_tensor({D}, s + 5, dt, 0.5, 1.5));
      w.push_back(test::random_tensor({F, D}, s + 6, dt, -0.3, 0.3));
      w.push_back(test::random_tensor({F, D}, s + 7, dt, -0.3, 0.3));
      w.push_back(test::random_tensor({D, F}, s + 8, dt, -0.3, 0.3));
      for (Tensor& t : w) t.set_requires_grad();
      layers.push_back(w);
    }
  }
  std::vector<Tensor> all() const {
    std::vector<Tensor> out;
    for (const auto& l : layers) out.insert(out.end(), l.begin(), l.end());
    return out;
  }
  void zero_grad() const {
    for (const Tensor& t : all()) t.zero_grad();
  }
  // Runs the stack (each layer checkpointed when `recompute`), then a weighted sum as loss,
  // and backpropagates.
  void forward_backward(const Tensor& x, const Tensor& loss_weights, bool recompute,
                        int64_t heads) const {
    Tensor h = x;
    for (const auto& w : layers) {
      if (recompute) {
        h = checkpoint([w, heads](const std::vector<Tensor>& in) { return block(in[0], w, heads); },
                       {h}, w);
      } else {
        h = block(h, w, heads);
      }
    }
    sum(mul(h, loss_weights)).backward();
  }
};

std::string grad_bytes(const std::vector<Tensor>& ts) {
  std::string out;
  for (const Tensor& t : ts) {
    Tensor g = t.grad().contiguous();
    out.append(static_cast<const char*>(g.raw_data()), g.numel() * dtype_size(g.dtype()));
  }
  return out;
}

}  // namespace

// Same ops in the same order: every gradient (weights and input) is bit-identical with and
// without recomputation, in f32 and bf16, accumulated over two backward calls.
TEST(Checkpoint, GradientsBitIdenticalToDirectRun) {
  for (DType dt : {DType::f32, DType::bf16}) {
    for (uint64_t seed : {1u, 2u}) {
      const int64_t B = 2, S = 9, D = 16, F = 24, heads = 2;
      Stack stack(3, D, F, dt, seed * 1000);
      Tensor x = test::random_tensor({B, S, D}, seed, dt).detach().set_requires_grad();
      Tensor lw = test::random_tensor({B, S, D}, seed + 7, dt);
      std::vector<Tensor> all = stack.all();
      all.push_back(x);
      for (int rep = 0; rep < 2; ++rep) stack.forward_backward(x, lw, false, heads);
      std::string direct = grad_bytes(all);
      stack.zero_grad();
      x.zero_grad();
      for (int rep = 0; rep < 2; ++rep) stack.forward_backward(x, lw, true, heads);
      std::string recomputed = grad_bytes(all);
      EXPECT_EQ(direct.size(), recomputed.size());
      EXPECT_TRUE(direct == recomputed) << dtype_name(dt) << " seed " << seed;
      // The gradients are real: perturbing the loss weights changes them.
      stack.zero_grad();
      x.zero_grad();
      stack.forward_backward(x, scale(lw, 1.5), true, heads);
      EXPECT_FALSE(grad_bytes(all) == recomputed);
    }
  }
}

// A bf16 non-leaf block input used three times inside the block: its gradient sums three
// contributions in bf16 without the checkpoint, so the checkpoint's leaf stand-in for it must
// sum them in bf16 too (not in f32, as a bf16 parameter's .grad does) for bit-identical results.
TEST(Checkpoint, Bf16InputUsedThreeTimesBitIdentical) {
  const int64_t n = 512;
  auto leaf = [&](uint64_t seed) {
    return test::random_tensor({n}, seed, DType::f32).to(DType::bf16).detach().set_requires_grad();
  };
  Tensor x = leaf(1), w0 = leaf(2), w1 = leaf(3), w2 = leaf(4), w3 = leaf(5);
  Tensor r = test::random_tensor({n}, 6, DType::f32).to(DType::bf16);
  auto fn = [w1, w2, w3](const std::vector<Tensor>& in) {
    return add(add(mul(in[0], w1), mul(in[0], w2)), mul(in[0], w3));
  };
  std::vector<Tensor> all = {x, w0, w1, w2, w3};
  std::string direct, recomputed;
  for (bool use_checkpoint : {false, true}) {
    for (const Tensor& t : all) t.zero_grad();
    Tensor h = mul(x, w0);  // the non-leaf block input
    Tensor y = use_checkpoint ? checkpoint(fn, {h}, {w1, w2, w3}) : fn({h});
    sum(mul(y, r)).backward();
    (use_checkpoint ? recomputed : direct) = grad_bytes(all);
  }
  EXPECT_EQ(direct.size(), n * 5 * sizeof(float));  // every parameter's .grad is f32
  EXPECT_TRUE(direct == recomputed);
}

// The gradients through a checkpoint match finite differences (f64), including a parameter
// read by the block while the block input needs no gradient.
TEST(Checkpoint, MatchesFiniteDifferences) {
  Tensor w = test::random_tensor({4, 4}, 11).detach().set_requires_grad();
  Tensor b = test::random_tensor({4}, 12).detach().set_requires_grad();
  test::expect_gradients_match(
      [&](const std::vector<Tensor>& in) {
        Tensor y =
            checkpoint([&](const std::vector<Tensor>& v) { return gelu(linear(v[0], v[1], b)); },
                       {in[0], in[1]}, {b});
        return sum(mul(y, y));
      },
      {test::random_tensor({3, 4}, 13), w});
  // Input without gradient: the output still requires grad through the listed parameter.
  Tensor x = test::random_tensor({3, 4}, 14);
  b.zero_grad();
  Tensor y =
      checkpoint([&](const std::vector<Tensor>& v) { return linear(v[0], w, b); }, {x}, {w, b});
  EXPECT_TRUE(y.requires_grad());
  sum(y).backward();
  ASSERT_TRUE(b.grad().defined());
  for (double g : b.grad().to_vector<double>()) EXPECT_DOUBLE_EQ(g, 3.0);
}

TEST(Checkpoint, OutsideGradModeAndBadParams) {
  Tensor w = test::random_tensor({4, 4}, 21).detach().set_requires_grad();
  Tensor x = test::random_tensor({2, 4}, 22).detach().set_requires_grad();
  auto fn = [&](const std::vector<Tensor>& v) { return linear(v[0], w); };
  {
    NoGradGuard no_grad;
    Tensor y = checkpoint(fn, {x}, {w});
    EXPECT_FALSE(y.requires_grad());
    EXPECT_EQ(y.to_vector<double>(), linear(x, w).to_vector<double>());
  }
  Tensor not_leaf = mul(w, w);
  EXPECT_THROW(checkpoint(fn, {x}, {not_leaf}), std::invalid_argument);
}

// Recomputation keeps only each block's input alive between forward and backward: the peak
// allocator bytes of forward + backward fall (the numbers are printed for docs/runtime.md).
TEST(Checkpoint, PeakBytesFallWithRecomputation) {
  const int64_t B = 1, S = 512, D = 32, F = 96, heads = 4, layers = 6;
  Stack stack(layers, D, F, DType::f32, 77);
  Tensor x = test::random_tensor({B, S, D}, 78, DType::f32).detach().set_requires_grad();
  Tensor lw = test::random_tensor({B, S, D}, 79, DType::f32);
  CachingAllocator& alloc = allocator_for(kCPU);
  size_t peak[2];
  std::string grads[2];
  for (int recompute = 0; recompute < 2; ++recompute) {
    stack.zero_grad();
    x.zero_grad();
    size_t base = alloc.stats().current_bytes;
    alloc.reset_peak();
    stack.forward_backward(x, lw, recompute == 1, heads);
    peak[recompute] = alloc.stats().peak_bytes - base;
    std::vector<Tensor> all = stack.all();
    all.push_back(x);
    grads[recompute] = grad_bytes(all);
  }
  std::printf(
      "checkpoint peak bytes over the weights: direct %zu, recomputed %zu (%d layers, S %d)\n",
      peak[0], peak[1], static_cast<int>(layers), static_cast<int>(S));
  EXPECT_TRUE(grads[0] == grads[1]);
  EXPECT_LT(peak[1] * 2, peak[0]);
}
