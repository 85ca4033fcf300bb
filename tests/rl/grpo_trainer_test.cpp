// GRPO trainer on a tiny random VLM: the training forward agrees with the sampler's log-probs,
// a positively rewarded response gains probability, a constant group changes nothing, gradient
// accumulation over micro-batches equals one big batch, and a full step is deterministic.
#include "rl/grpo_trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "rl/rollout.h"
#include "runtime/ops.h"
#include "tests/rl/tiny_model.h"

namespace visplay::rl {
namespace {

using testing::image_prompt;
using testing::tiny_config;

GrpoConfig small_grpo() {
  GrpoConfig g;
  g.lr = 1e-2;
  g.prompts_per_update = 8;
  g.micro_batch_size = 4;
  g.weight_decay = 0.0;
  return g;
}

double sum_of(const std::vector<float>& v) {
  double s = 0;
  for (float x : v) s += x;
  return s;
}

std::vector<float> flat_params(const VLM& m) {
  std::vector<float> out;
  for (const Tensor& t : m.params().tensors()) {
    std::vector<float> v = t.to_vector<float>();
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

// Rollouts built by hand: fixed responses, sampling log-probs from the training forward.
std::vector<Generation> fixed_rollouts(const VLM& m, const std::vector<PromptInput>& prompts,
                                       const std::vector<std::vector<int64_t>>& responses) {
  const int64_t G = static_cast<int64_t>(responses.size());
  std::vector<Generation> out;
  std::vector<int64_t> rows;
  std::vector<std::vector<int64_t>> completions;
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (int64_t j = 0; j < G; ++j) {
      Generation g;
      g.prompt_index = static_cast<int64_t>(p);
      g.tokens = responses[j];
      g.stopped = true;
      out.push_back(g);
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    rows.push_back(static_cast<int64_t>(i) / G);
    completions.push_back(out[i].tokens);
  }
  auto lp = score_completions(m, prompts, rows, completions, 3);
  for (size_t i = 0; i < out.size(); ++i) out[i].logprobs = lp[i];
  return out;
}

TEST(Rollout, TrainingForwardMatchesSamplerLogprobs) {
  testing::use_one_thread();
  Rng rng(11);
  VLM model(tiny_config());
  model.init_weights(5);
  std::vector<PromptInput> prompts = {image_prompt(model.config(), rng, {3, 4, 5}),
                                      image_prompt(model.config(), rng, {7, 2, 9, 11, 12})};
  SamplingOptions opt;
  opt.max_new_tokens = 6;
  opt.stop_tokens = {model.config().eos_token_id};
  std::vector<Generation> gens = generate_groups(model, prompts, 3, opt, 77, 4);
  ASSERT_EQ(gens.size(), 6u);
  std::vector<int64_t> rows;
  std::vector<std::vector<int64_t>> completions;
  const int64_t pad = model.config().image_pad_token_id;
  for (const Generation& g : gens) {
    for (int64_t t : g.tokens) EXPECT_NE(t, pad);
    ASSERT_EQ(g.logprobs.size(), g.tokens.size());
    EXPECT_EQ(g.prompt_index, static_cast<int64_t>(&g - gens.data()) / 3);
    rows.push_back(g.prompt_index);
    completions.push_back(g.tokens);
  }
  std::vector<std::vector<float>> scored = score_completions(model, prompts, rows, completions, 4);
  for (size_t i = 0; i < gens.size(); ++i) {
    ASSERT_EQ(scored[i].size(), gens[i].tokens.size());
    for (size_t k = 0; k < scored[i].size(); ++k) {
      EXPECT_NEAR(scored[i][k], gens[i].logprobs[k], 2e-4) << "seq " << i << " token " << k;
    }
  }
  // Chunking (max batch 4 sequences = 1 prompt a chunk) does not change what is sampled.
  std::vector<Generation> whole = generate_groups(model, prompts, 3, opt, 77, 100);
  for (size_t i = 0; i < gens.size(); ++i) EXPECT_EQ(whole[i].tokens, gens[i].tokens);
}

TEST(Grpo, PositivelyRewardedResponseGainsProbability) {
  testing::use_one_thread();
  Rng rng(3);
  VLM model(tiny_config());
  model.init_weights(21);
  std::vector<PromptInput> prompts = {image_prompt(model.config(), rng, {1, 2, 3})};
  std::vector<std::vector<int64_t>> responses = {
      {5, 6, 7, 36}, {8, 9, 36}, {10, 11, 12, 13, 36}, {14, 36}};
  std::vector<Generation> rollouts = fixed_rollouts(model, prompts, responses);
  const double before_good = sum_of(rollouts[0].logprobs);
  const double before_bad = sum_of(rollouts[1].logprobs);
  GrpoTrainer trainer(model, small_grpo());
  GrpoStepStats st = trainer.train_on(prompts, rollouts, 4, {1.0, 0.0, 0.0, 0.0});
  EXPECT_EQ(st.updates, 1);
  EXPECT_FALSE(st.recomputed_old_logprobs);
  EXPECT_GT(st.grad_norm, 0);
  EXPECT_NEAR(st.kl, 0.0, 1e-5);  // first update: policy == reference
  EXPECT_NEAR(st.clip_fraction, 0.0, 1e-9);
  EXPECT_GT(st.entropy, 0);
  auto after = fixed_rollouts(model, prompts, responses);
  EXPECT_GT(sum_of(after[0].logprobs), before_good + 1e-3);
  EXPECT_LT(sum_of(after[1].logprobs), before_bad);
  // The reference stayed at the starting weights.
  auto ref = fixed_rollouts(*trainer.reference(), prompts, responses);
  EXPECT_NEAR(sum_of(ref[0].logprobs), before_good, 1e-5);
}

TEST(Grpo, NonFiniteUpdatesAreSkippedThenStopTheRun) {
  testing::use_one_thread();
  Rng rng(5);
  VLM model(tiny_config());
  model.init_weights(9);
  std::vector<PromptInput> prompts = {image_prompt(model.config(), rng, {1, 2})};
  auto rollouts = fixed_rollouts(model, prompts, {{5, 36}, {6, 7, 36}, {8, 36}});
  GrpoConfig g = small_grpo();
  g.max_nonfinite_updates = 2;
  GrpoTrainer trainer(model, g);
  // A NaN in the final norm's weight makes every log-prob, the loss and the gradient NaN.
  Tensor& w = model.params().get("model.norm.weight");
  w.detach().fill_(std::nan(""));
  std::vector<float> before = flat_params(model);
  GrpoStepStats st = trainer.train_on(prompts, rollouts, 3, {1.0, 0.0, 0.5});
  EXPECT_EQ(st.updates, 0);
  EXPECT_EQ(st.skipped_updates, 1);
  // The weights were not touched (NaN entries compare unequal, so compare bit patterns).
  std::vector<float> after = flat_params(model);
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(std::memcmp(after.data(), before.data(), after.size() * sizeof(float)), 0);
  // The second non-finite update in a row stops the run with an error naming the option.
  try {
    trainer.train_on(prompts, rollouts, 3, {1.0, 0.0, 0.5});
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("max_nonfinite_updates"), std::string::npos) << e.what();
  }
}

TEST(Grpo, ConstantGroupHasZeroAdvantageAndChangesNothing) {
  testing::use_one_thread();
  std::vector<float> r = {0.3f, 0.3f, 0.3f, 0.3f, 1.f, 0.f, 0.5f, 0.25f};
  std::vector<float> adv = group_advantages(Tensor::from_vector(r, {2, 4})).to_vector<float>();
  for (int j = 0; j < 4; ++j) EXPECT_EQ(adv[j], 0.0f);
  double s = 0;
  for (int j = 4; j < 8; ++j) s += adv[j];
  EXPECT_NEAR(s, 0.0, 1e-5);
  EXPECT_GT(adv[4], 0.5f);

  Rng rng(4);
  VLM model(tiny_config());
  model.init_weights(8);
  std::vector<PromptInput> prompts = {image_prompt(model.config(), rng, {1, 2})};
  auto rollouts = fixed_rollouts(model, prompts, {{5, 36}, {6, 7, 36}, {8, 36}});
  std::vector<float> before = flat_params(model);
  GrpoConfig g = small_grpo();
  g.kl_coef = 0;  // no KL pull, no weight decay: a zero advantage gives a zero gradient
  GrpoTrainer trainer(model, g);
  GrpoStepStats st = trainer.train_on(prompts, rollouts, 3, {0.7, 0.7, 0.7});
  EXPECT_EQ(st.constant_group_fraction, 1.0);
  EXPECT_EQ(st.grad_norm, 0.0);
  EXPECT_EQ(flat_params(model), before);
}

TEST(Grpo, MicroBatchAccumulationEqualsOneBatch) {
  testing::use_one_thread();
  for (LossAggregation agg : {LossAggregation::token_mean, LossAggregation::seq_mean_token_mean}) {
    Rng rng(9);
    VLM a(tiny_config()), b(tiny_config());
    a.init_weights(2);
    b.init_weights(2);
    std::vector<PromptInput> prompts = {image_prompt(a.config(), rng, {1, 2, 3}),
                                        image_prompt(a.config(), rng, {4})};
    std::vector<std::vector<int64_t>> responses = {{5, 6, 36}, {7, 36}, {8, 9, 10, 11, 36}};
    auto rollouts = fixed_rollouts(a, prompts, responses);
    std::vector<double> rewards = {1, 0, 0.5, 0, 0, 1};
    GrpoConfig g = small_grpo();
    g.loss_aggregation = agg;
    g.micro_batch_size = 1;
    GrpoStepStats sa = GrpoTrainer(a, g).train_on(prompts, rollouts, 3, rewards);
    g.micro_batch_size = 6;
    GrpoStepStats sb = GrpoTrainer(b, g).train_on(prompts, rollouts, 3, rewards);
    EXPECT_NEAR(sa.grad_norm, sb.grad_norm, 1e-5 * (1 + sb.grad_norm));
    EXPECT_NEAR(sa.loss, sb.loss, 1e-5);
    std::vector<float> pa = flat_params(a), pb = flat_params(b);
    ASSERT_EQ(pa.size(), pb.size());
    double max_diff = 0;
    for (size_t i = 0; i < pa.size(); ++i)
      max_diff = std::max(max_diff, std::fabs(double(pa[i]) - pb[i]));
    EXPECT_LT(max_diff, 1e-4);
  }
}

// grpo.recompute_layers on the demo VLM: the update (loss, gradient norm, every weight) is the
// same bit for bit as without recomputation.
TEST(Grpo, RecomputedLayersGiveTheSameUpdate) {
  testing::use_one_thread();
  Rng rng(19);
  VLM a(tiny_config()), b(tiny_config());
  a.init_weights(4);
  b.init_weights(4);
  std::vector<PromptInput> prompts = {image_prompt(a.config(), rng, {1, 2, 3}),
                                      image_prompt(a.config(), rng, {4})};
  std::vector<std::vector<int64_t>> responses = {{5, 6, 36}, {7, 36}, {8, 9, 10, 11, 36}};
  auto rollouts = fixed_rollouts(a, prompts, responses);
  std::vector<double> rewards = {1, 0, 0.5, 0, 0, 1};
  GrpoConfig g = small_grpo();
  g.micro_batch_size = 2;
  GrpoStepStats sa = GrpoTrainer(a, g).train_on(prompts, rollouts, 3, rewards);
  g.recompute_layers = true;
  GrpoTrainer trainer(b, g);
  const auto* vlm = dynamic_cast<const VLMPolicy*>(&trainer.policy());
  ASSERT_NE(vlm, nullptr);
  EXPECT_TRUE(vlm->model().recompute_layers());
  GrpoStepStats sb = trainer.train_on(prompts, rollouts, 3, rewards);
  EXPECT_EQ(sa.loss, sb.loss);
  EXPECT_EQ(sa.grad_norm, sb.grad_norm);
  EXPECT_GT(sb.grad_norm, 0);
  EXPECT_EQ(flat_params(a), flat_params(b));
}

TEST(Grpo, StepIsDeterministicAndSeesEveryRollout) {
  testing::use_one_thread();
  auto run = [](std::vector<float>* params) {
    Rng rng(6);
    VLM model(tiny_config());
    model.init_weights(13);
    std::vector<PromptInput> prompts = {image_prompt(model.config(), rng, {1, 2}),
                                        image_prompt(model.config(), rng, {3})};
    GrpoConfig g = small_grpo();
    g.prompts_per_update = 1;  // two updates: old log-probs are recomputed
    GrpoTrainer trainer(model, g);
    SamplingOptions s;
    s.max_new_tokens = 5;
    s.stop_tokens = {model.config().eos_token_id};
    int64_t seen = 0;
    // Reward: how many even tokens the response has (something a policy can learn).
    RewardFn reward = [&](const std::vector<PromptInput>& p, const std::vector<Generation>& r,
                          int64_t G) {
      seen = static_cast<int64_t>(r.size());
      EXPECT_EQ(static_cast<int64_t>(p.size()) * G, seen);
      RewardResult out;
      for (const Generation& gen : r) {
        double x = 0;
        for (int64_t t : gen.tokens) x += (t % 2 == 0);
        out.rewards.push_back(x);
      }
      out.metrics["custom"] = 1.5;
      return out;
    };
    GrpoStepStats st = trainer.step(prompts, 4, s, reward, 99);
    EXPECT_EQ(seen, 8);
    EXPECT_EQ(st.updates, 2);
    EXPECT_TRUE(st.recomputed_old_logprobs);
    EXPECT_GT(st.generated_tokens, 0);
    EXPECT_LE(st.response_length_max, 5);
    nlohmann::json j = st.to_json();
    EXPECT_EQ(j["custom"], 1.5);
    EXPECT_TRUE(j.contains("generation_tokens_per_s"));
    *params = flat_params(model);
    return st;
  };
  std::vector<float> p1, p2;
  GrpoStepStats s1 = run(&p1);
  GrpoStepStats s2 = run(&p2);
  EXPECT_EQ(p1, p2);
  EXPECT_EQ(s1.reward_mean, s2.reward_mean);
}

TEST(Grpo, RejectsUnsupportedKlEstimator) {
  testing::use_one_thread();
  VLM model(tiny_config());
  model.init_weights(1);
  GrpoConfig g = small_grpo();
  g.kl_estimator = KlEstimator::k1;
  EXPECT_THROW(GrpoTrainer(model, g), std::runtime_error);
}

}  // namespace
}  // namespace visplay::rl
