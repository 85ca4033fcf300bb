// The log-prob memory story: log p(target) per token at a Qwen2 vocabulary
// (V = 151,936) over T = 4,096 tokens of width D = 896 (Qwen2-0.5B), computed
// (a) by the fused LM-head op token_logprobs, which streams the vocabulary in
// chunks with an online log-sum-exp, and (b) by materialising the logits
// [T, V], log_softmax over them and a gather. Forward only, no autograd.
// peak_alloc_MiB: the caching allocator's high-water mark during the call minus
// what was live before it (hidden states and the head weight are excluded);
// it does not see a kernel's own scratch (std::vector), so peak_rss_MiB gives
// the process's peak resident set during the call (VmHWM, reset just before,
// after the allocator cache was emptied) minus the resident set before it.
#include <benchmark/benchmark.h>

#include "bench/demo_setup.h"
#include "runtime/allocator.h"
#include "runtime/ops.h"
#include "runtime/random.h"

using namespace visplay;

namespace {

constexpr int64_t kVocab = 151936, kTokens = 4096, kWidth = 896;

struct LogprobInputs {
  Tensor hidden, head, targets;
  LogprobInputs() {
    Rng rng(3);
    hidden = randn({kTokens, kWidth}, rng);
    head = randn({kVocab, kWidth}, rng, 0.02);
    std::vector<int64_t> t(kTokens);
    for (auto& x : t) x = rng.randint(0, kVocab);
    targets = Tensor::from_vector(t, {kTokens});
  }
};

const LogprobInputs& inputs() {
  static LogprobInputs in;
  return in;
}

template <class Fn>
void run_with_peak(benchmark::State& state, Fn fn) {
  NoGradGuard no_grad;
  const LogprobInputs& in = inputs();
  CachingAllocator& alloc = allocator_for(kCPU);
  size_t peak = 0;
  double peak_rss = 0;
  for (auto _ : state) {
    alloc.empty_cache();
    alloc.reset_peak();
    size_t before = alloc.stats().current_bytes;
    double rss_before = static_cast<double>(bench::rss_bytes());
    bench::reset_peak_rss();
    Tensor out = fn(in);
    benchmark::DoNotOptimize(out.data<float>());
    peak = std::max(peak, alloc.stats().peak_bytes - before);
    peak_rss = std::max(peak_rss, static_cast<double>(bench::peak_rss_bytes()) - rss_before);
  }
  state.counters["peak_alloc_MiB"] = static_cast<double>(peak) / (1 << 20);
  state.counters["peak_rss_MiB"] = peak_rss / (1 << 20);
  state.counters["GFLOP/s"] = benchmark::Counter(2e-9 * kTokens * kVocab * kWidth,
                                                 benchmark::Counter::kIsIterationInvariantRate);
}

void BM_logprob_fused(benchmark::State& state) {
  run_with_peak(state, [](const LogprobInputs& in) {
    return token_logprobs(in.hidden, in.head, in.targets).logprobs;
  });
}

void BM_logprob_full_log_softmax(benchmark::State& state) {
  run_with_peak(state, [](const LogprobInputs& in) {
    Tensor logp = log_softmax(linear(in.hidden, in.head));  // [T, V] twice over
    return gather(logp, 1, in.targets.reshape({kTokens, 1}));
  });
}

}  // namespace

BENCHMARK(BM_logprob_fused)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1)
    ->Repetitions(3);
BENCHMARK(BM_logprob_full_log_softmax)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->Iterations(1)
    ->Repetitions(3);

BENCHMARK_MAIN();
