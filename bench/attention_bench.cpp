// CPU attention: the tiled online-softmax op against the naive composition
// (matmul -> softmax -> matmul, which holds an S x S score matrix per head).
// Reports GFLOP/s and the peak bytes the caching allocator saw during the
// call: the tiled op stays flat in S, the naive one grows as S^2.
#include <benchmark/benchmark.h>

#include <cmath>

#include "runtime/allocator.h"
#include "runtime/ops.h"
#include "runtime/random.h"

using namespace visplay;

namespace {
constexpr int64_t kB = 1, kH = 4, kD = 64;

Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v) {
  // [B, S, H, D] -> [B, H, S, D]
  Tensor qh = q.transpose(1, 2), kh = k.transpose(1, 2), vh = v.transpose(1, 2);
  Tensor scores = scale(matmul(qh, kh.transpose(-1, -2)), 1.0 / std::sqrt(double(kD)));
  return matmul(softmax(scores), vh);  // bidirectional: the S x S matrix is the point
}

template <bool Tiled>
void BM_attention(benchmark::State& state) {
  int64_t S = state.range(0);
  Rng rng(7);
  Tensor q = randn({kB, S, kH, kD}, rng), k = randn({kB, S, kH, kD}, rng), v = randn({kB, S, kH, kD}, rng);
  NoGradGuard no_grad;
  CachingAllocator& alloc = allocator_for(kCPU);
  size_t peak = 0;
  for (auto _ : state) {
    alloc.empty_cache();
    alloc.reset_peak();
    size_t before = alloc.stats().current_bytes;
    Tensor out;
    if constexpr (Tiled) {
      AttentionOptions opt;
      opt.causal = false;
      out = attention(q, k, v, opt);
    } else {
      out = naive_attention(q, k, v);
    }
    benchmark::DoNotOptimize(out.raw_data());
    peak = alloc.stats().peak_bytes - before;
  }
  double flops = 4.0 * kB * kH * S * S * kD;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["peak_MiB"] = static_cast<double>(peak) / (1 << 20);
}
}  // namespace

BENCHMARK(BM_attention<true>)->Name("attention_tiled")->Arg(512)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_attention<false>)->Name("attention_naive")->Arg(512)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->Iterations(2);

BENCHMARK_MAIN();
