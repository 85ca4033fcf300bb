// Tests of the SIMT host emulator itself (kernels/simt/): small kernels written here,
// run through SIMT_LAUNCH, checked against float64 references. Each runs under
// several emulator seeds (thread release order, block order).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "kernels/simt/simt.h"
#include "tests/kernels/reference.h"

namespace {

using visplay::test::expect_close;
using visplay::test::random_floats;

// ---- kernels under test --------------------------------------------------------------

// Tree reduction in static shared memory: one partial sum per block.
__global__ void block_reduce_kernel(const float* in, float* out, int n) {
  __shared__ float partial[256];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  partial[threadIdx.x] = i < n ? in[i] : 0.0f;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (static_cast<int>(threadIdx.x) < stride)
      partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// C = A B with 8x8 shared tiles, 2-D blocks and grid, any M, N, K.
__global__ void tiled_matmul_kernel(const float* A, const float* B, float* C, int M, int N, int K) {
  constexpr int T = 8;
  __shared__ float a_tile[T][T];
  __shared__ float b_tile[T][T];
  int row = blockIdx.y * T + threadIdx.y, col = blockIdx.x * T + threadIdx.x;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += T) {
    int ka = k0 + threadIdx.x, kb = k0 + threadIdx.y;
    a_tile[threadIdx.y][threadIdx.x] = (row < M && ka < K) ? A[row * K + ka] : 0.0f;
    b_tile[threadIdx.y][threadIdx.x] = (kb < K && col < N) ? B[kb * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < T; ++k) acc += a_tile[threadIdx.y][k] * b_tile[k][threadIdx.x];
    __syncthreads();
  }
  if (row < M && col < N) C[row * N + col] = acc;
}

// Softmax of each row by one warp, max and sum through __shfl_xor_sync.
__global__ void warp_softmax_kernel(const float* x, float* y, int rows, int cols) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;  // whole warps leave together
  float m = -INFINITY;
  for (int c = lane; c < cols; c += 32) m = fmaxf(m, x[row * cols + c]);
  for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float s = 0.0f;
  for (int c = lane; c < cols; c += 32) s += __expf(x[row * cols + c] - m);
  for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
  for (int c = lane; c < cols; c += 32) y[row * cols + c] = __expf(x[row * cols + c] - m) / s;
}

// Inclusive prefix sum over each warp with __shfl_up_sync, then a broadcast of the warp
// total from lane 31 (__shfl_sync) and a __shfl_down_sync neighbour difference.
__global__ void warp_scan_kernel(const int* in, int* scan, int* total, int* next) {
  int lane = threadIdx.x % 32, i = blockIdx.x * blockDim.x + threadIdx.x;
  int v = in[i];
  for (int d = 1; d < 32; d *= 2) {
    int up = __shfl_up_sync(0xffffffffu, v, d);
    if (lane >= d) v += up;
  }
  scan[i] = v;
  total[i] = __shfl_sync(0xffffffffu, v, 31);
  next[i] = __shfl_down_sync(0xffffffffu, in[i], 1);
}

// Sub-warp shuffles: a sum over segments of 8 lanes, and a broadcast of each segment's
// lane 2 (width 8).
__global__ void segment_kernel(const float* in, float* sums, float* lane2) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  float v = in[i];
  for (int o = 4; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o, 8);
  sums[i] = v;
  lane2[i] = __shfl_sync(0xffffffffu, in[i], 2, 8);
}

__global__ void vote_kernel(const float* x, unsigned* ballot, int* any, int* all) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  unsigned b = __ballot_sync(0xffffffffu, x[i] > 0.0f);
  int a = __any_sync(0xffffffffu, x[i] > 0.9f);
  int l = __all_sync(0xffffffffu, x[i] > -0.99f);
  __syncwarp();
  if (threadIdx.x % 32 == 0) {
    ballot[i / 32] = b;
    any[i / 32] = a;
    all[i / 32] = l;
  }
}

__global__ void atomics_kernel(const int* bins_in, const float* x, int n, int* histogram,
                               float* sum, int* max_bin, float* max_x) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  atomicAdd(&histogram[bins_in[i]], 1);
  atomicAdd(sum, x[i]);
  atomicMax(max_bin, bins_in[i]);
  simt_atomic_max_float(max_x, x[i]);
}

// One warp: load A (16x16, row-major) and B (16x8, row-major K x N) in bf16 into the
// m16n8k16 fragments as the PTX ISA lays them out, D = A B + C.
__global__ void mma_kernel(const uint16_t* A, const uint16_t* B, const float* C, float* D) {
  int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  auto pack = [](uint16_t lo, uint16_t hi) { return uint32_t(lo) | (uint32_t(hi) << 16); };
  uint32_t a[4], b[2];
  a[0] = pack(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]);
  a[1] = pack(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]);
  a[2] = pack(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]);
  a[3] = pack(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9]);
  b[0] = pack(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]);
  b[1] = pack(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
  float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t],
                C[(g + 8) * 8 + 2 * t + 1]};
  float d[4];
  mma_m16n8k16_bf16(d, a, b, c);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// Each thread publishes its value and reads its neighbour's. Without the barrier the
// neighbour may not have written yet: the result depends on the thread order.
template <bool kWithBarrier>
__global__ void neighbour_kernel(const float* in, float* out) {
  SIMT_DYNAMIC_SHARED(float, values);
  int t = threadIdx.x, n = blockDim.x;
  values[t] = in[blockIdx.x * n + t];
  if (kWithBarrier) __syncthreads();
  out[blockIdx.x * n + t] = values[(t + 1) % n];
}

__global__ void read_before_write_kernel(float* out) {
  SIMT_DYNAMIC_SHARED(float, values);
  out[threadIdx.x] = values[threadIdx.x];
}

__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x >= 16) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void mask_mismatch_kernel(float* out) {
  unsigned mask = threadIdx.x < 16 ? 0x0000ffffu : 0xffffffffu;
  out[threadIdx.x] = __shfl_xor_sync(mask, 1.0f, 1);
}

class SimtTest : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override { simt::set_seed(GetParam()); }
};

// ---- tests ----------------------------------------------------------------------------

TEST_P(SimtTest, BlockReduction) {
  int n = 1000, threads = 256, blocks = (n + threads - 1) / threads;
  auto x = random_floats(n, 11);
  auto out = visplay::test::poisoned(blocks);
  SIMT_LAUNCH(block_reduce_kernel, blocks, threads, 0, nullptr)(x.data(), out.data(), n);
  std::vector<double> want(blocks, 0.0);
  for (int i = 0; i < n; ++i) want[i / threads] += x[i];
  expect_close(out, want, 1e-5, 1e-5, "block sums");
}

TEST_P(SimtTest, TiledMatmul) {
  int M = 19, N = 13, K = 21;
  auto A = random_floats(M * K, 1), B = random_floats(K * N, 2);
  auto C = visplay::test::poisoned(M * N);
  dim3 grid((N + 7) / 8, (M + 7) / 8);
  SIMT_LAUNCH(tiled_matmul_kernel, grid, dim3(8, 8), 0, nullptr)
  (A.data(), B.data(), C.data(), M, N, K);
  expect_close(C, visplay::test::matmul64(A.data(), B.data(), M, N, K), 1e-5, 1e-5, "C");
}

TEST_P(SimtTest, WarpSoftmax) {
  int rows = 5, cols = 70;
  auto x = random_floats(rows * cols, 3, -4.0f, 4.0f);
  auto y = visplay::test::poisoned(rows * cols);
  SIMT_LAUNCH(warp_softmax_kernel, 3, 64, 0, nullptr)(x.data(), y.data(), rows, cols);
  std::vector<double> want(rows * cols);
  for (int r = 0; r < rows; ++r) {
    double m = -INFINITY, s = 0.0;
    for (int c = 0; c < cols; ++c) m = std::max(m, double(x[r * cols + c]));
    for (int c = 0; c < cols; ++c) s += std::exp(x[r * cols + c] - m);
    for (int c = 0; c < cols; ++c) want[r * cols + c] = std::exp(x[r * cols + c] - m) / s;
  }
  expect_close(y, want, 1e-5, 1e-7, "softmax");
}

TEST_P(SimtTest, ShuffleUpDownAndBroadcast) {
  int n = 96;
  auto in = visplay::test::random_ints(n, 4, -50, 50);
  std::vector<int> scan(n, -999), total(n, -999), next(n, -999);
  SIMT_LAUNCH(warp_scan_kernel, 1, n, 0, nullptr)
  (in.data(), scan.data(), total.data(), next.data());
  for (int w = 0; w < n / 32; ++w) {
    int acc = 0;
    for (int l = 0; l < 32; ++l) {
      int i = w * 32 + l;
      acc += in[i];
      EXPECT_EQ(scan[i], acc) << i;
      EXPECT_EQ(next[i], l == 31 ? in[i] : in[i + 1]) << i;  // past the end: own value
    }
    for (int l = 0; l < 32; ++l) EXPECT_EQ(total[w * 32 + l], acc);
  }
}

TEST_P(SimtTest, SubWarpSegments) {
  int n = 64;
  auto x = random_floats(n, 14);
  auto sums = visplay::test::poisoned(n), lane2 = visplay::test::poisoned(n);
  SIMT_LAUNCH(segment_kernel, 1, n, 0, nullptr)(x.data(), sums.data(), lane2.data());
  std::vector<double> want_sums(n), want_lane2(n);
  for (int i = 0; i < n; ++i) {
    int base = i / 8 * 8;
    for (int j = 0; j < 8; ++j) want_sums[i] += x[base + j];
    want_lane2[i] = x[base + 2];
  }
  expect_close(sums, want_sums, 1e-6, 1e-6, "segment sums");
  expect_close(lane2, want_lane2, 0.0, 0.0, "segment broadcast");
}

TEST_P(SimtTest, SerialAndParallelBlocksAgreeBitForBit) {
  int M = 40, N = 24, K = 33;
  auto A = random_floats(M * K, 15), B = random_floats(K * N, 16);
  auto serial = visplay::test::poisoned(M * N), parallel = serial;
  dim3 grid((N + 7) / 8, (M + 7) / 8);
  simt::set_parallel(false);
  SIMT_LAUNCH(tiled_matmul_kernel, grid, dim3(8, 8), 0, nullptr)
  (A.data(), B.data(), serial.data(), M, N, K);
  simt::set_parallel(true);
  SIMT_LAUNCH(tiled_matmul_kernel, grid, dim3(8, 8), 0, nullptr)
  (A.data(), B.data(), parallel.data(), M, N, K);
  EXPECT_EQ(std::memcmp(serial.data(), parallel.data(), serial.size() * 4), 0);
}

TEST_P(SimtTest, Votes) {
  int n = 128;
  auto x = random_floats(n, 5);
  x[40] = -0.995f;  // warp 1 fails __all_sync
  x[100] = 0.95f;   // warp 3 passes __any_sync
  std::vector<unsigned> ballot(4, 0xdeadbeef);
  std::vector<int> any(4, -1), all(4, -1);
  SIMT_LAUNCH(vote_kernel, 2, 64, 0, nullptr)(x.data(), ballot.data(), any.data(), all.data());
  for (int w = 0; w < 4; ++w) {
    unsigned want = 0;
    bool want_any = false, want_all = true;
    for (int l = 0; l < 32; ++l) {
      float v = x[w * 32 + l];
      if (v > 0.0f) want |= 1u << l;
      want_any |= v > 0.9f;
      want_all &= v > -0.99f;
    }
    EXPECT_EQ(ballot[w], want) << w;
    EXPECT_EQ(any[w], int(want_any)) << w;
    EXPECT_EQ(all[w], int(want_all)) << w;
  }
}

TEST_P(SimtTest, Atomics) {
  int n = 700;
  auto bins = visplay::test::random_ints(n, 6, 0, 9);
  auto x = random_floats(n, 7);
  std::vector<int> histogram(10, 0);
  float sum = 0.0f, max_x = -INFINITY;
  int max_bin = -1;
  SIMT_LAUNCH(atomics_kernel, 6, 128, 0, nullptr)
  (bins.data(), x.data(), n, histogram.data(), &sum, &max_bin, &max_x);
  std::vector<int> want(10, 0);
  double want_sum = 0.0;
  for (int i = 0; i < n; ++i) {
    ++want[bins[i]];
    want_sum += x[i];
  }
  EXPECT_EQ(histogram, want);
  EXPECT_NEAR(sum, want_sum, 1e-3);
  EXPECT_EQ(max_bin, *std::max_element(bins.begin(), bins.end()));
  EXPECT_EQ(max_x, *std::max_element(x.begin(), x.end()));
}

TEST_P(SimtTest, MmaMatchesPlainMatmul) {
  auto Af = visplay::test::from_bf16(visplay::test::to_bf16(random_floats(16 * 16, 8)));
  auto Bf = visplay::test::from_bf16(visplay::test::to_bf16(random_floats(16 * 8, 9)));
  auto C = random_floats(16 * 8, 10);
  auto A = visplay::test::to_bf16(Af), B = visplay::test::to_bf16(Bf);
  auto D = visplay::test::poisoned(16 * 8);
  SIMT_LAUNCH(mma_kernel, 1, 32, 0, nullptr)(A.data(), B.data(), C.data(), D.data());
  auto want = visplay::test::matmul64(Af.data(), Bf.data(), 16, 8, 16);
  for (int i = 0; i < 16 * 8; ++i) want[i] += C[i];
  expect_close(D, want, 1e-5, 1e-5, "D = A B + C");
}

TEST(SimtBf16, RoundsToNearestEven) {
  auto bits = [](uint32_t u) { return __bfloat16_as_ushort(__float2bfloat16(__uint_as_float(u))); };
  EXPECT_EQ(bits(0x3f808000u), 0x3f80);  // tie, even below
  EXPECT_EQ(bits(0x3f818000u), 0x3f82);  // tie, even above
  EXPECT_EQ(bits(0x3f808001u), 0x3f81);  // just above the tie
  EXPECT_EQ(bits(0x3f807fffu), 0x3f80);  // just below the tie
  EXPECT_EQ(bits(0xbf818000u), 0xbf82);  // negative tie
  EXPECT_EQ(bits(0x7f7fffffu), 0x7f80);  // max float rounds to +inf
  EXPECT_EQ(bits(0x7f800000u), 0x7f80);  // inf stays inf
  EXPECT_TRUE(std::isnan(__bfloat162float(__float2bfloat16(NAN))));
  EXPECT_TRUE(std::isnan(__bfloat162float(__ushort_as_bfloat16(0x7f81))));  // low-payload NaN
  EXPECT_TRUE(std::isnan(__bfloat162float(__float2bfloat16(__uint_as_float(0x7f800001u)))));
  EXPECT_EQ(__bfloat162float(__float2bfloat16(1.5f)), 1.5f);
}

TEST(SimtRace, MissingBarrierIsExposedByTheShuffledOrder) {
  int threads = 64, blocks = 2;
  auto in = random_floats(threads * blocks, 12);
  std::vector<float> want(threads * blocks);
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < threads; ++t) want[b * threads + t] = in[b * threads + (t + 1) % threads];
  int wrong_seeds = 0;
  std::set<std::vector<uint32_t>> distinct;
  for (uint64_t seed = 1; seed <= 4; ++seed) {
    simt::set_seed(seed);
    auto racy = visplay::test::poisoned(threads * blocks), fixed = racy;
    SIMT_LAUNCH(neighbour_kernel<false>, blocks, threads, threads * 4, nullptr)
    (in.data(), racy.data());
    SIMT_LAUNCH(neighbour_kernel<true>, blocks, threads, threads * 4, nullptr)
    (in.data(), fixed.data());
    EXPECT_EQ(fixed, want) << "seed " << seed;
    bool equal = true;
    for (size_t i = 0; i < racy.size(); ++i) equal &= racy[i] == want[i];
    wrong_seeds += !equal;
    std::vector<uint32_t> racy_bits(racy.size());
    std::memcpy(racy_bits.data(), racy.data(), racy.size() * 4);
    distinct.insert(racy_bits);
    // Same seed, same result, bit for bit.
    auto again = visplay::test::poisoned(threads * blocks);
    SIMT_LAUNCH(neighbour_kernel<false>, blocks, threads, threads * 4, nullptr)
    (in.data(), again.data());
    EXPECT_EQ(std::memcmp(racy.data(), again.data(), racy.size() * 4), 0) << "seed " << seed;
  }
  EXPECT_GT(wrong_seeds, 0) << "the missing barrier was never exposed";
  EXPECT_GT(distinct.size(), 1u) << "the result of a race should depend on the seed";
}

TEST(SimtChecks, DynamicSharedMemoryStartsPoisoned) {
  auto out = random_floats(32, 13);
  SIMT_LAUNCH(read_before_write_kernel, 1, 32, 32 * 4, nullptr)(out.data());
  for (float v : out) EXPECT_TRUE(std::isnan(v));
}

TEST(SimtChecks, DivergentBarrierThrows) {
  std::vector<float> out(32, 0.0f);
  try {
    SIMT_LAUNCH(divergent_barrier_kernel, 1, 32, 0, nullptr)(out.data());
    FAIL() << "a divergent __syncthreads() must be reported";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("divergent __syncthreads()"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("divergent_barrier_kernel"), std::string::npos)
        << e.what();
  }
}

TEST(SimtChecks, WarpMaskMismatchThrows) {
  std::vector<float> out(32, 0.0f);
  EXPECT_THROW(SIMT_LAUNCH(mask_mismatch_kernel, 1, 32, 0, nullptr)(out.data()),
               std::runtime_error);
}

TEST(SimtChecks, InvalidLaunchThrows) {
  std::vector<float> out(32, 0.0f);
  EXPECT_THROW(SIMT_LAUNCH(read_before_write_kernel, 1, 2048, 0, nullptr)(out.data()),
               std::runtime_error);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SimtTest, ::testing::ValuesIn(visplay::test::sim_seeds()));

}  // namespace
