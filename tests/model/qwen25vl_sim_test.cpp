// The Qwen2.5-VL vision tower on the sim backend (every op through the CUDA kernel
// sources on the SIMT emulator) against the same tower on cpu. The tiny parity
// fixture's ViT has head dim 16, which the flash kernel does not take, so this test
// widens it to the released models' head dim 80 (2 heads x 80) with random weights:
// layer 0 is window attention (a 64-patch and a 32-patch window: a padded batch),
// layer 1 full attention, then the gelu_erf patch merger. The last test runs the whole
// model (decoder widened to head dim 64) for its logits; the next generates with the KV
// cache on sim through the policy interface (the RL loop's sampler).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <utility>

#include "model/policy.h"
#include "model/qwen25vl.h"
#include "runtime/random.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

const std::string kConfig =
    std::string(VISPLAY_SOURCE_DIR) + "/tests/model/fixtures/qwen25vl_tiny/config.json";

// max |a - b| / max |b| over the tensor.
double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!std::isfinite(a[i])) return INFINITY;
    err = std::max(err, std::fabs(a[i] - b[i]));
    scale = std::max(scale, std::fabs(b[i]));
  }
  return err / scale;
}

TEST(Qwen25VLSim, VisionTowerMatchesCpuAtHeadDim80) {
  Qwen25VLConfig c = load_qwen25vl_config(kConfig);
  c.vision.hidden_size = 160;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 96;
  ASSERT_EQ(c.vision.head_dim(), 80);
  ASSERT_EQ(c.vision.depth, 2);
  ASSERT_TRUE(c.vision.full_attention(1) && !c.vision.full_attention(0));
  Qwen25VL cpu_model(c), sim_model(c);
  Rng rng(5);
  cpu_model.params().initialize(rng, 0.05);  // wider than 0.02: softmaxes far from flat
  for (const std::string& name : cpu_model.params().names())
    sim_model.params().set(name, cpu_model.params().get(name).detach().to(kSim));
  // One image of 8 x 12 patches: 112-pixel windows are 8 x 8 patches, so 64 + 32 rows.
  std::vector<std::array<int64_t, 3>> grids = {{1, 8, 12}};
  Tensor pixels = test::random_tensor({96, c.vision.patch_dim()}, 6, DType::f32, -2, 2);
  Tensor cpu_out, sim_out;
  {
    NoGradGuard g;
    cpu_out = cpu_model.encode_images(pixels, grids);
    sim_out = sim_model.encode_images(pixels.to(kSim), grids);
  }
  ASSERT_EQ(sim_out.device(), kSim);
  ASSERT_EQ(sim_out.shape(), cpu_out.shape());
  double rel = relative_error(sim_out.to_vector<double>(), cpu_out.to_vector<double>());
  RecordProperty("vision_sim_relative_error", std::to_string(rel));
  std::printf("vision tower sim vs cpu: max relative error %.3g\n", rel);
  // The device attention rounds q, k, v and P to bf16 (tensor cores), so 1e-4 is not
  // guaranteed; the bound leaves 10x margin over the measured error.
  // Measured 9.9e-5; a head-dim-80 bug that drops the last 16 dims of the scores gives
  // 1e-2. (The tanh GELU in the merger gives only 2e-4, within this bound: the kernel
  // test LayersSim.GeluErfForwardBackward catches that one.)
  EXPECT_LT(rel, 1e-3);
}

// The backward of the same tower (the patch merger's gelu_erf and the head-dim-80
// attention backward included): gradients of sum(out * w) for the weights of both
// attention layers, the merger and the patch embedding agree with cpu.
TEST(Qwen25VLSim, VisionTowerGradientsMatchCpuAtHeadDim80) {
  Qwen25VLConfig c = load_qwen25vl_config(kConfig);
  c.vision.hidden_size = 160;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 96;
  Qwen25VL cpu_model(c), sim_model(c);
  Rng rng(7);
  cpu_model.params().initialize(rng, 0.05);
  for (const std::string& name : cpu_model.params().names())
    sim_model.params().set(name, cpu_model.params().get(name).detach().to(kSim));
  cpu_model.params().set_requires_grad(true);
  sim_model.params().set_requires_grad(true);
  std::vector<std::array<int64_t, 3>> grids = {{1, 8, 12}};
  Tensor pixels = test::random_tensor({96, c.vision.patch_dim()}, 8, DType::f32, -2, 2);
  Tensor cpu_out = cpu_model.encode_images(pixels, grids);
  Tensor sim_out = sim_model.encode_images(pixels.to(kSim), grids);
  Tensor w = test::random_tensor(cpu_out.shape(), 9, DType::f32);
  sum(mul(cpu_out, w)).backward();
  sum(mul(sim_out, w.to(kSim))).backward();
  // Bounds: 10x the measured errors. Weights behind the bf16 attention backward measured
  // <= 2.7e-3; the merger and patch embedding (f32 paths, gelu_erf) <= 1.8e-4. (The
  // tanh GELU derivative in place of gelu_erf's gives only 6e-4 here, hidden by the bf16
  // attention noise; LayersSim.GeluErfForwardBackward catches it.)
  const std::pair<const char*, double> checks[] = {
      {"visual.blocks.0.attn.qkv.weight", 2e-2},  {"visual.blocks.1.attn.qkv.weight", 2e-2},
      {"visual.blocks.0.attn.proj.weight", 2e-2}, {"visual.merger.mlp.0.weight", 2e-3},
      {"visual.merger.mlp.0.bias", 2e-3},         {"visual.patch_embed.proj.weight", 2e-3}};
  for (auto [name, bound] : checks) {
    Tensor gs = sim_model.params().get(name).grad(), gc = cpu_model.params().get(name).grad();
    ASSERT_TRUE(gs.defined() && gc.defined()) << name;
    EXPECT_EQ(gs.device(), kSim) << name;
    double rel = relative_error(gs.to_vector<double>(), gc.to_vector<double>());
    std::printf("%s gradient sim vs cpu: max relative error %.3g\n", name, rel);
    EXPECT_LT(rel, bound) << name;
  }
}

// The whole model's logits (vision tower, visual tokens spliced into the embeddings,
// M-RoPE decoder with causal GQA attention at head dim 64) on sim vs cpu, for a batch of
// two prompts with the image, the second left-padded.
TEST(Qwen25VLSim, LogitsMatchCpu) {
  Qwen25VLConfig c = load_qwen25vl_config(kConfig);
  c.vision.hidden_size = 160;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 96;
  c.vision.out_hidden_size = 128;
  c.text.hidden_size = 128;
  c.text.num_attention_heads = 2;
  c.text.num_key_value_heads = 1;
  c.mrope_section = {8, 12, 12};
  ASSERT_EQ(c.text.head_dim(), 64);
  Qwen25VL cpu_model(c), sim_model(c);
  Rng rng(11);
  cpu_model.params().initialize(rng, 0.05);
  for (const std::string& name : cpu_model.params().names())
    sim_model.params().set(name, cpu_model.params().get(name).detach().to(kSim));
  std::vector<std::array<int64_t, 3>> grids = {{1, 8, 12}, {1, 8, 12}};  // 24 tokens each
  Tensor pixels = test::random_tensor({192, c.vision.patch_dim()}, 12, DType::f32, -2, 2);
  std::vector<int64_t> row = {3, 4, c.vision_start_token_id};
  for (int i = 0; i < 24; ++i) row.push_back(c.image_token_id);
  for (int64_t x : {c.vision_end_token_id, int64_t{5}, int64_t{6}, int64_t{7}}) row.push_back(x);
  const int64_t S = static_cast<int64_t>(row.size()) + 3;
  std::vector<int64_t> ids(2 * S, 0);
  std::vector<int32_t> mask(2 * S, 0);
  for (int64_t s = 0; s < S - 3; ++s) ids[s] = row[s], mask[s] = 1;  // row 0: right-padded
  for (int64_t s = 0; s < S - 3; ++s) ids[S + 3 + s] = row[s], mask[S + 3 + s] = 1;  // left
  for (int64_t s = S - 3; s < S; ++s) ids[s] = 8;  // right padding tokens
  Tensor input_ids = Tensor::from_vector(ids, {2, S});
  Tensor attention_mask = Tensor::from_vector(mask, {2, S}, DType::i32);
  Tensor cpu_logits, sim_logits;
  {
    NoGradGuard g;
    cpu_logits = cpu_model.logits(input_ids, attention_mask, pixels, grids);
    sim_logits = sim_model.logits(input_ids, attention_mask, pixels.to(kSim), grids);
  }
  ASSERT_EQ(sim_logits.device(), kSim);
  ASSERT_EQ(sim_logits.shape(), cpu_logits.shape());
  // Only positions with a real token: a padding row's logits are unspecified.
  std::vector<double> a = sim_logits.to_vector<double>(), b = cpu_logits.to_vector<double>(), got,
                      want;
  int64_t V = cpu_logits.size(-1);
  for (int64_t r = 0; r < 2 * S; ++r)
    if (mask[r])
      for (int64_t v = 0; v < V; ++v) got.push_back(a[r * V + v]), want.push_back(b[r * V + v]);
  double rel = relative_error(got, want);
  std::printf("logits sim vs cpu: max relative error %.3g\n", rel);
  // Measured 2.2e-3 (bf16 attention in both towers); an attention kernel that ignores the
  // left padding's key start gives 1.1.
  EXPECT_LT(rel, 1e-2);
}

// Greedy generation through Qwen25VLPolicy::sample with the weights on sim (and the
// training forward's log-probs of the samples there): the prompt's
// cache is built on sim (bf16-free f32 buffers, key mask on the host), the samples read it in
// place (KVCache::share_prefix, the device decode kernel), and a stop token makes the loop
// drop finished rows mid-generation (a device copy of their own slots).
// Two prompts with images of the same size, one left-padded, three samples. The tokens must
// equal cpu's (which reads the prefix in place) and the log-probs agree within the bf16
// attention's error.
TEST(Qwen25VLSim, GreedyGenerationMatchesCpu) {
  Qwen25VLConfig c = load_qwen25vl_config(kConfig);
  c.vision.hidden_size = 160;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 96;
  c.vision.out_hidden_size = 128;
  c.text.hidden_size = 128;
  c.text.num_attention_heads = 2;
  c.text.num_key_value_heads = 1;
  c.mrope_section = {8, 12, 12};
  auto cpu_model = std::make_unique<Qwen25VL>(c);
  auto sim_model = std::make_unique<Qwen25VL>(c);
  Rng rng(13);
  cpu_model->params().initialize(rng, 0.05);
  for (const std::string& name : cpu_model->params().names())
    sim_model->params().set(name, cpu_model->params().get(name).detach().to(kSim));
  Qwen25VLPolicy cpu(std::move(cpu_model), Qwen25VLImageConfig()),
      sim(std::move(sim_model), Qwen25VLImageConfig());
  // Images of 4 x 8 patches (8 visual tokens), prepared as [t, h, w, patch_dim].
  std::vector<PromptInput> prompts;
  for (int p = 0; p < 2; ++p) {
    std::vector<int64_t> ids = {3, 4, c.vision_start_token_id};
    if (p == 1) ids.insert(ids.begin(), {9, 10, 11});  // the other prompt is left-padded
    for (int i = 0; i < 8; ++i) ids.push_back(c.image_token_id);
    for (int64_t x : {c.vision_end_token_id, int64_t{5}, int64_t{6}}) ids.push_back(x);
    Tensor px = test::random_tensor({1, 4, 8, c.vision.patch_dim()}, 20 + p, DType::f32, -2, 2);
    prompts.push_back({ids, px});
  }
  ASSERT_EQ(cpu.visual_tokens(prompts[0].pixels), 8);
  const std::vector<int64_t> rows = {0, 0, 1};
  const std::vector<uint64_t> seeds = {1, 2, 3};
  SamplingOptions opt;
  opt.greedy = true;
  opt.max_new_tokens = 4;
  double err = 0;
  auto compare = [&](const std::vector<Generation>& got, const std::vector<Generation>& want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_EQ(got[i].tokens, want[i].tokens) << "sequence " << i;
      ASSERT_EQ(got[i].logprobs.size(), want[i].logprobs.size());
      for (size_t k = 0; k < want[i].logprobs.size(); ++k)
        err = std::max(err, std::fabs(double(got[i].logprobs[k]) - want[i].logprobs[k]));
    }
  };
  std::vector<Generation> want = cpu.sample(prompts, rows, opt, seeds);
  compare(sim.sample(prompts, rows, opt, seeds), want);
  ASSERT_EQ(want[0].tokens.size(), 4u);
  // Prompt 0's first token stops its rows: 2 of 3 done, so the sim cache is compacted (a
  // device copy) before the remaining row decodes on.
  opt.stop_tokens = {want[0].tokens[0]};
  ASSERT_EQ(std::count(want[2].tokens.begin(), want[2].tokens.end(), want[0].tokens[0]), 0);
  std::vector<Generation> stopped = cpu.sample(prompts, rows, opt, seeds);
  EXPECT_EQ(stopped[0].tokens.size(), 1u);
  EXPECT_EQ(stopped[2].tokens.size(), 4u);
  compare(sim.sample(prompts, rows, opt, seeds), stopped);
  // The training forward on sim (Qwen25VLPolicy::completion_logprobs) gives the samples (the
  // same tokens on both backends) the cpu sampler's log-probs.
  std::vector<std::vector<int64_t>> completions;
  for (const Generation& g : want) completions.push_back(g.tokens);
  TokenLogprobs scored = sim.completion_logprobs(prompts, rows, completions);
  ASSERT_EQ(scored.logprobs.device(), kSim);
  std::vector<float> lp = scored.logprobs.to_vector<float>();
  const size_t L = static_cast<size_t>(scored.logprobs.size(1));
  double score_err = 0;
  for (size_t i = 0; i < want.size(); ++i)
    for (size_t k = 0; k < want[i].logprobs.size(); ++k)
      score_err = std::max(score_err, std::fabs(double(lp[i * L + k]) - want[i].logprobs[k]));
  std::printf("sim training forward vs cpu sampler: max log-prob difference %.3g\n", score_err);
  EXPECT_LT(score_err, 1e-2);
  std::printf("greedy generation sim vs cpu: max log-prob difference %.3g\n", err);
  // Measured 6.9e-4 (the prefill's bf16 flash attention; the decode step is f32), the bound
  // of the logits test above.
  EXPECT_LT(err, 1e-2);
}

// The tiny config widened as above (decoder head dim 64), random weights, on sim.
std::unique_ptr<Qwen25VL> sim_decoder_model(uint64_t seed) {
  Qwen25VLConfig c = load_qwen25vl_config(kConfig);
  c.vision.hidden_size = 160;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 96;
  c.vision.out_hidden_size = 128;
  c.text.hidden_size = 128;
  c.text.num_attention_heads = 2;
  c.text.num_key_value_heads = 1;
  c.mrope_section = {8, 12, 12};
  auto model = std::make_unique<Qwen25VL>(c);
  Rng rng(seed);
  model->params().initialize(rng, 0.05);
  for (const std::string& name : model->params().names())
    model->params().set(name, model->params().get(name).detach().to(kSim));
  return model;
}

// The KV cache on sim: rows reading their prompt's prefix in place (KVCache::share_prefix,
// the device decode kernel) against rows holding private copies (select_rows, the same
// kernel over the copied slots): the logits of every decode step are bit for bit the same
// (the kernel tiles keys by their private-copy index). Rows of one prompt are not adjacent,
// one prompt is left-padded. Were the shared cache to go through the copying fallback (bf16
// flash attention), the logits would differ at the bf16 level.
TEST(Qwen25VLSim, SharedPrefixCacheDecodesBitIdenticalToPrivateCopies) {
  auto model = sim_decoder_model(17);
  const Qwen25VLConfig& c = model->config();
  NoGradGuard no_grad;
  // Two text prompts, the second left-padded by 3.
  const int64_t S = 11;
  std::vector<int64_t> ids(2 * S);
  std::vector<int32_t> mask(2 * S, 1);
  for (int64_t i = 0; i < 2 * S; ++i) ids[i] = 3 + (i * 7) % 40;
  for (int64_t i = 0; i < 3; ++i) mask[S + i] = 0;
  KVCache prompt;
  Tensor first = model->prefill(Tensor::from_vector(ids, {2, S}), Tensor::from_vector(mask, {2, S}),
                                Tensor(), {}, S, &prompt);
  ASSERT_EQ(prompt.k[0].device(), kSim);
  const std::vector<int64_t> rows = {1, 0, 1, 0, 1};
  const int64_t steps = 5;
  KVCache shared = prompt.share_prefix(rows, steps);
  KVCache copies = prompt.select_rows(rows, prompt.length + steps);
  ASSERT_TRUE(shared.has_shared_prefix());
  ASSERT_FALSE(copies.has_shared_prefix());
  for (int64_t t = 0; t < steps; ++t) {
    std::vector<int64_t> tokens;
    for (size_t r = 0; r < rows.size(); ++r) tokens.push_back(5 + (t * 3 + r) % 30);
    std::vector<float> a = model->decode_step(tokens, &shared).to_vector<float>();
    std::vector<float> b = model->decode_step(tokens, &copies).to_vector<float>();
    ASSERT_EQ(a.size(), rows.size() * static_cast<size_t>(c.text.vocab_size));
    for (float x : a) ASSERT_TRUE(std::isfinite(x));
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << "step " << t;
  }
}

// Sampling through the policy interface on sim: temperature sampling (seeded) with a stop
// token that finishes some rows and compacts the batch, samples reading the prompt's cache in
// place (the default) vs copying it (share_prefix_kv = false): the same tokens and log-probs
// bit for bit; and the cpu sampler's tokens with log-probs to f32 rounding (the device decode
// kernel is f32; only the prefill's attention is bf16 on the device).
TEST(Qwen25VLSim, SharedPrefixSamplingEqualsPrivateCopies) {
  auto sim_model = sim_decoder_model(23);
  const Qwen25VLConfig c = sim_model->config();
  auto cpu_model = std::make_unique<Qwen25VL>(c);
  for (const std::string& name : sim_model->params().names())
    cpu_model->params().set(name, sim_model->params().get(name).detach().to(kCPU));
  Qwen25VLPolicy sim(std::move(sim_model), Qwen25VLImageConfig()),
      cpu(std::move(cpu_model), Qwen25VLImageConfig());
  std::vector<PromptInput> prompts;
  for (int p = 0; p < 2; ++p) {
    std::vector<int64_t> ids = {3, 4, c.vision_start_token_id};
    if (p == 1) ids.insert(ids.begin(), {9, 10, 11});
    for (int i = 0; i < 8; ++i) ids.push_back(c.image_token_id);
    for (int64_t x : {c.vision_end_token_id, int64_t{5}, int64_t{6}}) ids.push_back(x);
    Tensor px = test::random_tensor({1, 4, 8, c.vision.patch_dim()}, 40 + p, DType::f32, -2, 2);
    prompts.push_back({ids, px});
  }
  const std::vector<int64_t> rows = {0, 1, 0, 1, 0, 1};
  const std::vector<uint64_t> seeds = {11, 12, 13, 14, 15, 16};
  SamplingOptions opt;
  opt.temperature = 1.0;
  opt.max_new_tokens = 6;
  for (int64_t t = 20; t < 60; t += 3) opt.stop_tokens.push_back(t);  // ~9% of the vocabulary
  std::vector<Generation> shared = sim.sample(prompts, rows, opt, seeds);
  SamplingOptions copying = opt;
  copying.share_prefix_kv = false;
  std::vector<Generation> copies = sim.sample(prompts, rows, copying, seeds);
  std::vector<Generation> host = cpu.sample(prompts, rows, opt, seeds);
  ASSERT_EQ(shared.size(), rows.size());
  size_t stopped = 0, total = 0;
  double err = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(shared[i].tokens, copies[i].tokens) << "sequence " << i;
    ASSERT_EQ(shared[i].logprobs.size(), copies[i].logprobs.size());
    EXPECT_EQ(std::memcmp(shared[i].logprobs.data(), copies[i].logprobs.data(),
                          shared[i].logprobs.size() * sizeof(float)),
              0)
        << "sequence " << i;
    EXPECT_EQ(shared[i].tokens, host[i].tokens) << "sequence " << i;
    for (size_t k = 0; k < shared[i].logprobs.size() && k < host[i].logprobs.size(); ++k)
      err = std::max(err, std::fabs(double(shared[i].logprobs[k]) - host[i].logprobs[k]));
    stopped += shared[i].tokens.size() < 6;
    total += shared[i].tokens.size();
  }
  EXPECT_GT(stopped, 0u) << "no row stopped early: the compaction is not exercised";
  EXPECT_LT(stopped, rows.size());
  std::printf(
      "sim sampling: %zu tokens, %zu of %zu rows stopped early; vs cpu: max log-prob "
      "difference %.3g\n",
      total, stopped, rows.size(), err);
  EXPECT_LT(err, 1e-2);
}

}  // namespace
}  // namespace visplay
