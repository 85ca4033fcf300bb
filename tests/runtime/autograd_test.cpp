#include <gtest/gtest.h>

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
  EXPECT_EQ(x.grad().dtype(), DType::bf16);
}
