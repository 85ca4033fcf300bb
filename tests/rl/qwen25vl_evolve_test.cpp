// The VisPlay loop on Qwen2.5-VL through the policy interface (model/policy.h), on the tiny
// random Hugging Face directory that tools/gen_qwen25vl_fixture.py made
// (tests/model/fixtures/qwen25vl_tiny: 2 layers each side, the real Qwen special tokens):
//   - the sampler's log-probs (KV cache shared by a prompt's samples, M-RoPE positions continued
//     after the image) equal the training forward's, for images of two sizes in one batch;
//   - samples reading the prompt's cached prefix in place equal private copies bit for bit;
//   - a GRPO update raises the rewarded response's log-prob, lowers an unrewarded one, reaches
//     the vision tower, and leaves the frozen reference at the starting weights;
//   - one evolve iteration on a folder of images runs, saves both roles in the Hugging Face
//     layout (they load back), and gives the same metrics and weights for the same seed;
//   - a missing model folder and an empty image folder are clear errors;
//   - bf16 loading (grpo.master_weights) equals an f32 load converted afterwards, bit for bit,
//     and never holds the f32 model.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "model/image.h"
#include "model/policy.h"
#include "model/qwen25vl.h"
#include "model/tokenizer.h"
#include "rl/evolve.h"
#include "rl/grpo_trainer.h"
#include "rl/role_rewards.h"
#include "rl/roles.h"
#include "rl/rollout.h"
#include "runtime/allocator.h"
#include "runtime/random.h"
#include "tests/rl/qwen25vl_world.h"
#include "tests/rl/tiny_model.h"

namespace fs = std::filesystem;

namespace visplay::rl {
namespace {

const std::string kModel = std::string(VISPLAY_SOURCE_DIR) + "/tests/model/fixtures/qwen25vl_tiny";

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() /
                 ("visplay_qwen_evolve_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::unique_ptr<Qwen25VLPolicy> load_tiny() {
  std::unique_ptr<PolicyModel> p = load_policy(kModel);
  auto* q = dynamic_cast<Qwen25VLPolicy*>(p.get());
  EXPECT_NE(q, nullptr);
  p.release();
  std::unique_ptr<Qwen25VLPolicy> out(q);
  out->set_pixel_bounds(56 * 56, 84 * 84);
  return out;
}

double sum_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return s;
}

// Questioner prompts (the qwen chat preset) for two prepared images of different sizes.
struct Prompts {
  std::unique_ptr<Tokenizer> tok;
  std::vector<PromptInput> prompts;
};
Prompts questioner_prompts(const Qwen25VLPolicy& policy, const fs::path& images) {
  Prompts p;
  p.tok = load_tokenizer(kModel + "/tokenizer.json");
  RoleSetup setup = make_role_setup(policy, *p.tok, VisPlayConfig());
  EXPECT_EQ(setup.format.name, "qwen");
  for (const char* name : {"img0.png", "img1.png"}) {
    Tensor image = policy.prepare_image_file((images / name).string());
    p.prompts.push_back(
        {build_questioner_prompt(setup.format, *p.tok, setup.visual_tokens(image), setup.prompts),
         image});
  }
  EXPECT_EQ(policy.visual_tokens(p.prompts[0].pixels), 4);
  EXPECT_EQ(policy.visual_tokens(p.prompts[1].pixels), 6);
  return p;
}

TEST(Qwen25VLPolicy, SamplerLogprobsMatchTheTrainingForward) {
  testing::use_one_thread();
  const fs::path root = fresh_dir("sample");
  auto policy = load_tiny();
  Prompts p = questioner_prompts(*policy, testing::write_noise_images(root / "images", 2, 5));
  SamplingOptions opt;
  opt.max_new_tokens = 6;
  opt.stop_tokens = {policy->model().config().eos_token_id};
  std::vector<Generation> gens = generate_groups(*policy, p.prompts, 3, opt, 77, 100);
  ASSERT_EQ(gens.size(), 6u);
  std::vector<int64_t> rows;
  std::vector<std::vector<int64_t>> completions;
  int64_t tokens = 0;
  for (const Generation& g : gens) {
    for (int64_t t : g.tokens) EXPECT_NE(t, policy->image_pad_token_id());
    ASSERT_EQ(g.logprobs.size(), g.tokens.size());
    rows.push_back(g.prompt_index);
    completions.push_back(g.tokens);
    tokens += static_cast<int64_t>(g.tokens.size());
  }
  EXPECT_GT(tokens, 6);
  std::vector<std::vector<float>> scored =
      score_completions(*policy, p.prompts, rows, completions, 4);
  for (size_t i = 0; i < gens.size(); ++i) {
    ASSERT_EQ(scored[i].size(), gens[i].tokens.size());
    for (size_t k = 0; k < scored[i].size(); ++k)
      EXPECT_NEAR(scored[i][k], gens[i].logprobs[k], 2e-4) << "seq " << i << " token " << k;
  }
  // Sequences of different prompts interleaved (each distinct image is still encoded once and
  // looked up per sequence): the same log-probs.
  std::vector<int64_t> mixed_rows(rows.rbegin(), rows.rend());
  std::vector<std::vector<int64_t>> mixed(completions.rbegin(), completions.rend());
  std::vector<std::vector<float>> rescored =
      score_completions(*policy, p.prompts, mixed_rows, mixed, 5);
  for (size_t i = 0; i < gens.size(); ++i) {
    const std::vector<float>& back = rescored[gens.size() - 1 - i];
    for (size_t k = 0; k < back.size(); ++k) EXPECT_NEAR(back[k], scored[i][k], 1e-5);
  }
  // One prompt per chunk: the same samples (seeds do not depend on the chunking).
  std::vector<Generation> chunked = generate_groups(*policy, p.prompts, 3, opt, 77, 3);
  for (size_t i = 0; i < gens.size(); ++i) EXPECT_EQ(chunked[i].tokens, gens[i].tokens);
  fs::remove_all(root);
}

// The samples of a prompt reading its cached prefix in place (KVCache::share_prefix, the CPU
// shared-prefix decode kernel) give exactly what private copies of it give: same tokens,
// bit-equal log-probs, for sampled and greedy decoding, with stop tokens ending rows early (the
// cache is compacted mid-generation, the shared prefix and each row's M-RoPE next position
// carried along); and the same at 1 and 2 threads, also when 2 threads decode 16 rows in
// slices.
TEST(Qwen25VLPolicy, SharedPrefixSamplesBitIdenticalToPrivateCopies) {
  testing::use_one_thread();
  const fs::path root = fresh_dir("share");
  auto policy = load_tiny();
  Prompts p = questioner_prompts(*policy, testing::write_noise_images(root / "images", 2, 8));
  const std::vector<int64_t> rows = {0, 1, 0, 1, 1, 0, 0, 1};
  const std::vector<uint64_t> seeds = derive_seeds(19, static_cast<int64_t>(rows.size()));
  for (bool greedy : {false, true}) {
    SCOPED_TRACE(greedy ? "greedy" : "sampled");
    SamplingOptions opt;
    opt.greedy = greedy;
    opt.temperature = 1.4;
    opt.max_new_tokens = 10;
    SamplingOptions copying = opt;
    copying.share_prefix_kv = false;
    std::vector<Generation> free_run = policy->sample(p.prompts, rows, copying, seeds);
    // Stop on tokens that five of the eight samples emit early: they finish at different steps,
    // and once half have, the loop drops them while the rest (of both prompts) go on.
    for (size_t i = 0; i < 5; ++i) opt.stop_tokens.push_back(free_run[i].tokens[1 + i % 3]);
    copying.stop_tokens = opt.stop_tokens;
    std::vector<Generation> shared = policy->sample(p.prompts, rows, opt, seeds);
    std::vector<Generation> copied = policy->sample(p.prompts, rows, copying, seeds);
    ASSERT_EQ(shared.size(), rows.size());
    std::vector<size_t> lengths;
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(shared[i].prompt_index, rows[i]);
      EXPECT_EQ(shared[i].tokens, copied[i].tokens) << "sequence " << i;
      EXPECT_EQ(shared[i].logprobs, copied[i].logprobs) << "sequence " << i;
      EXPECT_EQ(shared[i].stopped, copied[i].stopped) << "sequence " << i;
      lengths.push_back(shared[i].tokens.size());
    }
    std::sort(lengths.begin(), lengths.end());
    EXPECT_LT(lengths[0], 10u) << "the stop tokens should end rows early";
    // Half the rows done while others live: a compaction. (The tiny random model's greedy
    // continuations of both prompts are alike, so greedy rows all end together.)
    if (!greedy) {
      EXPECT_LT(lengths[rows.size() / 2 - 1], lengths.back());
    }
#ifdef _OPENMP
    omp_set_num_threads(2);
    std::vector<Generation> two = policy->sample(p.prompts, rows, opt, seeds);
    omp_set_num_threads(1);
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(two[i].tokens, shared[i].tokens) << "sequence " << i;
      EXPECT_EQ(two[i].logprobs, shared[i].logprobs) << "sequence " << i;
    }
    // 16 rows: with 2 threads a model this small decodes them in two slices, one per
    // thread (model/sampler.cpp), each with its own cache and compaction. Same bits.
    std::vector<int64_t> rows16 = rows;
    rows16.insert(rows16.end(), rows.begin(), rows.end());
    const std::vector<uint64_t> seeds16 = derive_seeds(23, 16);
    std::vector<Generation> one16 = policy->sample(p.prompts, rows16, opt, seeds16);
    omp_set_num_threads(2);
    std::vector<Generation> sliced = policy->sample(p.prompts, rows16, opt, seeds16);
    omp_set_num_threads(1);
    for (size_t i = 0; i < rows16.size(); ++i) {
      EXPECT_EQ(sliced[i].tokens, one16[i].tokens) << "sequence " << i;
      EXPECT_EQ(sliced[i].logprobs, one16[i].logprobs) << "sequence " << i;
      EXPECT_EQ(sliced[i].stopped, one16[i].stopped) << "sequence " << i;
    }
#endif
  }
  fs::remove_all(root);
}

TEST(Qwen25VLPolicy, GrpoRaisesTheRewardedResponse) {
  testing::use_one_thread();
  const fs::path root = fresh_dir("grpo");
  auto policy = load_tiny();
  Prompts p = questioner_prompts(*policy, testing::write_noise_images(root / "images", 2, 9));
  p.prompts.resize(1);
  const int64_t stop = stop_token_id(*p.tok);
  const std::vector<std::vector<int64_t>> responses = {
      {40, 41, 42, stop}, {50, 51, stop}, {60, 61, 62, 63, stop}, {70, stop}};
  auto score = [&](const PolicyModel& m) {
    std::vector<int64_t> rows(responses.size(), 0);
    return score_completions(m, p.prompts, rows, responses, 4);
  };
  std::vector<std::vector<float>> before = score(*policy);
  std::vector<Generation> rollouts;
  for (size_t j = 0; j < responses.size(); ++j) {
    Generation g;
    g.tokens = responses[j];
    g.logprobs = before[j];
    g.stopped = true;
    rollouts.push_back(g);
  }
  const std::vector<float> vision_before =
      policy->params().get("visual.blocks.0.attn.qkv.weight").to_vector<float>();
  GrpoConfig g;
  g.lr = 1e-2;
  g.prompts_per_update = 8;
  g.micro_batch_size = 4;
  g.weight_decay = 0.0;
  GrpoTrainer trainer(*policy, g);
  GrpoStepStats st = trainer.train_on(p.prompts, rollouts, 4, {1.0, 0.0, 0.0, 0.0});
  EXPECT_EQ(st.updates, 1);
  EXPECT_GT(st.grad_norm, 0);
  EXPECT_NEAR(st.kl, 0.0, 1e-5);  // first update: policy == reference
  std::vector<std::vector<float>> after = score(*policy);
  EXPECT_GT(sum_of(after[0]), sum_of(before[0]) + 1e-3);
  EXPECT_LT(sum_of(after[1]), sum_of(before[1]));
  // The gradient reached the vision tower (trained by default, as in the reference).
  EXPECT_NE(policy->params().get("visual.blocks.0.attn.qkv.weight").to_vector<float>(),
            vision_before);
  // The reference kept the starting weights.
  std::vector<std::vector<float>> ref = score(*trainer.reference_policy());
  EXPECT_NEAR(sum_of(ref[0]), sum_of(before[0]), 1e-5);
  // grpo.train_vision_tower = false freezes every visual.* tensor, and only those.
  const std::vector<float> merger =
      policy->params().get("visual.merger.mlp.0.weight").to_vector<float>();
  const std::vector<float> lm =
      policy->params().get("model.layers.1.mlp.up_proj.weight").to_vector<float>();
  // (Sampling log-probs of the current weights: ratios start at 1, nothing clipped.)
  for (size_t j = 0; j < rollouts.size(); ++j) rollouts[j].logprobs = after[j];
  g.train_vision_tower = false;
  GrpoTrainer frozen(*policy, g);
  frozen.train_on(p.prompts, rollouts, 4, {1.0, 0.0, 0.0, 0.0});
  EXPECT_EQ(policy->params().get("visual.merger.mlp.0.weight").to_vector<float>(), merger);
  EXPECT_NE(policy->params().get("model.layers.1.mlp.up_proj.weight").to_vector<float>(), lm);
  fs::remove_all(root);
}

// Mixed precision and recomputation in a GRPO update of the tiny checkpoint: bf16 weights, f32
// masters in the optimizer, f32 gradients accumulated over the micro-batches, and the same
// update bit for bit with and without recomputed layers (the gradients are identical) and when
// run again; the rewarded response gains probability.
TEST(Qwen25VLPolicy, GrpoWithBf16MasterWeightsAndRecomputedLayers) {
  testing::use_one_thread();
  const fs::path root = fresh_dir("grpo_mixed");
  std::vector<std::unique_ptr<Qwen25VLPolicy>> policies;
  for (int i = 0; i < 3; ++i) {
    policies.push_back(load_tiny());
    policies.back()->params().convert(DType::bf16);
  }
  Prompts p = questioner_prompts(*policies[0], testing::write_noise_images(root / "images", 2, 9));
  p.prompts.resize(1);
  const int64_t stop = stop_token_id(*p.tok);
  const std::vector<std::vector<int64_t>> responses = {
      {40, 41, 42, stop}, {50, 51, stop}, {60, 61, 62, 63, stop}, {70, stop}};
  auto score = [&](const PolicyModel& m) {
    std::vector<int64_t> rows(responses.size(), 0);
    return score_completions(m, p.prompts, rows, responses, 4);
  };
  std::vector<std::vector<float>> before = score(*policies[0]);
  std::vector<Generation> rollouts;
  for (size_t j = 0; j < responses.size(); ++j) {
    Generation g;
    g.tokens = responses[j];
    g.logprobs = before[j];
    g.stopped = true;
    rollouts.push_back(g);
  }
  std::string weights[3], masters[3];
  for (int i = 0; i < 3; ++i) {
    GrpoConfig g;
    g.lr = 1e-2;
    g.prompts_per_update = 8;
    g.micro_batch_size = 2;  // two micro-batches: gradients accumulate
    g.weight_decay = 0.0;
    g.master_weights = true;
    g.recompute_layers = i == 1;
    GrpoTrainer trainer(*policies[i], g);
    EXPECT_EQ(policies[i]->model().recompute_layers(), i == 1);
    GrpoStepStats st = trainer.train_on(p.prompts, rollouts, 4, {1.0, 0.0, 0.0, 0.0});
    EXPECT_EQ(st.updates, 1);
    EXPECT_GT(st.grad_norm, 0);
    for (const std::string& name : policies[i]->params().names()) {
      Tensor w = policies[i]->params().get(name);
      ASSERT_EQ(w.dtype(), DType::bf16) << name;
      weights[i].append(reinterpret_cast<const char*>(w.data<bf16>()), w.numel() * 2);
    }
    for (const Tensor& m : trainer.optimizer().master()) {
      ASSERT_TRUE(m.defined());
      ASSERT_EQ(m.dtype(), DType::f32);
      masters[i].append(static_cast<const char*>(m.raw_data()), m.numel() * 4);
    }
  }
  EXPECT_TRUE(weights[0] == weights[1]);
  EXPECT_TRUE(masters[0] == masters[1]);
  EXPECT_TRUE(weights[0] == weights[2]);  // deterministic
  EXPECT_TRUE(masters[0] == masters[2]);
  // Two micro-batch backward passes of the policy accumulate an f32 gradient in a bf16 weight.
  Tensor up = policies[0]->params().get("model.layers.0.mlp.up_proj.weight");
  ASSERT_TRUE(up.requires_grad());
  up.zero_grad();
  for (int rep = 0; rep < 2; ++rep)
    sum(policies[0]->completion_logprobs(p.prompts, {0}, {responses[rep]}).logprobs).backward();
  ASSERT_TRUE(up.grad().defined());
  EXPECT_EQ(up.grad().dtype(), DType::f32);
  std::vector<std::vector<float>> after = score(*policies[1]);
  EXPECT_GT(sum_of(after[0]), sum_of(before[0]) + 1e-3);
  fs::remove_all(root);
}

std::vector<nlohmann::json> metrics_without_times(const fs::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line);
    // Wall-clock fields differ between runs; everything else must not.
    std::function<void(nlohmann::json&)> strip = [&](nlohmann::json& o) {
      if (!o.is_object()) return;
      for (auto it = o.begin(); it != o.end();) {
        const std::string& k = it.key();
        if (k.find("seconds") != std::string::npos || k.find("per_s") != std::string::npos) {
          it = o.erase(it);
        } else {
          strip(it.value());
          ++it;
        }
      }
    };
    strip(j);
    out.push_back(j);
  }
  return out;
}

// Mixed precision loads each role straight to bf16: bit for bit an f32 load converted
// afterwards, with a peak of the bf16 model plus one stored tensor and its conversion (not the
// f32 model: for 3B that is 12 GB less). Random f32 weights (not bf16 values, so the rounding
// is exercised) on the tiny config widened to 8 decoder layers, saved as f32 shards.
TEST(Qwen25VLPolicy, Bf16LoadEqualsConvertedF32LoadWithoutTheF32Peak) {
  testing::use_one_thread();
  const fs::path root = fresh_dir("bf16_load");
  {
    Qwen25VLConfig config = load_qwen25vl_config(kModel + "/config.json");
    config.text.num_hidden_layers = 8;
    config.source["text_config"]["num_hidden_layers"] = 8;
    config.source["text_config"]["layer_types"] = std::vector<std::string>(8, "full_attention");
    Qwen25VL model(config);
    model.init_weights(21);
    Qwen25VLSaveOptions opt;
    opt.dtype = DType::f32;
    opt.max_shard_bytes = 300 * 1024;  // several shards
    opt.source_dir = kModel;
    save_qwen25vl((root / "model").string(), model, opt);
  }
  const std::string dir = (root / "model").string();
  CachingAllocator& alloc = allocator_for(kCPU);
  // Peak bytes above what was live before, while loading in `dtype` (then converting).
  auto load_peak = [&](DType dtype, bool convert_after, std::unique_ptr<PolicyModel>* out) {
    const size_t base = alloc.stats().current_bytes;
    alloc.reset_peak();
    *out = load_policy(dir, dtype);
    if (convert_after) (*out)->params().convert(DType::bf16);
    return alloc.stats().peak_bytes - base;
  };
  std::unique_ptr<PolicyModel> converted, direct;
  const size_t converted_peak = load_peak(DType::f32, true, &converted);
  const size_t direct_peak = load_peak(DType::bf16, false, &direct);
  ASSERT_EQ(direct->params().names(), converted->params().names());
  size_t bf16_bytes = 0, f32_bytes = 0, largest_pair = 0;
  for (const std::string& name : converted->params().names()) {
    const Tensor& a = direct->params().get(name);
    const Tensor& b = converted->params().get(name);
    ASSERT_EQ(a.dtype(), DType::bf16) << name;
    ASSERT_EQ(b.dtype(), DType::bf16) << name;
    // bf16 -> f32 is exact, so equal bit patterns of the widened values are equal bf16 bits.
    std::vector<float> va = a.to_vector<float>(), vb = b.to_vector<float>();
    ASSERT_EQ(va.size(), vb.size()) << name;
    EXPECT_EQ(std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)), 0) << name;
    const size_t n = static_cast<size_t>(a.numel());
    bf16_bytes += CachingAllocator::round_size(2 * n);
    f32_bytes += CachingAllocator::round_size(4 * n);
    largest_pair = std::max(
        largest_pair, CachingAllocator::round_size(4 * n) + CachingAllocator::round_size(2 * n));
  }
  std::printf(
      "tiny Qwen2.5-VL, 8 decoder layers: weights bf16 %zu B, f32 %zu B; load peak: direct bf16 "
      "%zu B, f32 then convert %zu B (largest stored f32 tensor + its bf16 copy %zu B)\n",
      bf16_bytes, f32_bytes, direct_peak, converted_peak, largest_pair);
  EXPECT_LE(direct_peak, bf16_bytes + largest_pair);
  EXPECT_LT(direct_peak, f32_bytes);
  EXPECT_GE(converted_peak, f32_bytes);
  fs::remove_all(root);
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(Qwen25VLEvolve, OneIterationSavesLoadableRolesDeterministically) {
  testing::use_one_thread();
  const fs::path root = fresh_dir("evolve");
  testing::write_noise_images(root / "images", 3, 21);
  auto run = [&](const std::string& out) {
    EvolveOptions o;
    o.config = testing::tiny_qwen_evolve_config();
    o.model_dir = kModel;
    o.images_dir = (root / "images").string();
    o.out_dir = (root / out).string();
    std::ostringstream console;
    o.console = &console;
    EvolveResult r = run_evolve(o);
    EXPECT_EQ(r.last_iteration, 1) << console.str();
    EXPECT_NE(console.str().find("chat format qwen"), std::string::npos) << console.str();
    return r;
  };
  run("a");
  run("b");
  const fs::path it1 = root / "a" / "iter-1";
  for (const char* f :
       {"questioner/config.json", "questioner/model.safetensors", "questioner/tokenizer.json",
        "questioner/preprocessor_config.json", "reasoner/config.json", "reasoner/model.safetensors",
        "silver.jsonl", "summary.json"})
    EXPECT_TRUE(fs::exists(it1 / f)) << f;
  // Both roles load back as Qwen2.5-VL with every parameter; the questioner took its update
  // (its weights moved off the base checkpoint's).
  std::unique_ptr<PolicyModel> base = load_policy(kModel);
  for (const char* role : {"questioner", "reasoner"}) {
    std::unique_ptr<PolicyModel> back = load_policy((it1 / role).string());
    EXPECT_EQ(back->kind(), "qwen2_5_vl");
    EXPECT_EQ(back->params().names(), base->params().names());
  }
  std::unique_ptr<PolicyModel> q = load_policy((it1 / "questioner").string());
  EXPECT_NE(q->params().get("model.layers.0.mlp.up_proj.weight").to_vector<float>(),
            base->params().get("model.layers.0.mlp.up_proj.weight").to_vector<float>());
  // The metrics: a questioner step with one update, and a data record.
  std::vector<nlohmann::json> a = metrics_without_times(root / "a" / "metrics.jsonl");
  int q_steps = 0, data = 0;
  for (const nlohmann::json& j : a) {
    if (j["event"] == "step" && j["phase"] == "questioner") {
      ++q_steps;
      EXPECT_EQ(j["updates"], 1);
      EXPECT_EQ(j["sequences"], 8);
    }
    if (j["event"] == "data") {
      ++data;
      EXPECT_EQ(j["candidates"], 3);
    }
  }
  EXPECT_EQ(q_steps, 1);
  EXPECT_EQ(data, 1);
  // Same seed, same everything (metrics apart from times, silver set, weights).
  std::vector<nlohmann::json> b = metrics_without_times(root / "b" / "metrics.jsonl");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i], b[i]) << "record " << i;
  EXPECT_EQ(file_bytes(it1 / "silver.jsonl"), file_bytes(root / "b" / "iter-1" / "silver.jsonl"));
  for (const char* role : {"questioner", "reasoner"}) {
    EXPECT_EQ(file_bytes(it1 / role / "model.safetensors"),
              file_bytes(root / "b" / "iter-1" / role / "model.safetensors"))
        << role;
  }
  fs::remove_all(root);
}

// A run killed inside iteration 2's Questioner phase and resumed ends with the same weights as
// an uninterrupted one: iteration 2 restarts from iteration 1's f32 Hugging Face checkpoints
// and the training state (Qwen2.5-VL weights by name, AdamW moments; with `mixed`, bf16
// weights, their f32 masters, and recomputed layers).
void expect_killed_and_resumed_run_equals_uninterrupted(const std::string& name, bool mixed) {
  testing::use_one_thread();
  const fs::path root = fresh_dir(name);
  testing::write_noise_images(root / "images", 3, 33);
  EvolveOptions o;
  o.config = testing::tiny_qwen_evolve_config();
  o.config.questioner.steps = 2;
  o.config.grpo.master_weights = mixed;
  o.config.grpo.recompute_layers = mixed;
  o.model_dir = kModel;
  o.images_dir = (root / "images").string();
  o.iterations = 2;
  o.out_dir = (root / "straight").string();
  run_evolve(o);
  struct Killed {};
  o.out_dir = (root / "killed").string();
  o.after_step = [](int iteration, const std::string& phase, int64_t step) {
    if (iteration == 2 && phase == "questioner" && step == 2) throw Killed{};
  };
  EXPECT_THROW(run_evolve(o), Killed);
  EXPECT_EQ(last_complete_iteration(o.out_dir), 1);
  nlohmann::json at = nlohmann::json::parse(
      std::ifstream(root / "killed" / "iter-1" / "summary.json"));  // iteration 1 complete
  EXPECT_EQ(at["iteration"], 1);
  o.after_step = nullptr;
  o.resume = true;
  EvolveResult r = run_evolve(o);
  EXPECT_EQ(r.first_iteration, 2);
  EXPECT_EQ(r.last_iteration, 2);
  for (const char* role : {"questioner", "reasoner"}) {
    const std::string a = file_bytes(root / "straight" / "iter-2" / role / "model.safetensors");
    EXPECT_FALSE(a.empty()) << role;
    EXPECT_TRUE(a == file_bytes(root / "killed" / "iter-2" / role / "model.safetensors")) << role;
  }
  if (mixed) {
    // The saved roles hold bf16 values (f32 files of bf16-rounded weights).
    std::unique_ptr<PolicyModel> q =
        load_policy((root / "straight" / "iter-2" / "questioner").string());
    for (float x : q->params().get("model.layers.0.mlp.up_proj.weight").to_vector<float>())
      ASSERT_EQ(x, static_cast<float>(bf16(x)));
  }
  fs::remove_all(root);
}

TEST(Qwen25VLEvolve, KilledAndResumedRunEqualsUninterruptedRun) {
  expect_killed_and_resumed_run_equals_uninterrupted("resume", false);
}

TEST(Qwen25VLEvolve, KilledAndResumedMixedPrecisionRunEqualsUninterruptedRun) {
  expect_killed_and_resumed_run_equals_uninterrupted("resume_mixed", true);
}

TEST(Qwen25VLEvolve, BadModelFolderAndEmptyImagesAreClearErrors) {
  testing::use_one_thread();
  const fs::path root = fresh_dir("bad");
  fs::create_directories(root / "empty");
  testing::write_noise_images(root / "images", 1, 3);
  auto error_of = [&](const std::string& model, const std::string& images) -> std::string {
    EvolveOptions o;
    o.config = testing::tiny_qwen_evolve_config();
    o.model_dir = model;
    o.images_dir = images;
    o.out_dir = (root / "out").string();
    try {
      run_evolve(o);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return "";
  };
  std::string e = error_of((root / "nope").string(), (root / "images").string());
  EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
  e = error_of(kModel, (root / "empty").string());
  EXPECT_NE(e.find("holds no images"), std::string::npos) << e;
  fs::remove_all(root);
}

}  // namespace
}  // namespace visplay::rl
