// Sim-backend tests of the hand-written GEMMs (f32 tiled, bf16 tensor-core) against a
// float64 reference, with transposes, padded leading dimensions and awkward sizes.
#include <gtest/gtest.h>

#include "kernels/simt/simt.h"
#include "tests/kernels/reference.h"
#include "visplay/kernels/gemm.h"

namespace {

namespace sim = visplay::kernels::sim;
using visplay::test::expect_close;
using visplay::test::random_floats;

class GemmSim : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override { simt::set_seed(GetParam()); }
};

struct Case {
  int M, N, K;
  bool ta, tb;
};
const Case kCases[] = {{33, 17, 45, false, false},
                       {8, 40, 16, true, false},
                       {31, 33, 7, false, true},
                       {19, 5, 35, true, true},
                       {1, 1, 1, false, false}};

// Reference on the matrices as the kernel sees them (leading dimension ld = cols + 3).
std::vector<double> gemm64(const Case& c, const std::vector<float>& A, int lda,
                           const std::vector<float>& B, int ldb, float alpha, float beta,
                           const std::vector<float>& C0, int ldc) {
  std::vector<double> out(C0.begin(), C0.end());
  for (int m = 0; m < c.M; ++m)
    for (int n = 0; n < c.N; ++n) {
      double acc = 0.0;
      for (int k = 0; k < c.K; ++k)
        acc += double(c.ta ? A[k * lda + m] : A[m * lda + k]) *
               double(c.tb ? B[n * ldb + k] : B[k * ldb + n]);
      out[m * ldc + n] = alpha * acc + beta * double(C0[m * ldc + n]);
    }
  return out;
}

template <bool kBf16>
void run_cases() {
  for (const Case& c : kCases) {
    int a_rows = c.ta ? c.K : c.M, a_cols = c.ta ? c.M : c.K;
    int b_rows = c.tb ? c.N : c.K, b_cols = c.tb ? c.K : c.N;
    int lda = a_cols + 3, ldb = b_cols + 3, ldc = c.N + 3;
    auto A = random_floats(a_rows * lda, c.M * 7 + 1), B = random_floats(b_rows * ldb, c.N * 7 + 2);
    if (kBf16) {  // the reference sees the bf16-rounded inputs
      A = visplay::test::from_bf16(visplay::test::to_bf16(A));
      B = visplay::test::from_bf16(visplay::test::to_bf16(B));
    }
    for (float beta : {0.0f, 0.5f}) {
      auto C0 = random_floats(c.M * ldc, 3);
      auto C = C0;
      if (beta == 0.0f) std::fill(C.begin(), C.end(), NAN);  // must not be read
      std::string what = std::string(kBf16 ? "bf16 " : "f32 ") + std::to_string(c.M) + "x" +
                         std::to_string(c.N) + "x" + std::to_string(c.K) + (c.ta ? " ta" : "") +
                         (c.tb ? " tb" : "") + " beta=" + std::to_string(beta);
      if (kBf16) {
        auto Ab = visplay::test::to_bf16(A), Bb = visplay::test::to_bf16(B);
        sim::gemm_bf16(c.ta, c.tb, c.M, c.N, c.K, 1.5f, Ab.data(), lda, Bb.data(), ldb, beta,
                       C.data(), ldc, nullptr);
      } else {
        sim::gemm_f32(c.ta, c.tb, c.M, c.N, c.K, 1.5f, A.data(), lda, B.data(), ldb, beta, C.data(),
                      ldc, nullptr);
      }
      auto want = gemm64(c, A, lda, B, ldb, 1.5f, beta, C0, ldc);
      // Padding columns of C are not part of the product: compare only the M x N part.
      std::vector<float> got_part;
      std::vector<double> want_part;
      for (int m = 0; m < c.M; ++m)
        for (int n = 0; n < c.N; ++n) {
          got_part.push_back(C[m * ldc + n]);
          want_part.push_back(want[m * ldc + n]);
        }
      expect_close(got_part, want_part, 1e-5, 1e-5, what);
      if (beta == 0.0f) {
        EXPECT_TRUE(std::isnan(C[c.N])) << what << ": wrote into the padding";
      }
    }
  }
}

TEST_P(GemmSim, F32MatchesReference) { run_cases<false>(); }
TEST_P(GemmSim, Bf16TensorCoresMatchReference) { run_cases<true>(); }

TEST(GemmSimErrors, BadLeadingDimensionThrows) {
  float x = 0.0f;
  EXPECT_THROW(sim::gemm_f32(false, false, 4, 4, 4, 1.0f, &x, 3, &x, 4, 0.0f, &x, 4, nullptr),
               std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(Seeds, GemmSim, ::testing::ValuesIn(visplay::test::sim_seeds()));

}  // namespace
