#include <gtest/gtest.h>

#include <cmath>

#include "runtime/ops.h"
#include "tests/runtime/test_util.h"

using namespace visplay;
using test::random_tensor;

// Against the unfused composition linear -> log_softmax -> gather in f64.
TEST(TokenLogprobs, MatchesUnfusedCompositionAndGradients) {
  int64_t N = 7, D = 16, V = 1000;  // V not a multiple of the chunk
  Tensor h = random_tensor({N, D}, 200, DType::f32), w = random_tensor({V, D}, 201, DType::f32);
  Rng rng(5);
  std::vector<int64_t> t(N);
  for (auto& x : t) x = rng.randint(0, V);
  Tensor targets = Tensor::from_vector(t, {N});
  h.set_requires_grad();
  w.set_requires_grad();
  TokenLogprobs fused = token_logprobs(h, w, targets, 256);
  Tensor g = random_tensor({N}, 202, DType::f32);
  sum(mul(fused.logprobs, g)).backward();

  Tensor h64 = h.detach().to(DType::f64), w64 = w.detach().to(DType::f64);
  h64.set_requires_grad();
  w64.set_requires_grad();
  Tensor lsm = log_softmax(linear(h64, w64));
  Tensor ref = gather(lsm, 1, targets.reshape({N, 1})).reshape({N});
  sum(mul(ref, g.to(DType::f64))).backward();

  EXPECT_TRUE(test::all_close(fused.logprobs, ref.to_vector<double>(), 1e-5, 1e-5));
  for (double lp : fused.logprobs.to_vector<double>()) EXPECT_LE(lp, 0.0);
  EXPECT_TRUE(test::all_close(h.grad(), h64.grad().to_vector<double>(), 1e-4, 1e-5));
  EXPECT_TRUE(test::all_close(w.grad(), w64.grad().to_vector<double>(), 1e-4, 1e-6));

  // Entropy: -sum p log p from the unfused softmax.
  std::vector<double> lv = lsm.to_vector<double>(), ent = fused.entropy.to_vector<double>();
  for (int64_t n = 0; n < N; ++n) {
    double e = 0;
    for (int64_t v = 0; v < V; ++v) e -= std::exp(lv[n * V + v]) * lv[n * V + v];
    EXPECT_NEAR(ent[n], e, 1e-4);
  }
}

TEST(TokenLogprobs, NonPositiveAtQwenVocabulary) {
  // Large logits at vocab 151,936: a log-prob must never come out positive.
  int64_t N = 3, D = 8, V = 151936;
  Tensor h = random_tensor({N, D}, 210, DType::f32, -3, 3), w = random_tensor({V, D}, 211, DType::f32, -3, 3);
  Tensor targets = Tensor::from_vector<int64_t>({0, 151935, 77777}, {N});
  TokenLogprobs r = token_logprobs(h, w, targets);
  for (double lp : r.logprobs.to_vector<double>()) {
    EXPECT_LE(lp, 0.0);
    EXPECT_TRUE(std::isfinite(lp));
  }
  EXPECT_THROW(token_logprobs(h, w, Tensor::from_vector<int64_t>({0, 151936, 0}, {N})), std::invalid_argument);
}
