// CPU GEMM throughput (OpenBLAS through kernels::cpu::gemm), GFLOP/s.
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
    kernels::cpu::gemm<float>(false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * n * n * n, benchmark::Counter::kIsIterationInvariantRate,
                                                 benchmark::Counter::kIs1000);
}
BENCHMARK(BM_gemm_f32)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
