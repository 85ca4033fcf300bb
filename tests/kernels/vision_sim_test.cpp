// Sim-backend tests of the ViT kernels: fused patch embedding (float CHW and uint8 HWC
// inputs) against an explicit unfold + matmul in float64, and bias + GELU forward and
// backward against float64 (central differences for the backward).
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/simt/simt.h"
#include "tests/kernels/reference.h"
#include "visplay/kernels/vision.h"

namespace {

namespace sim = visplay::kernels::sim;
using visplay::test::expect_close;
using visplay::test::poisoned;
using visplay::test::random_floats;

class VisionSim : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override { simt::set_seed(GetParam()); }
};

TEST_P(VisionSim, PatchEmbedFloatAndUint8) {
  struct S {
    int B, C, H, W, P, E;
  };
  for (S s : {S{2, 3, 8, 12, 4, 10}, S{1, 1, 6, 6, 3, 5}, S{3, 2, 5, 10, 5, 33}}) {
    int np = (s.H / s.P) * (s.W / s.P), ps = s.C * s.P * s.P;
    auto imgf = random_floats(static_cast<size_t>(s.B) * s.C * s.H * s.W, 1 + s.E);
    auto u8i =
        visplay::test::random_ints(static_cast<size_t>(s.B) * s.H * s.W * s.C, 2 + s.E, 0, 255);
    std::vector<uint8_t> imgu(u8i.begin(), u8i.end());
    auto mean = random_floats(s.C, 3, 0.3f, 0.6f), stdv = random_floats(s.C, 4, 0.2f, 0.3f);
    auto w = random_floats(static_cast<size_t>(s.E) * ps, 5 + s.E), bias = random_floats(s.E, 6);
    auto pos = random_floats(static_cast<size_t>(np) * s.E, 7);
    for (bool u8 : {false, true}) {
      auto out = poisoned(static_cast<size_t>(s.B) * np * s.E);
      sim::patch_embed_forward(u8 ? nullptr : imgf.data(), u8 ? imgu.data() : nullptr, mean.data(),
                               stdv.data(), s.B, s.C, s.H, s.W, s.P, w.data(), bias.data(),
                               pos.data(), s.E, out.data(), nullptr);
      // Reference: explicit unfold into [B * np, ps], then a float64 matmul.
      std::vector<double> want(out.size());
      for (int b = 0; b < s.B; ++b)
        for (int p = 0; p < np; ++p) {
          int y0 = (p / (s.W / s.P)) * s.P, x0 = (p % (s.W / s.P)) * s.P;
          std::vector<double> col(ps);
          for (int c = 0; c < s.C; ++c)
            for (int ky = 0; ky < s.P; ++ky)
              for (int kx = 0; kx < s.P; ++kx) {
                int y = y0 + ky, x = x0 + kx;
                double v =
                    u8 ? (imgu[((size_t(b) * s.H + y) * s.W + x) * s.C + c] / 255.0 - mean[c]) /
                             stdv[c]
                       : imgf[((size_t(b) * s.C + c) * s.H + y) * s.W + x];
                col[(c * s.P + ky) * s.P + kx] = v;
              }
          for (int e = 0; e < s.E; ++e) {
            double acc = double(bias[e]) + pos[p * s.E + e];
            for (int k = 0; k < ps; ++k) acc += w[size_t(e) * ps + k] * col[k];
            want[(size_t(b) * np + p) * s.E + e] = acc;
          }
        }
      expect_close(out, want, 1e-5, 1e-5,
                   std::string(u8 ? "u8" : "f32") + " E=" + std::to_string(s.E));
    }
  }
  EXPECT_THROW(sim::patch_embed_forward(nullptr, nullptr, nullptr, nullptr, 1, 3, 10, 10, 4,
                                        nullptr, nullptr, nullptr, 8, nullptr, nullptr),
               std::invalid_argument);
}

TEST_P(VisionSim, BiasGeluForwardBackward) {
  int rows = 7, dim = 45;
  auto x = random_floats(rows * dim, 21, -4.0f, 4.0f), b = random_floats(dim, 22),
       dy = random_floats(rows * dim, 23);
  auto y = poisoned(rows * dim), dx = poisoned(rows * dim), db = poisoned(dim);
  sim::bias_gelu_forward(x.data(), b.data(), rows, dim, y.data(), nullptr);
  sim::bias_gelu_backward(x.data(), b.data(), dy.data(), rows, dim, dx.data(), db.data(), nullptr);
  auto gelu = [](double u) {
    return 0.5 * u * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (u + 0.044715 * u * u * u)));
  };
  std::vector<double> want(rows * dim), want_dx(rows * dim), want_db(dim, 0.0);
  for (int i = 0; i < rows * dim; ++i) {
    double u = double(x[i]) + b[i % dim], h = 1e-6;
    want[i] = gelu(u);
    want_dx[i] = dy[i] * (gelu(u + h) - gelu(u - h)) / (2 * h);
    want_db[i % dim] += want_dx[i];
  }
  expect_close(y, want, 1e-5, 1e-6, "gelu y");
  expect_close(dx, want_dx, 1e-4, 1e-6, "gelu dx");
  expect_close(db, want_db, 1e-4, 1e-5, "gelu dbias");
}

INSTANTIATE_TEST_SUITE_P(Seeds, VisionSim, ::testing::ValuesIn(visplay::test::sim_seeds()));

}  // namespace
