// The demo VLM end to end: one full training step (forward + backward +
// AdamW) and rollout generation with the KV cache (prompt prefix shared by its
// samples); the same rollout on a small random Qwen2.5-VL. bench/torch_reference.py times the same
// work in PyTorch eager.
//
//   vlm_bench [google benchmark flags]
//   vlm_bench --export DIR   writes DIR/model (checkpoint), DIR/batch.safetensors
//                            (the training batch, our logits and loss on it, the
//                            generation prompts) for the PyTorch reference, then exits.
//
// Counters: peak_alloc_MiB is the caching allocator's high-water mark during the
// timed work minus what was live before it (activations, gradients, cache);
// peak_rss_MiB is the process's peak resident set (VmHWM, reset before the
// timed loop) minus its resident set before it.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "bench/demo_setup.h"
#include "model/checkpoint.h"
#include "model/policy.h"
#include "model/qwen25vl.h"
#include "model/safetensors.h"
#include "runtime/allocator.h"
#include "runtime/ops.h"
#include "runtime/optim.h"

using namespace visplay;
using namespace visplay::bench;

namespace {

constexpr int64_t kTrainBatch = 16, kTrainSeq = 40;
constexpr int64_t kPrompts = 8, kSamples = 8, kNewTokens = 32;
constexpr uint64_t kWeightSeed = 7, kBatchSeed = 11, kPromptSeed = 13, kSampleSeed = 17;

SamplingOptions demo_sampling() {
  SamplingOptions o;
  o.temperature = 1.0;
  o.max_new_tokens = kNewTokens;  // no stop tokens: every sample runs the full length
  return o;
}

struct MemoryProbe {
  size_t alloc_before = 0, rss_before = 0;
  void start() {
    CachingAllocator& alloc = allocator_for(kCPU);
    alloc.reset_peak();
    alloc_before = alloc.stats().current_bytes;
    rss_before = rss_bytes();
    reset_peak_rss();
  }
  void report(benchmark::State& state) const {
    const double mib = 1 << 20;
    state.counters["peak_alloc_MiB"] =
        static_cast<double>(allocator_for(kCPU).stats().peak_bytes - alloc_before) / mib;
    state.counters["peak_rss_MiB"] =
        (static_cast<double>(peak_rss_bytes()) - static_cast<double>(rss_before)) / mib;
    state.counters["rss_total_MiB"] = static_cast<double>(peak_rss_bytes()) / mib;
  }
};

// zero_grad, loss, backward, AdamW update (the warm start's step minus clipping).
void BM_vlm_train_step(benchmark::State& state) {
  VLM model(demo_config());
  model.init_weights(kWeightSeed);
  model.params().set_requires_grad(true);
  std::vector<Tensor> params = model.params().tensors();
  AdamW optimizer(params, AdamWOptions{1e-4, 0.9, 0.95, 1e-8, 0.01});
  TrainBatch batch = demo_train_batch(model.config(), kTrainBatch, kTrainSeq, kBatchSeed);
  int64_t n_params = 0;
  for (const Tensor& p : params) n_params += p.numel();
  // One warm-up step so the optimizer state and the allocator cache exist.
  optimizer.zero_grad();
  demo_loss(model, batch).backward();
  optimizer.step();
  MemoryProbe probe;
  probe.start();
  for (auto _ : state) {
    optimizer.zero_grad();
    Tensor loss = demo_loss(model, batch);
    loss.backward();
    optimizer.step();
    benchmark::DoNotOptimize(loss.item());
  }
  probe.report(state);
  state.counters["params"] = static_cast<double>(n_params);
  state.counters["tokens/s"] = benchmark::Counter(static_cast<double>(kTrainBatch * kTrainSeq),
                                                  benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_vlm_train_step)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// prefill 8 prompts, share each prefix with its 8 samples, decode 32 tokens
// each. The samples read the prompt's cached prefix in place (the default),
// or with share_prefix false each copies it (the path before prefix sharing).
void run_generate(benchmark::State& state, bool share_prefix) {
  VLM model(demo_config());
  model.init_weights(kWeightSeed);
  NoGradGuard no_grad;
  std::vector<PromptInput> prompts = demo_prompts(model.config(), kPrompts, kPromptSeed);
  std::vector<uint64_t> seeds = derive_seeds(kSampleSeed, kPrompts * kSamples);
  SamplingOptions options = demo_sampling();
  options.share_prefix_kv = share_prefix;
  benchmark::DoNotOptimize(generate(model, prompts, kSamples, options, seeds).size());  // warm-up
  MemoryProbe probe;
  probe.start();
  int64_t generated = 0;
  for (auto _ : state) {
    std::vector<Generation> out = generate(model, prompts, kSamples, options, seeds);
    for (const Generation& g : out) generated += static_cast<int64_t>(g.tokens.size());
  }
  probe.report(state);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(generated), benchmark::Counter::kIsRate);
}
void BM_vlm_generate(benchmark::State& state) { run_generate(state, true); }
void BM_vlm_generate_private_prefix(benchmark::State& state) { run_generate(state, false); }
BENCHMARK(BM_vlm_generate)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();
BENCHMARK(BM_vlm_generate_private_prefix)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

// The same rollout on a small random Qwen2.5-VL through Qwen25VLPolicy::sample (the RL
// loop's sampler): 4 prompts of one 112x112 image (16 visual tokens) and 120 text tokens,
// 8 samples each, 32 new tokens; decoder 4 layers of width 256 (4 heads of 64, 2 kv heads),
// vocabulary 2048. Prefix shared in place vs copied per sample.
void run_qwen25vl_generate(benchmark::State& state, bool share_prefix) {
  constexpr int64_t kQwenPrompts = 4, kQwenSamples = 8, kText = 120;
  Qwen25VLConfig c;
  c.text.vocab_size = 2048;
  c.text.hidden_size = 256;
  c.text.intermediate_size = 512;
  c.text.num_hidden_layers = 4;
  c.text.num_attention_heads = 4;
  c.text.num_key_value_heads = 2;
  c.text.tie_word_embeddings = true;
  c.mrope_section = {8, 12, 12};
  c.vision.depth = 2;
  c.vision.hidden_size = 64;
  c.vision.intermediate_size = 128;
  c.vision.num_heads = 2;
  c.vision.out_hidden_size = 256;
  c.vision.fullatt_block_indexes = {1};
  c.image_token_id = 2000, c.video_token_id = 2001, c.vision_start_token_id = 2002;
  c.vision_end_token_id = 2003, c.eos_token_id = 2004;
  c.validate("bench");
  auto model = std::make_unique<Qwen25VL>(c);
  Rng rng(kWeightSeed);
  model->params().initialize(rng, 0.05);
  Qwen25VLImageConfig images;
  images.min_pixels = images.max_pixels = 112 * 112;
  Qwen25VLPolicy policy(std::move(model), images);
  std::vector<PromptInput> prompts;
  Rng data(kPromptSeed);
  for (int64_t p = 0; p < kQwenPrompts; ++p) {
    Image im;
    im.width = im.height = 112;
    im.rgb.resize(112 * 112 * 3);
    for (uint8_t& b : im.rgb) b = static_cast<uint8_t>(data.randint(0, 256));
    Tensor px = policy.prepare_image(im);
    std::vector<int64_t> ids = {c.vision_start_token_id};
    for (int64_t i = 0; i < policy.visual_tokens(px); ++i) ids.push_back(c.image_token_id);
    ids.push_back(c.vision_end_token_id);
    for (int64_t i = 0; i < kText; ++i) ids.push_back(data.randint(0, 1900));
    prompts.push_back({ids, px});
  }
  std::vector<int64_t> rows;
  for (int64_t p = 0; p < kQwenPrompts; ++p)
    for (int64_t j = 0; j < kQwenSamples; ++j) rows.push_back(p);
  std::vector<uint64_t> seeds = derive_seeds(kSampleSeed, kQwenPrompts * kQwenSamples);
  SamplingOptions options = demo_sampling();
  options.share_prefix_kv = share_prefix;
  benchmark::DoNotOptimize(policy.sample(prompts, rows, options, seeds).size());  // warm-up
  MemoryProbe probe;
  probe.start();
  int64_t generated = 0;
  for (auto _ : state) {
    std::vector<Generation> out = policy.sample(prompts, rows, options, seeds);
    for (const Generation& g : out) generated += static_cast<int64_t>(g.tokens.size());
  }
  probe.report(state);
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(generated), benchmark::Counter::kIsRate);
}

void BM_qwen25vl_generate(benchmark::State& state) { run_qwen25vl_generate(state, true); }
void BM_qwen25vl_generate_private_prefix(benchmark::State& state) {
  run_qwen25vl_generate(state, false);
}
BENCHMARK(BM_qwen25vl_generate)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();
BENCHMARK(BM_qwen25vl_generate_private_prefix)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime();

// Everything the PyTorch reference needs to rebuild the model and check it.
void export_for_reference(const std::string& dir) {
  std::filesystem::create_directories(dir);
  VLM model(demo_config());
  model.init_weights(kWeightSeed);
  save_checkpoint(dir + "/model", model);
  TrainBatch batch = demo_train_batch(model.config(), kTrainBatch, kTrainSeq, kBatchSeed);
  // Gradients of the loss for every parameter, so the reference can check the backward too.
  {
    model.params().set_requires_grad(true);
    demo_loss(model, batch).backward();
    std::vector<std::pair<std::string, Tensor>> grads;
    for (const std::string& name : model.params().names()) {
      grads.push_back({name, model.params().get(name).grad()});
    }
    save_safetensors(dir + "/grads.safetensors", grads);
  }
  model.params().set_requires_grad(false);
  NoGradGuard no_grad;
  Tensor logits = model.logits(batch.input);
  Tensor loss = demo_loss(model, batch);
  std::vector<PromptInput> prompts = demo_prompts(model.config(), kPrompts, kPromptSeed);
  int64_t longest = 0;
  for (const PromptInput& p : prompts) longest = std::max<int64_t>(longest, p.ids.size());
  std::vector<int64_t> ids(kPrompts * longest, 0), mask(kPrompts * longest, 0);
  std::vector<Tensor> pixels;
  for (int64_t p = 0; p < kPrompts; ++p) {
    const int64_t n = static_cast<int64_t>(prompts[p].ids.size()), pad = longest - n;
    for (int64_t i = 0; i < n; ++i) {
      ids[p * longest + pad + i] = prompts[p].ids[i];
      mask[p * longest + pad + i] = 1;
    }
    pixels.push_back(prompts[p].pixels);
  }
  save_safetensors(dir + "/batch.safetensors",
                   {{"input_ids", batch.input.input_ids},
                    {"attention_mask", batch.input.attention_mask},
                    {"pixels", batch.input.pixels},
                    {"targets", batch.targets},
                    {"loss_mask", batch.loss_mask},
                    {"logits", logits},
                    {"loss", loss.reshape({1})},
                    {"gen_input_ids", Tensor::from_vector(ids, {kPrompts, longest})},
                    {"gen_attention_mask", Tensor::from_vector(mask, {kPrompts, longest})},
                    {"gen_pixels", concat(pixels, 0)}},
                   {{"train_batch", std::to_string(kTrainBatch)},
                    {"train_seq", std::to_string(kTrainSeq)},
                    {"samples_per_prompt", std::to_string(kSamples)},
                    {"max_new_tokens", std::to_string(kNewTokens)},
                    {"adamw", "lr=1e-4 betas=(0.9,0.95) eps=1e-8 weight_decay=0.01"}});
  std::printf("wrote %s/model, %s/batch.safetensors, %s/grads.safetensors (loss %.6f)\n",
              dir.c_str(), dir.c_str(), dir.c_str(), loss.item());
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--export") == 0) {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "vlm_bench: --export needs a folder\n");
        return 1;
      }
      try {
        export_for_reference(argv[i + 1]);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "vlm_bench: %s\n", e.what());
        return 1;
      }
      return 0;
    }
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
