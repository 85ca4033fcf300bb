// Sim-backend tests of the layer kernels: RMSNorm, LayerNorm, RoPE, SwiGLU, embedding
// backward, multi-tensor AdamW. Forward against float64 formulas, backward against
// float64 central differences of those formulas.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/simt/simt.h"
#include "tests/kernels/reference.h"
#include "visplay/kernels/adamw.h"
#include "visplay/kernels/elementwise.h"
#include "visplay/kernels/embedding.h"
#include "visplay/kernels/norm.h"
#include "visplay/kernels/rope.h"
#include "visplay/kernels/swiglu.h"

namespace {

namespace sim = visplay::kernels::sim;
using visplay::test::dot64;
using visplay::test::expect_close;
using visplay::test::numeric_grad;
using visplay::test::poisoned;
using visplay::test::random_floats;
using visplay::test::to_double;

class LayersSim : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override { simt::set_seed(GetParam()); }
};

struct Shape {
  int rows, dim;
};
const Shape kNormShapes[] = {{3, 64}, {5, 37}, {1, 300}, {4, 1}};

// float64 norm of every row; layer = centre and add bias.
std::vector<double> norm64(const std::vector<double>& x, const std::vector<double>& w,
                           const std::vector<double>& b, int rows, int dim, double eps,
                           bool layer) {
  std::vector<double> y(x.size());
  for (int r = 0; r < rows; ++r) {
    double mu = 0.0, ss = 0.0;
    if (layer) {
      for (int i = 0; i < dim; ++i) mu += x[r * dim + i];
      mu /= dim;
    }
    for (int i = 0; i < dim; ++i) ss += (x[r * dim + i] - mu) * (x[r * dim + i] - mu);
    double rstd = 1.0 / std::sqrt(ss / dim + eps);
    for (int i = 0; i < dim; ++i)
      y[r * dim + i] = (x[r * dim + i] - mu) * rstd * w[i] + (layer ? b[i] : 0.0);
  }
  return y;
}

TEST_P(LayersSim, RmsNormForwardBackward) {
  for (Shape s : kNormShapes) {
    int n = s.rows * s.dim;
    auto x = random_floats(n, 1 + s.dim, -2.0f, 2.0f),
         w = random_floats(s.dim, 2 + s.dim, 0.5f, 1.5f);
    auto dy = random_floats(n, 3 + s.dim);
    auto y = poisoned(n), rstd = poisoned(s.rows), dx = poisoned(n), dw = poisoned(s.dim);
    float eps = 1e-6f;
    sim::rmsnorm_forward(x.data(), w.data(), s.rows, s.dim, eps, y.data(), rstd.data(), nullptr);
    sim::rmsnorm_backward(x.data(), w.data(), rstd.data(), dy.data(), s.rows, s.dim, dx.data(),
                          dw.data(), nullptr);
    std::string what = "rmsnorm " + std::to_string(s.rows) + "x" + std::to_string(s.dim);
    auto xd = to_double(x), wd = to_double(w);
    expect_close(y, norm64(xd, wd, {}, s.rows, s.dim, eps, false), 1e-5, 1e-6, what + " y");
    auto loss_x = [&](const std::vector<double>& v) {
      return dot64(norm64(v, wd, {}, s.rows, s.dim, eps, false), dy);
    };
    auto loss_w = [&](const std::vector<double>& v) {
      return dot64(norm64(xd, v, {}, s.rows, s.dim, eps, false), dy);
    };
    expect_close(dx, numeric_grad(loss_x, xd), 1e-4, 1e-5, what + " dx");
    expect_close(dw, numeric_grad(loss_w, wd), 1e-4, 1e-5, what + " dweight");
  }
}

TEST_P(LayersSim, LayerNormForwardBackward) {
  for (Shape s : kNormShapes) {
    if (s.dim == 1) continue;  // a single element normalises to 0 / sqrt(eps): degenerate
    int n = s.rows * s.dim;
    auto x = random_floats(n, 11 + s.dim, -2.0f, 3.0f),
         w = random_floats(s.dim, 12 + s.dim, 0.5f, 1.5f);
    auto b = random_floats(s.dim, 13 + s.dim), dy = random_floats(n, 14 + s.dim);
    auto y = poisoned(n), mean = poisoned(s.rows), rstd = poisoned(s.rows), dx = poisoned(n);
    auto dw = poisoned(s.dim), db = poisoned(s.dim);
    float eps = 1e-5f;
    sim::layernorm_forward(x.data(), w.data(), b.data(), s.rows, s.dim, eps, y.data(), mean.data(),
                           rstd.data(), nullptr);
    sim::layernorm_backward(x.data(), w.data(), mean.data(), rstd.data(), dy.data(), s.rows, s.dim,
                            dx.data(), dw.data(), db.data(), nullptr);
    std::string what = "layernorm " + std::to_string(s.rows) + "x" + std::to_string(s.dim);
    auto xd = to_double(x), wd = to_double(w), bd = to_double(b);
    expect_close(y, norm64(xd, wd, bd, s.rows, s.dim, eps, true), 1e-5, 1e-5, what + " y");
    auto f = [&](const std::vector<double>& xv, const std::vector<double>& wv,
                 const std::vector<double>& bv) {
      return dot64(norm64(xv, wv, bv, s.rows, s.dim, eps, true), dy);
    };
    expect_close(dx, numeric_grad([&](const auto& v) { return f(v, wd, bd); }, xd), 1e-4, 1e-5,
                 what + " dx");
    expect_close(dw, numeric_grad([&](const auto& v) { return f(xd, v, bd); }, wd), 1e-4, 1e-5,
                 what + " dw");
    expect_close(db, numeric_grad([&](const auto& v) { return f(xd, wd, v); }, bd), 1e-4, 1e-5,
                 what + " db");
  }
}

std::vector<double> rope64(const std::vector<double>& x, const std::vector<int>& pos, int tokens,
                           int heads, int hd, double theta) {
  std::vector<double> y(x.size());
  int half = hd / 2;
  for (int t = 0; t < tokens; ++t)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < half; ++i) {
        double a = pos[t] * std::pow(theta, -2.0 * i / hd);
        size_t base = (static_cast<size_t>(t) * heads + h) * hd;
        y[base + i] = x[base + i] * std::cos(a) - x[base + i + half] * std::sin(a);
        y[base + i + half] = x[base + i + half] * std::cos(a) + x[base + i] * std::sin(a);
      }
  return y;
}

TEST_P(LayersSim, RopeForwardBackward) {
  struct R {
    int tokens, heads, hd;
  };
  for (R s : {R{5, 3, 16}, R{7, 2, 6}, R{3, 4, 64}}) {
    int n = s.tokens * s.heads * s.hd;
    auto x = random_floats(n, 21 + s.hd), g = random_floats(n, 22 + s.hd);
    auto pos = visplay::test::random_ints(s.tokens, 23 + s.hd, 0, 40);
    auto y = poisoned(n), gx = poisoned(n);
    sim::rope(x.data(), pos.data(), s.tokens, s.heads, s.hd, 10000.0f, false, y.data(), nullptr);
    sim::rope(g.data(), pos.data(), s.tokens, s.heads, s.hd, 10000.0f, true, gx.data(), nullptr);
    std::string what = "rope hd=" + std::to_string(s.hd);
    expect_close(y, rope64(to_double(x), pos, s.tokens, s.heads, s.hd, 1e4), 1e-5, 2e-5, what);
    auto loss = [&](const std::vector<double>& v) {
      return dot64(rope64(v, pos, s.tokens, s.heads, s.hd, 1e4), g);
    };
    expect_close(gx, numeric_grad(loss, to_double(x)), 1e-4, 2e-5, what + " backward");
    // In place gives the same result.
    auto inplace = x;
    sim::rope(inplace.data(), pos.data(), s.tokens, s.heads, s.hd, 10000.0f, false, inplace.data(),
              nullptr);
    EXPECT_EQ(inplace, y);
  }
  EXPECT_THROW(sim::rope(nullptr, nullptr, 1, 1, 7, 1e4f, false, nullptr, nullptr),
               std::invalid_argument);
}

TEST_P(LayersSim, SwiGluForwardBackward) {
  for (long n : {1L, 100L, 1000L}) {
    auto gate = random_floats(n, 31, -4.0f, 4.0f), up = random_floats(n, 32),
         dy = random_floats(n, 33);
    auto y = poisoned(n), dgate = poisoned(n), dup = poisoned(n);
    sim::swiglu_forward(gate.data(), up.data(), n, y.data(), nullptr);
    sim::swiglu_backward(gate.data(), up.data(), dy.data(), n, dgate.data(), dup.data(), nullptr);
    auto f = [](double g, double u) { return g / (1.0 + std::exp(-g)) * u; };
    std::vector<double> want(n), want_dg(n), want_du(n);
    for (long i = 0; i < n; ++i) {
      want[i] = f(gate[i], up[i]);
      double h = 1e-6;
      want_dg[i] = dy[i] * (f(gate[i] + h, up[i]) - f(gate[i] - h, up[i])) / (2 * h);
      want_du[i] = dy[i] * (f(gate[i], up[i] + h) - f(gate[i], up[i] - h)) / (2 * h);
    }
    expect_close(y, want, 1e-5, 1e-6, "swiglu y");
    expect_close(dgate, want_dg, 1e-4, 1e-6, "swiglu dgate");
    expect_close(dup, want_du, 1e-4, 1e-6, "swiglu dup");
  }
}

TEST_P(LayersSim, EmbeddingBackwardIsExactAndDeterministic) {
  int tokens = 23, dim = 19, vocab = 11;
  auto ids = visplay::test::random_ints(tokens, 41, 0, vocab - 1);
  ids[5] = vocab + 3;  // out of range: skipped
  ids[6] = -1;
  auto dy = random_floats(static_cast<size_t>(tokens) * dim, 42);
  auto table = random_floats(static_cast<size_t>(vocab) * dim, 43);  // accumulates into it
  auto got = table;
  sim::embedding_backward(ids.data(), tokens, dy.data(), dim, vocab, got.data(), nullptr);
  std::vector<double> want = to_double(table);
  for (int t = 0; t < tokens; ++t)
    if (ids[t] >= 0 && ids[t] < vocab)
      for (int d = 0; d < dim; ++d) want[ids[t] * dim + d] += dy[t * dim + d];
  expect_close(got, want, 1e-6, 1e-6, "dtable");
  auto again = table;
  sim::embedding_backward(ids.data(), tokens, dy.data(), dim, vocab, again.data(), nullptr);
  EXPECT_EQ(std::memcmp(got.data(), again.data(), got.size() * 4), 0);
}

TEST_P(LayersSim, AdamWMultiTensor) {
  const int num = 35;  // more than one launch batch of 32
  std::vector<std::vector<float>> p(num), g(num), m(num), v(num);
  std::vector<sim::AdamWTensor> tensors;
  for (int i = 0; i < num; ++i) {
    long size = i == 3 ? 0 : (i * 37) % 300 + 1;
    p[i] = random_floats(size, 50 + i);
    g[i] = random_floats(size, 150 + i);
    m[i] = random_floats(size, 250 + i, -0.1f, 0.1f);
    v[i] = random_floats(size, 350 + i, 0.0f, 0.01f);
  }
  auto p0 = p, m0 = m, v0 = v;
  for (int i = 0; i < num; ++i)
    tensors.push_back(
        {p[i].data(), g[i].data(), m[i].data(), v[i].data(), static_cast<long>(p[i].size())});
  sim::AdamWOptions o;
  o.lr = 1e-2f;
  o.weight_decay = 0.1f;
  o.step = 3;
  o.grad_scale = 0.5f;
  sim::adamw_multi(tensors.data(), num, o, nullptr);
  for (int i = 0; i < num; ++i) {
    size_t n = p[i].size();
    std::vector<double> wp(n), wm(n), wv(n);
    for (size_t k = 0; k < n; ++k) {
      double gg = double(g[i][k]) * o.grad_scale;
      wm[k] = o.beta1 * double(m0[i][k]) + (1 - double(o.beta1)) * gg;
      wv[k] = o.beta2 * double(v0[i][k]) + (1 - double(o.beta2)) * gg * gg;
      double mh = wm[k] / (1 - std::pow(double(o.beta1), 3)),
             vh = wv[k] / (1 - std::pow(double(o.beta2), 3));
      wp[k] = p0[i][k] - o.lr * (mh / (std::sqrt(vh) + o.eps) + o.weight_decay * p0[i][k]);
    }
    std::string what = "tensor " + std::to_string(i);
    expect_close(m[i], wm, 1e-5, 1e-7, what + " m");
    expect_close(v[i], wv, 1e-5, 1e-9, what + " v");
    expect_close(p[i], wp, 1e-5, 1e-6, what + " param");
  }
}

// The exact GELU (UnaryOp::gelu_erf, the Qwen2.5-VL patch merger's) against float64:
// y = x Phi(x) and dx = dy (Phi(x) + x phi(x)) with std::erf in double. Inputs reach
// |x| = 6, where 1 + erf cancels; the tanh form misses by ~1e-4 near |x| = 2.5.
TEST_P(LayersSim, GeluErfForwardBackward) {
  for (int n : {1, 300, 70001}) {  // 70001: more than one grid-stride pass of the launch
    auto x = random_floats(n, 40 + n, -6.0f, 6.0f), dy = random_floats(n, 41 + n);
    auto y = poisoned(n), dx = poisoned(n);
    sim::unary_forward(visplay::kernels::UnaryOp::gelu_erf, x.data(), y.data(), n, 0.0f, nullptr);
    sim::unary_backward(visplay::kernels::UnaryOp::gelu_erf, dy.data(), x.data(), y.data(),
                        dx.data(), n, 0.0f, nullptr);
    std::vector<double> want_y(n), want_dx(n);
    for (int i = 0; i < n; ++i) {
      double v = x[i], cdf = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0)));
      double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
      want_y[i] = v * cdf;
      want_dx[i] = dy[i] * (cdf + v * pdf);
    }
    std::string what = "gelu_erf n=" + std::to_string(n);
    expect_close(y, want_y, 1e-5, 1e-6, what + " y");
    expect_close(dx, want_dx, 1e-5, 1e-6, what + " dx");
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, LayersSim, ::testing::ValuesIn(visplay::test::sim_seeds()));

}  // namespace
