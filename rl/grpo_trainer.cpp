#include "rl/grpo_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include "runtime/ops.h"

namespace visplay::rl {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool is_vision_parameter(const std::string& name) {
  return name.rfind("vision.", 0) == 0 || name.rfind("projector.", 0) == 0;
}

}  // namespace

std::unique_ptr<VLM> clone_model(const VLM& model) {
  auto copy = std::make_unique<VLM>(model.config());
  copy->params() = model.params().clone();
  copy->params().set_requires_grad(false);
  return copy;
}

nlohmann::json GrpoStepStats::to_json() const {
  nlohmann::json j = {{"prompts", prompts},
                      {"sequences", sequences},
                      {"updates", updates},
                      {"reward_mean", reward_mean},
                      {"reward_std", reward_std},
                      {"advantage_abs_mean", advantage_abs_mean},
                      {"constant_group_fraction", constant_group_fraction},
                      {"loss", loss},
                      {"pg_loss", pg_loss},
                      {"kl", kl},
                      {"clip_fraction", clip_fraction},
                      {"dual_clip_fraction", dual_clip_fraction},
                      {"entropy", entropy},
                      {"grad_norm", grad_norm},
                      {"grad_norm_max", grad_norm_max},
                      {"response_length_mean", response_length_mean},
                      {"response_length_min", response_length_min},
                      {"response_length_max", response_length_max},
                      {"truncated_fraction", truncated_fraction},
                      {"generated_tokens", generated_tokens},
                      {"trained_tokens", trained_tokens},
                      {"generation_seconds", generation_seconds},
                      {"reward_seconds", reward_seconds},
                      {"training_seconds", training_seconds},
                      {"generation_tokens_per_s", generation_tokens_per_s},
                      {"training_tokens_per_s", training_tokens_per_s},
                      {"recomputed_old_logprobs", recomputed_old_logprobs},
                      {"skipped_updates", skipped_updates}};
  for (auto it = reward_metrics.begin(); it != reward_metrics.end(); ++it) j[it.key()] = it.value();
  return j;
}

GrpoTrainer::GrpoTrainer(VLM& policy, const GrpoConfig& config) : policy_(policy), config_(config) {
  if (config_.kl_estimator != KlEstimator::k3) {
    throw std::runtime_error("grpo.kl_estimator = " + to_string(config_.kl_estimator) +
                             ": the GRPO loss kernel computes the k3 estimator only");
  }
  if (config_.kl_coef > 0) reference_ = clone_model(policy_);
  ParamStore& params = policy_.params();
  params.set_requires_grad(true);
  for (const std::string& name : params.names()) {
    if (!config_.train_vision_tower && is_vision_parameter(name)) {
      params.get(name).set_requires_grad(false);
    } else {
      trainable_.push_back(params.get(name));
    }
  }
  AdamWOptions opt;
  opt.lr = config_.lr;
  opt.beta1 = config_.adam_beta1;
  opt.beta2 = config_.adam_beta2;
  opt.eps = config_.adam_eps;
  opt.weight_decay = config_.weight_decay;
  optimizer_ = std::make_unique<AdamW>(trainable_, opt);
}

GrpoStepStats GrpoTrainer::step(const std::vector<PromptInput>& prompts, int64_t group_size,
                                const SamplingOptions& sampling, const RewardFn& reward,
                                uint64_t seed) {
  GenerationStats gen;
  std::vector<Generation> rollouts =
      generate_groups(policy_, prompts, group_size, sampling, seed, config_.generation_batch, &gen);
  auto t0 = std::chrono::steady_clock::now();
  RewardResult scored = reward(prompts, rollouts, group_size);
  const double reward_seconds = seconds_since(t0);
  GrpoStepStats stats = train_on(prompts, rollouts, group_size, scored.rewards);
  stats.generation_seconds = gen.seconds;
  stats.generation_tokens_per_s = gen.seconds > 0 ? gen.generated_tokens / gen.seconds : 0;
  stats.reward_seconds = reward_seconds;
  stats.reward_metrics = std::move(scored.metrics);
  return stats;
}

GrpoStepStats GrpoTrainer::train_on(const std::vector<PromptInput>& prompts,
                                    const std::vector<Generation>& rollouts, int64_t group_size,
                                    const std::vector<double>& rewards) {
  const auto t_start = std::chrono::steady_clock::now();
  const int64_t P = static_cast<int64_t>(prompts.size());
  const int64_t N = P * group_size;
  if (P == 0) throw std::runtime_error("GRPO step: no prompts");
  if (static_cast<int64_t>(rollouts.size()) != N || static_cast<int64_t>(rewards.size()) != N) {
    throw std::runtime_error("GRPO step: " + std::to_string(P) + " prompts x " +
                             std::to_string(group_size) + " rollouts need " + std::to_string(N) +
                             " rollouts and rewards, got " + std::to_string(rollouts.size()) +
                             " and " + std::to_string(rewards.size()));
  }
  GrpoStepStats st;
  st.prompts = P;
  st.sequences = N;

  // Rewards -> advantages, one group per prompt.
  std::vector<float> rewards_f(rewards.begin(), rewards.end());
  kernels::cpu::AdvantageOptions adv_opt;
  adv_opt.scale_by_std = config_.advantage == AdvantageKind::grpo;
  adv_opt.eps = config_.advantage_eps;
  std::vector<float> advantages =
      group_advantages(Tensor::from_vector(rewards_f, {P, group_size}), adv_opt).to_vector<float>();
  std::vector<float> sequence_weight(N, 1.0f);
  int64_t constant_groups = 0;
  for (int64_t p = 0; p < P; ++p) {
    bool constant = true;
    for (int64_t j = 1; j < group_size; ++j) {
      constant = constant && rewards[p * group_size + j] == rewards[p * group_size];
    }
    if (constant) {
      ++constant_groups;
      if (config_.drop_constant_groups) {
        for (int64_t j = 0; j < group_size; ++j) sequence_weight[p * group_size + j] = 0.0f;
      }
    }
  }
  double rsum = 0, rsq = 0, asum = 0;
  for (int64_t i = 0; i < N; ++i) {
    rsum += rewards[i];
    asum += std::fabs(advantages[i]);
  }
  st.reward_mean = rsum / N;
  for (int64_t i = 0; i < N; ++i)
    rsq += (rewards[i] - st.reward_mean) * (rewards[i] - st.reward_mean);
  st.reward_std = std::sqrt(rsq / N);
  st.advantage_abs_mean = asum / N;
  st.constant_group_fraction = static_cast<double>(constant_groups) / P;

  // Response lengths.
  st.response_length_min = std::numeric_limits<int64_t>::max();
  int64_t truncated = 0;
  std::vector<int64_t> rows(N);
  std::vector<std::vector<int64_t>> completions(N);
  for (int64_t i = 0; i < N; ++i) {
    const Generation& g = rollouts[i];
    const int64_t len = static_cast<int64_t>(g.tokens.size());
    if (static_cast<int64_t>(g.logprobs.size()) != len) {
      throw std::runtime_error("GRPO step: rollout " + std::to_string(i) + " has " +
                               std::to_string(g.logprobs.size()) + " log-probs for " +
                               std::to_string(len) + " tokens");
    }
    st.response_length_mean += static_cast<double>(len) / N;
    st.response_length_min = std::min(st.response_length_min, len);
    st.response_length_max = std::max(st.response_length_max, len);
    st.generated_tokens += len;
    if (!g.stopped) ++truncated;
    rows[i] = i / group_size;
    completions[i] = g.tokens;
  }
  st.truncated_fraction = static_cast<double>(truncated) / N;

  // Per-token loss weights: token mean weights every response token 1; seq-mean-token-mean
  // weights a sequence's tokens 1 / its length so that each sequence counts once. An empty
  // response (cut at an image-pad token) has no token to train.
  std::vector<std::vector<float>> token_weight(N), token_advantage(N);
  for (int64_t i = 0; i < N; ++i) {
    const size_t len = rollouts[i].tokens.size();
    const float w = config_.loss_aggregation == LossAggregation::token_mean || len == 0
                        ? sequence_weight[i]
                        : sequence_weight[i] / static_cast<float>(len);
    token_weight[i].assign(len, w);
    token_advantage[i].assign(len, advantages[i]);
  }

  const int64_t per_update = std::min<int64_t>(config_.prompts_per_update, P);
  const int64_t updates_per_epoch = (P + per_update - 1) / per_update;
  std::vector<std::vector<float>> old_logprobs(N);
  if (updates_per_epoch * config_.epochs > 1) {
    old_logprobs = score_completions(policy_, prompts, rows, completions, config_.micro_batch_size);
    st.recomputed_old_logprobs = true;
  } else {
    for (int64_t i = 0; i < N; ++i) old_logprobs[i] = rollouts[i].logprobs;
  }

  kernels::cpu::GrpoLossOptions loss_opt;
  loss_opt.clip_low = config_.clip_eps_low;
  loss_opt.clip_high = config_.clip_eps_high;
  loss_opt.dual_clip = config_.dual_clip;
  loss_opt.kl_coef = config_.kl_coef;
  const double max_norm =
      config_.grad_clip > 0 ? config_.grad_clip : std::numeric_limits<double>::infinity();

  double weight_total = 0, entropy_tokens = 0;
  for (int epoch = 0; epoch < config_.epochs; ++epoch) {
    for (int64_t u = 0; u < updates_per_epoch; ++u) {
      const int64_t first = u * per_update * group_size;
      const int64_t last = std::min(P, (u + 1) * per_update) * group_size;
      double mini_weight = 0;
      for (int64_t i = first; i < last; ++i) {
        for (float w : token_weight[i]) mini_weight += w;
      }
      if (mini_weight <= 0) continue;  // every group constant and dropped: nothing to learn
      optimizer_->zero_grad();
      bool finite = true;  // every micro-batch loss of this update
      for (int64_t m0 = first; m0 < last; m0 += config_.micro_batch_size) {
        const int64_t m1 = std::min(last, m0 + static_cast<int64_t>(config_.micro_batch_size));
        std::vector<std::vector<float>> w(token_weight.begin() + m0, token_weight.begin() + m1);
        double micro_weight = 0;
        for (const auto& row : w) {
          for (float x : row) micro_weight += x;
        }
        if (micro_weight <= 0) continue;
        // The micro-batch's distinct prompts (its groups), each image encoded once.
        const int64_t p0 = m0 / group_size, p1 = (m1 - 1) / group_size + 1;
        std::vector<PromptInput> micro_prompts(prompts.begin() + p0, prompts.begin() + p1);
        std::vector<int64_t> micro_rows;
        for (int64_t i = m0; i < m1; ++i) micro_rows.push_back(rows[i] - p0);
        std::vector<std::vector<int64_t>> micro(completions.begin() + m0, completions.begin() + m1);
        CompletionBatch batch =
            make_completion_batch(policy_.config(), micro_prompts, micro_rows, micro);
        const int64_t L = batch.max_completion;
        Tensor mask = pad_rows(w, L);
        Tensor adv = pad_rows({token_advantage.begin() + m0, token_advantage.begin() + m1}, L);
        Tensor old = pad_rows({old_logprobs.begin() + m0, old_logprobs.begin() + m1}, L);
        Tensor ref = old;
        if (reference_) {
          NoGradGuard no_grad;
          ref = completion_logprobs(*reference_, batch).logprobs.contiguous();
        }
        TokenLogprobs lp = completion_logprobs(policy_, batch);
        kernels::cpu::GrpoLossStats ls;
        Tensor loss = grpo_loss(lp.logprobs, old, ref, adv, mask, loss_opt, &ls);
        if (!std::isfinite(ls.loss)) {
          finite = false;  // skip its backward; the whole update is dropped below
          continue;
        }
        scale(loss, micro_weight / mini_weight).backward();

        weight_total += micro_weight;
        st.loss += ls.loss * micro_weight;
        st.pg_loss += ls.pg_loss * micro_weight;
        st.kl += ls.kl * micro_weight;
        st.clip_fraction += ls.clip_fraction * micro_weight;
        st.dual_clip_fraction += ls.dual_clip_fraction * micro_weight;
        std::vector<float> ent = lp.entropy.contiguous().to_vector<float>();
        for (int64_t b = 0; b < m1 - m0; ++b) {
          const int64_t len = static_cast<int64_t>(micro[b].size());
          for (int64_t k = 0; k < len; ++k) st.entropy += ent[b * L + k];
          entropy_tokens += static_cast<double>(len);
          st.trained_tokens += static_cast<int64_t>(prompts[rows[m0 + b]].ids.size()) + len;
        }
      }
      const double norm = clip_grad_norm(trainable_, max_norm);
      // A NaN/Inf loss or gradient norm: drop this update (the weights stay the last good
      // ones), count it, and stop after max_nonfinite_updates in a row.
      if (!finite || !std::isfinite(norm)) {
        optimizer_->zero_grad();
        ++st.skipped_updates;
        if (++nonfinite_in_a_row_ >= config_.max_nonfinite_updates)
          throw std::runtime_error("GRPO: " + std::to_string(nonfinite_in_a_row_) +
                                   " updates in a row had a non-finite loss or gradient norm; stopping "
                                   "(grpo.max_nonfinite_updates = " +
                                   std::to_string(config_.max_nonfinite_updates) +
                                   "; checkpoints already written are intact)");
        continue;
      }
      nonfinite_in_a_row_ = 0;
      st.grad_norm += norm;
      st.grad_norm_max = std::max(st.grad_norm_max, norm);
      optimizer_->step();
      ++st.updates;
    }
  }
  optimizer_->zero_grad();
  if (weight_total > 0) {
    st.loss /= weight_total;
    st.pg_loss /= weight_total;
    st.kl /= weight_total;
    st.clip_fraction /= weight_total;
    st.dual_clip_fraction /= weight_total;
  }
  if (entropy_tokens > 0) st.entropy /= entropy_tokens;
  if (st.updates > 0) st.grad_norm /= static_cast<double>(st.updates);
  st.training_seconds = seconds_since(t_start);
  st.training_tokens_per_s = st.training_seconds > 0 ? st.trained_tokens / st.training_seconds : 0;
  return st;
}

}  // namespace visplay::rl
