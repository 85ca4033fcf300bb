// CPU GEMM throughput through kernels::cpu::gemm (the packed kernel up to
// kPackedGemmMaxWork, OpenBLAS above), GFLOP/s: square sizes, and the demo
// VLM training step's linear-layer products.
#include <benchmark/benchmark.h>

#include <vector>

#include "kernels/cpu/gemm.h"
#include "runtime/random.h"

using namespace visplay;

static void BM_gemm_f32(benchmark::State& state) {
  int64_t n = state.range(0);
  Rng rng(1);
  std::vector<float> a(n * n), b(n * n), c(n * n);
  for (auto& x : a) x = static_cast<float>(rng.uniform(-1, 1));
  for (auto& x : b) x = static_cast<float>(rng.uniform(-1, 1));
  for (auto _ : state) {
    kernels::cpu::gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(),
                              n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_gemm_f32)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond);

// The demo VLM's linear layers (rows x out x in): forward x W^T (nt), input
// gradient dY W (nn) and weight gradient dY^T X (tn), at the training step's
// 16 x 40 tokens (640 decoder rows, 1024 ViT patches, 256 merged tokens).
static void BM_gemm_f32_step(benchmark::State& state) {
  const int64_t rows = state.range(0), out = state.range(1), in = state.range(2);
  const int64_t kind = state.range(3);  // 0 forward, 1 input gradient, 2 weight gradient
  const int64_t M = kind == 2 ? out : rows, N = kind == 0 ? out : in,
                K = kind == 0   ? in
                    : kind == 1 ? out
                                : rows;
  const bool ta = kind == 2, tb = kind == 0;
  Rng rng(2);
  std::vector<float> a(M * K), b(K * N), c(M * N);
  for (auto& x : a) x = static_cast<float>(rng.uniform(-1, 1));
  for (auto& x : b) x = static_cast<float>(rng.uniform(-1, 1));
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  for (auto _ : state) {
    kernels::cpu::gemm<float>(ta, tb, M, N, K, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, c.data(),
                              N);
    benchmark::DoNotOptimize(c.data());
  }
  state.SetLabel(kind == 0 ? "fwd" : kind == 1 ? "dX" : "dW");
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * M * N * K, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
static void step_shapes(benchmark::internal::Benchmark* b) {
  const int64_t layers[][3] = {{1024, 96, 96},  {1024, 192, 96}, {1024, 96, 192}, {256, 256, 384},
                               {256, 128, 256}, {640, 128, 128}, {640, 64, 128},  {640, 320, 128},
                               {640, 128, 320}, {640, 277, 128}};
  for (const auto& l : layers)
    for (int64_t kind = 0; kind < 3; ++kind) b->Args({l[0], l[1], l[2], kind});
}
BENCHMARK(BM_gemm_f32_step)->Apply(step_shapes)->Unit(benchmark::kMicrosecond);

BENCHMARK_MAIN();
