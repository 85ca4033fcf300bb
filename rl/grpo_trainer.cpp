#include "rl/grpo_trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>

#include "runtime/ops.h"

namespace visplay::rl {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

GrpoTrainer::GrpoTrainer(VLM& policy, const GrpoConfig& config,
                         std::shared_ptr<dist::DataParallel> dp)
    : GrpoTrainer(std::make_unique<VLMPolicy>(policy), config, std::move(dp)) {}

GrpoTrainer::GrpoTrainer(std::unique_ptr<PolicyModel> owned, const GrpoConfig& config,
                         std::shared_ptr<dist::DataParallel> dp)
    : GrpoTrainer(*owned, config, std::move(dp)) {
  owned_policy_ = std::move(owned);
}

const VLM* GrpoTrainer::reference() const {
  const auto* vlm = dynamic_cast<const VLMPolicy*>(reference_.get());
  return vlm ? &vlm->model() : nullptr;
}

GrpoTrainer::GrpoTrainer(PolicyModel& policy, const GrpoConfig& config,
                         std::shared_ptr<dist::DataParallel> dp)
    : policy_(policy),
      config_(config),
      dp_(dp ? std::move(dp) : std::make_shared<dist::DataParallel>()) {
  if (config_.kl_estimator != KlEstimator::k3) {
    throw std::runtime_error("grpo.kl_estimator = " + to_string(config_.kl_estimator) +
                             ": the GRPO loss kernel computes the k3 estimator only");
  }
  // Every rank starts from rank 0's weights (and so from the same reference).
  dp_->broadcast_parameters(policy_.params().tensors());
  if (config_.kl_coef > 0) reference_ = policy_.clone();
  ParamStore& params = policy_.params();
  params.set_requires_grad(true);
  for (const std::string& name : params.names()) {
    if (!config_.train_vision_tower && policy_.is_vision_parameter(name)) {
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
  opt.master_weights = config_.master_weights;
  policy_.set_recompute_layers(config_.recompute_layers);
  if (dp_->zero1()) zero_ = std::make_unique<dist::ZeroAdamW>(trainable_, opt, dp_);
  optimizer_ = std::make_unique<AdamW>(zero_ ? std::vector<Tensor>{} : trainable_, opt);
}

void GrpoTrainer::zero_grad() {
  optimizer_->zero_grad();
  if (zero_) zero_->zero_grad();
}

std::vector<int64_t> GrpoTrainer::global_positions(int64_t local, const std::vector<int64_t>& given,
                                                   int64_t* global_count) {
  // One collective whatever `given` is: a rank without prompts passes an empty list either way.
  const int64_t offset = dp_->offset_of(local, global_count);
  if (given.empty()) {
    std::vector<int64_t> where(static_cast<size_t>(local));
    for (int64_t p = 0; p < local; ++p) where[p] = offset + p;
    return where;
  }
  if (static_cast<int64_t>(given.size()) != local) {
    throw std::runtime_error("GRPO step: " + std::to_string(given.size()) + " global indices for " +
                             std::to_string(local) + " prompts");
  }
  for (size_t p = 1; p < given.size(); ++p) {
    if (given[p] <= given[p - 1])
      throw std::runtime_error("GRPO step: global prompt indices must ascend (index " +
                               std::to_string(p) + ")");
  }
  return given;
}

// Per-rank reward metrics -> whole-batch metrics: a mean weighted by each rank's rollouts,
// except times ("*_seconds"), which take the slowest rank.
static nlohmann::json reduce_reward_metrics(dist::DataParallel& dp, const nlohmann::json& mine,
                                            int64_t rollouts) {
  if (!dp.distributed()) return mine;
  nlohmann::json packed = {{"n", rollouts}, {"m", mine}};
  std::vector<std::string> all = dp.all_gather_strings(packed.dump());
  std::map<std::string, std::pair<double, double>> acc;  // key -> (weighted sum, weight)
  std::map<std::string, double> slowest;
  nlohmann::json out = nlohmann::json::object();
  for (const std::string& text : all) {
    nlohmann::json j = nlohmann::json::parse(text);
    const double n = j["n"].get<double>();
    for (auto it = j["m"].begin(); it != j["m"].end(); ++it) {
      const std::string& key = it.key();
      if (!it.value().is_number()) {
        if (!out.contains(key)) out[key] = it.value();
        continue;
      }
      const double v = it.value().get<double>();
      if (key.size() > 8 && key.compare(key.size() - 8, 8, "_seconds") == 0) {
        slowest[key] = slowest.count(key) ? std::max(slowest[key], v) : v;
      } else {
        acc[key].first += v * n;
        acc[key].second += n;
      }
    }
  }
  for (const auto& [key, sw] : acc) out[key] = sw.second > 0 ? sw.first / sw.second : 0.0;
  for (const auto& [key, v] : slowest) out[key] = v;
  return out;
}

GrpoStepStats GrpoTrainer::step(const std::vector<PromptInput>& prompts, int64_t group_size,
                                const SamplingOptions& sampling, const RewardFn& reward,
                                uint64_t seed, const std::vector<int64_t>& global_index) {
  int64_t global_prompts = 0;
  const std::vector<int64_t> where =
      global_positions(static_cast<int64_t>(prompts.size()), global_index, &global_prompts);
  GenerationStats gen;
  std::vector<Generation> rollouts =
      generate_groups(policy_, prompts, group_size, sampling, seed, config_.generation_batch, &gen,
                      dp_->distributed() ? &where : nullptr);
  auto t0 = std::chrono::steady_clock::now();
  RewardResult scored = reward(prompts, rollouts, group_size);
  const double reward_seconds = seconds_since(t0);
  GrpoStepStats stats = train_on(prompts, rollouts, group_size, scored.rewards, where);
  // The slowest rank sets the pace; token rates are the whole batch's.
  stats.generation_seconds = dp_->max(gen.seconds);
  stats.generation_tokens_per_s =
      stats.generation_seconds > 0 ? stats.generated_tokens / stats.generation_seconds : 0;
  stats.reward_seconds = dp_->max(reward_seconds);
  stats.reward_metrics =
      reduce_reward_metrics(*dp_, scored.metrics, static_cast<int64_t>(rollouts.size()));
  return stats;
}

GrpoStepStats GrpoTrainer::train_on(const std::vector<PromptInput>& prompts,
                                    const std::vector<Generation>& rollouts, int64_t group_size,
                                    const std::vector<double>& rewards,
                                    const std::vector<int64_t>& global_index) {
  const auto t_start = std::chrono::steady_clock::now();
  const int64_t P = static_cast<int64_t>(prompts.size());
  const int64_t N = P * group_size;
  if (static_cast<int64_t>(rollouts.size()) != N || static_cast<int64_t>(rewards.size()) != N) {
    throw std::runtime_error("GRPO step: " + std::to_string(P) + " prompts x " +
                             std::to_string(group_size) + " rollouts need " + std::to_string(N) +
                             " rollouts and rewards, got " + std::to_string(rollouts.size()) +
                             " and " + std::to_string(rewards.size()));
  }
  // P and N are this rank's; P_all and N_all the whole batch's (equal with one process).
  int64_t P_all = 0;
  const std::vector<int64_t> where = global_positions(P, global_index, &P_all);
  const int64_t N_all = P_all * group_size;
  if (P_all == 0) throw std::runtime_error("GRPO step: no prompts");
  GrpoStepStats st;
  st.prompts = P_all;
  st.sequences = N_all;

  // Rewards -> advantages, one group per prompt (a group never spans ranks).
  std::vector<float> rewards_f(rewards.begin(), rewards.end());
  kernels::cpu::AdvantageOptions adv_opt;
  adv_opt.scale_by_std = config_.advantage == AdvantageKind::grpo;
  adv_opt.eps = config_.advantage_eps;
  std::vector<float> advantages;
  if (P > 0) {
    advantages = group_advantages(Tensor::from_vector(rewards_f, {P, group_size}), adv_opt)
                     .to_vector<float>();
  }
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
  // Response lengths.
  int64_t truncated = 0, length_min = std::numeric_limits<int64_t>::max(), length_max = 0;
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
    length_min = std::min(length_min, len);
    length_max = std::max(length_max, len);
    st.generated_tokens += len;
    if (!g.stopped) ++truncated;
    rows[i] = i / group_size;
    completions[i] = g.tokens;
  }
  double rsum = 0, rsq = 0, asum = 0;
  for (int64_t i = 0; i < N; ++i) {
    rsum += rewards[i];
    asum += std::fabs(advantages[i]);
  }
  {
    const std::vector<double> totals =
        dp_->sum({rsum, asum, static_cast<double>(constant_groups), static_cast<double>(truncated),
                  static_cast<double>(st.generated_tokens)});
    rsum = totals[0];
    asum = totals[1];
    constant_groups = static_cast<int64_t>(totals[2]);
    truncated = static_cast<int64_t>(totals[3]);
    st.generated_tokens = static_cast<int64_t>(totals[4]);
  }
  st.reward_mean = rsum / N_all;
  for (int64_t i = 0; i < N; ++i)
    rsq += (rewards[i] - st.reward_mean) * (rewards[i] - st.reward_mean);
  st.reward_std = std::sqrt(dp_->sum(rsq) / N_all);
  st.advantage_abs_mean = asum / N_all;
  st.constant_group_fraction = static_cast<double>(constant_groups) / P_all;
  st.response_length_mean = static_cast<double>(st.generated_tokens) / N_all;
  st.response_length_min = static_cast<int64_t>(
      dp_->min(N > 0 ? static_cast<double>(length_min) : std::numeric_limits<double>::infinity()));
  st.response_length_max = static_cast<int64_t>(dp_->max(static_cast<double>(length_max)));
  st.truncated_fraction = static_cast<double>(truncated) / N_all;

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

  // Mini-batch u is global prompts [u * per_update, (u + 1) * per_update); this rank's part
  // of it is its local prompts [first_prompt[u], first_prompt[u + 1]) (global indices ascend).
  const int64_t per_update = std::min<int64_t>(config_.prompts_per_update, P_all);
  const int64_t updates_per_epoch = (P_all + per_update - 1) / per_update;
  std::vector<int64_t> first_prompt(updates_per_epoch + 1, P);
  for (int64_t u = 0, p = 0; u < updates_per_epoch; ++u) {
    while (p < P && where[p] < u * per_update) ++p;
    first_prompt[u] = p;
  }
  std::vector<double> mini_weights(updates_per_epoch, 0.0);
  for (int64_t u = 0; u < updates_per_epoch; ++u) {
    for (int64_t i = first_prompt[u] * group_size; i < first_prompt[u + 1] * group_size; ++i) {
      for (float w : token_weight[i]) mini_weights[u] += w;
    }
  }
  // Token weights are normalised by the whole mini-batch's weight, over every rank.
  mini_weights = dp_->sum(mini_weights);

  std::vector<std::vector<float>> old_logprobs(N);
  if (updates_per_epoch * config_.epochs > 1) {
    if (N > 0)
      old_logprobs =
          score_completions(policy_, prompts, rows, completions, config_.micro_batch_size);
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
      const int64_t first = first_prompt[u] * group_size;
      const int64_t last = first_prompt[u + 1] * group_size;
      const double mini_weight = mini_weights[u];
      if (mini_weight <= 0) continue;  // every group constant and dropped: nothing to learn
      zero_grad();
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
        TokenLogprobs lp = policy_.completion_logprobs(micro_prompts, micro_rows, micro);
        const int64_t L = lp.logprobs.size(1);
        Tensor mask = pad_rows(w, L);
        Tensor adv = pad_rows({token_advantage.begin() + m0, token_advantage.begin() + m1}, L);
        Tensor old = pad_rows({old_logprobs.begin() + m0, old_logprobs.begin() + m1}, L);
        Tensor ref = old;
        if (reference_) {
          NoGradGuard no_grad;
          ref = reference_->completion_logprobs(micro_prompts, micro_rows, micro)
                    .logprobs.contiguous();
        }
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
      // The update of the whole mini-batch: every rank's gradients summed, then one global
      // norm and one skip decision that every rank shares.
      finite = dp_->min(finite ? 1.0 : 0.0) > 0;
      double norm = 0;
      if (zero_) {
        norm = zero_->reduce_gradients();  // clipped in its step
      } else {
        dp_->all_reduce_gradients(trainable_);
        norm = clip_grad_norm(trainable_, max_norm);
      }
      // A NaN/Inf loss or gradient norm: drop this update (the weights stay the last good
      // ones), count it, and stop after max_nonfinite_updates in a row.
      if (!finite || !std::isfinite(norm)) {
        zero_grad();
        ++st.skipped_updates;
        if (++nonfinite_in_a_row_ >= config_.max_nonfinite_updates)
          throw std::runtime_error(
              "GRPO: " + std::to_string(nonfinite_in_a_row_) +
              " updates in a row had a non-finite loss or gradient norm; stopping "
              "(grpo.max_nonfinite_updates = " +
              std::to_string(config_.max_nonfinite_updates) +
              "; checkpoints already written are intact)");
        continue;
      }
      nonfinite_in_a_row_ = 0;
      st.grad_norm += norm;
      st.grad_norm_max = std::max(st.grad_norm_max, norm);
      if (zero_) {
        zero_->step(max_norm);
      } else {
        optimizer_->step();
      }
      ++st.updates;
    }
  }
  zero_grad();
  {
    const std::vector<double> totals =
        dp_->sum({weight_total, st.loss, st.pg_loss, st.kl, st.clip_fraction, st.dual_clip_fraction,
                  st.entropy, entropy_tokens, static_cast<double>(st.trained_tokens)});
    weight_total = totals[0];
    st.loss = totals[1];
    st.pg_loss = totals[2];
    st.kl = totals[3];
    st.clip_fraction = totals[4];
    st.dual_clip_fraction = totals[5];
    st.entropy = totals[6];
    entropy_tokens = totals[7];
    st.trained_tokens = static_cast<int64_t>(totals[8]);
  }
  if (weight_total > 0) {
    st.loss /= weight_total;
    st.pg_loss /= weight_total;
    st.kl /= weight_total;
    st.clip_fraction /= weight_total;
    st.dual_clip_fraction /= weight_total;
  }
  if (entropy_tokens > 0) st.entropy /= entropy_tokens;
  if (st.updates > 0) st.grad_norm /= static_cast<double>(st.updates);
  st.training_seconds = dp_->max(seconds_since(t_start));
  st.training_tokens_per_s = st.training_seconds > 0 ? st.trained_tokens / st.training_seconds : 0;
  return st;
}

}  // namespace visplay::rl
