// Each CPU op the model uses, through the runtime (which calls kernels/cpu),
// forward only under NoGradGuard, at two sizes: "demo" is the shape it has in
// the demo VLM's training step (16 x 40 tokens, width 128, vocab 277), "large"
// a Qwen2-0.5B-like shape (2 x 512 tokens, width 896). GEMM and attention at
// larger sizes are in gemm_bench and attention_bench. Counter GB/s counts the
// bytes of the inputs read and the output written once.
#include <benchmark/benchmark.h>

#include <functional>
#include <string>

#include "kernels/cpu/adamw.h"
#include "runtime/ops.h"
#include "runtime/random.h"

using namespace visplay;

namespace {

struct Size {
  int64_t batch, seq, width, ffn, heads, kv_heads, vocab;
};
constexpr Size kDemo{16, 40, 128, 320, 4, 2, 277};
constexpr Size kLarge{2, 512, 896, 4864, 14, 2, 151936};
const Size& size_of(const benchmark::State& s) { return s.range(0) == 0 ? kDemo : kLarge; }

void report_bytes(benchmark::State& state, double bytes) {
  state.counters["GB/s"] =
      benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}
void report_flops(benchmark::State& state, double flops) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_linear(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(1);
  NoGradGuard ng;
  Tensor x = randn({z.batch * z.seq, z.width}, rng), w = randn({z.ffn, z.width}, rng);
  for (auto _ : state) benchmark::DoNotOptimize(linear(x, w).data<float>());
  report_flops(state, 2.0 * z.batch * z.seq * z.width * z.ffn);
}

void BM_rmsnorm(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(2);
  NoGradGuard ng;
  Tensor x = randn({z.batch, z.seq, z.width}, rng), w = randn({z.width}, rng);
  for (auto _ : state) benchmark::DoNotOptimize(rmsnorm(x, w, 1e-6).data<float>());
  report_bytes(state, 8.0 * x.numel());
}

void BM_layernorm(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(3);
  NoGradGuard ng;
  Tensor x = randn({z.batch, z.seq, z.width}, rng), w = randn({z.width}, rng),
         b = randn({z.width}, rng);
  for (auto _ : state) benchmark::DoNotOptimize(layernorm(x, w, b, 1e-6).data<float>());
  report_bytes(state, 8.0 * x.numel());
}

void BM_rope(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(4);
  NoGradGuard ng;
  Tensor x = randn({z.batch, z.seq, z.heads, z.width / z.heads}, rng);
  Tensor pos = Tensor::arange(z.seq);
  for (auto _ : state) benchmark::DoNotOptimize(rope(x, pos, 10000.0).data<float>());
  report_bytes(state, 8.0 * x.numel());
}

void BM_log_softmax(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(5);
  NoGradGuard ng;
  // The large size is 64 rows of the full vocabulary (a decode step's logits).
  Tensor x =
      state.range(0) == 0 ? randn({z.batch * z.seq, z.vocab}, rng) : randn({64, z.vocab}, rng);
  for (auto _ : state) benchmark::DoNotOptimize(log_softmax(x).data<float>());
  report_bytes(state, 8.0 * x.numel());
}

void BM_gelu(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(6);
  NoGradGuard ng;
  Tensor x = randn({z.batch * z.seq, z.ffn}, rng);
  for (auto _ : state) benchmark::DoNotOptimize(gelu(x).data<float>());
  report_bytes(state, 8.0 * x.numel());
}

void BM_swiglu(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(7);
  NoGradGuard ng;
  Tensor g = randn({z.batch * z.seq, z.ffn}, rng), u = randn({z.batch * z.seq, z.ffn}, rng);
  for (auto _ : state) benchmark::DoNotOptimize(swiglu(g, u).data<float>());
  report_bytes(state, 12.0 * g.numel());
}

void BM_embedding(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(8);
  NoGradGuard ng;
  Tensor table = randn({z.vocab, z.width}, rng);
  std::vector<int64_t> ids(z.batch * z.seq);
  for (auto& i : ids) i = rng.randint(0, z.vocab);
  Tensor idx = Tensor::from_vector(ids, {z.batch, z.seq});
  for (auto _ : state) benchmark::DoNotOptimize(embedding(table, idx).data<float>());
  report_bytes(state, 8.0 * z.batch * z.seq * z.width);
}

void BM_attention_causal(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(9);
  NoGradGuard ng;
  int64_t hd = z.width / z.heads;
  Tensor q = randn({z.batch, z.seq, z.heads, hd}, rng);
  Tensor k = randn({z.batch, z.seq, z.kv_heads, hd}, rng),
         v = randn({z.batch, z.seq, z.kv_heads, hd}, rng);
  for (auto _ : state) benchmark::DoNotOptimize(attention(q, k, v).data<float>());
  report_flops(state, 2.0 * z.batch * z.heads * z.seq * z.seq * hd);  // causal half of 4*S^2*D
}

void BM_cross_entropy(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(10);
  NoGradGuard ng;
  int64_t rows = state.range(0) == 0 ? z.batch * z.seq : 64;
  Tensor logits = randn({rows, z.vocab}, rng);
  std::vector<int64_t> t(rows);
  for (auto& i : t) i = rng.randint(0, z.vocab);
  Tensor targets = Tensor::from_vector(t, {rows});
  for (auto _ : state) benchmark::DoNotOptimize(cross_entropy(logits, targets).item());
  report_bytes(state, 4.0 * logits.numel());
}

void BM_token_logprobs(benchmark::State& state) {
  const Size& z = size_of(state);
  Rng rng(11);
  NoGradGuard ng;
  int64_t tokens = z.batch * z.seq;
  Tensor h = randn({tokens, z.width}, rng), w = randn({z.vocab, z.width}, rng, 0.02);
  std::vector<int64_t> t(tokens);
  for (auto& i : t) i = rng.randint(0, z.vocab);
  Tensor targets = Tensor::from_vector(t, {tokens});
  for (auto _ : state)
    benchmark::DoNotOptimize(token_logprobs(h, w, targets).logprobs.data<float>());
  report_flops(state, 2.0 * tokens * z.vocab * z.width);
}

void BM_patch_embed(benchmark::State& state) {
  // demo: 16 images 64x64, patch 8, width 96; large: 4 images 448x448, patch 14, width 1280.
  bool demo = state.range(0) == 0;
  int64_t n = demo ? 16 : 4, hw = demo ? 64 : 448, p = demo ? 8 : 14, e = demo ? 96 : 1280;
  int64_t patches = (hw / p) * (hw / p);
  Rng rng(12);
  NoGradGuard ng;
  Tensor img = randn({n, 3, hw, hw}, rng), w = randn({e, 3 * p * p}, rng), b = randn({e}, rng),
         pos = randn({patches, e}, rng);
  for (auto _ : state) benchmark::DoNotOptimize(patch_embed(img, w, b, pos, p).data<float>());
  report_flops(state, 2.0 * n * patches * 3 * p * p * e);
}

void BM_adamw_step(benchmark::State& state) {
  // demo: the demo VLM's ~1.2M parameters; large: 50M parameters.
  int64_t n = state.range(0) == 0 ? 1200000 : 50000000;
  Rng rng(13);
  std::vector<float> param(n), grad(n), m(n, 0.0f), v(n, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    param[i] = static_cast<float>(rng.uniform(-1, 1));
    grad[i] = static_cast<float>(rng.uniform(-1, 1));
  }
  int64_t step = 0;
  for (auto _ : state) {
    kernels::cpu::adamw_step<float>(param.data(), grad.data(), m.data(), v.data(), n, 1e-4, 0.9,
                                    0.95, 1e-8, 0.01, ++step);
    benchmark::DoNotOptimize(param.data());
  }
  report_bytes(state, 28.0 * n);  // read p, g, m, v; write p, m, v
}

}  // namespace

#define VISPLAY_OP_BENCH(fn) \
  BENCHMARK(fn)->ArgName("large")->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime()
VISPLAY_OP_BENCH(BM_linear);
VISPLAY_OP_BENCH(BM_rmsnorm);
VISPLAY_OP_BENCH(BM_layernorm);
VISPLAY_OP_BENCH(BM_rope);
VISPLAY_OP_BENCH(BM_log_softmax);
VISPLAY_OP_BENCH(BM_gelu);
VISPLAY_OP_BENCH(BM_swiglu);
VISPLAY_OP_BENCH(BM_embedding);
VISPLAY_OP_BENCH(BM_attention_causal);
VISPLAY_OP_BENCH(BM_cross_entropy);
VISPLAY_OP_BENCH(BM_token_logprobs);
VISPLAY_OP_BENCH(BM_patch_embed);
VISPLAY_OP_BENCH(BM_adamw_step);

BENCHMARK_MAIN();
