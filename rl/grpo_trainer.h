// GRPO for one role: sample G rollouts per prompt (prefix shared), score them with a reward
// callback, turn rewards into group-relative advantages, and update the policy with the clipped
// surrogate + k3 KL loss against a frozen reference (the role's weights when the trainer was
// made, i.e. at the start of the iteration), micro-batched with gradient accumulation,
// global-norm clipping and AdamW.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "model/policy.h"
#include "model/sampler.h"
#include "model/vlm.h"
#include "rl/config.h"
#include "rl/rollout.h"
#include "runtime/dist/data_parallel.h"
#include "runtime/dist/zero.h"
#include "runtime/optim.h"

namespace visplay::rl {

// What a reward callback returns: one reward per rollout (index p * G + j) and any metrics of
// its own (they are merged into the step's metrics under their names).
struct RewardResult {
  std::vector<double> rewards;
  nlohmann::json metrics = nlohmann::json::object();
};
// rollouts[p * group_size + j] is sample j of prompts[p].
using RewardFn =
    std::function<RewardResult(const std::vector<PromptInput>& prompts,
                               const std::vector<Generation>& rollouts, int64_t group_size)>;

struct GrpoStepStats {
  int64_t prompts = 0;
  int64_t sequences = 0;
  int64_t updates = 0;  // optimizer steps taken
  double reward_mean = 0, reward_std = 0;
  double advantage_abs_mean = 0;
  double constant_group_fraction = 0;    // groups whose rewards are all equal (advantage 0)
  double loss = 0, pg_loss = 0, kl = 0;  // token-weighted means over the step
  double clip_fraction = 0, dual_clip_fraction = 0;
  double entropy = 0;                       // policy entropy on response tokens (mean)
  double grad_norm = 0, grad_norm_max = 0;  // before clipping; mean / max over updates
  double response_length_mean = 0;
  int64_t response_length_min = 0, response_length_max = 0;
  double truncated_fraction = 0;  // rollouts that hit max_new_tokens without the stop token
  int64_t generated_tokens = 0, trained_tokens = 0;
  double generation_seconds = 0, reward_seconds = 0, training_seconds = 0;
  double generation_tokens_per_s = 0, training_tokens_per_s = 0;
  bool recomputed_old_logprobs = false;
  int64_t skipped_updates = 0;  // updates dropped for a NaN/Inf loss or gradient norm
  nlohmann::json reward_metrics = nlohmann::json::object();

  nlohmann::json to_json() const;
};

class GrpoTrainer {
 public:
  // Trains `policy` in place. The reference is a deep copy of its weights now (skipped when
  // kl_coef = 0). Throws std::runtime_error for an option the loss kernel cannot do (a KL
  // estimator other than k3).
  // Data parallel (`dp` with more than one rank): rank 0's weights are broadcast first; each
  // rank then passes its share of every step's prompts (see step / train_on) and the ranks
  // together make the update a single process would make on the whole batch. Null: one
  // process.
  // `policy` must outlive the trainer.
  GrpoTrainer(PolicyModel& policy, const GrpoConfig& config,
              std::shared_ptr<dist::DataParallel> dp = nullptr);
  // The demo VLM (trained in place through a VLMPolicy that shares its weights).
  GrpoTrainer(VLM& policy, const GrpoConfig& config,
              std::shared_ptr<dist::DataParallel> dp = nullptr);

  // Generates group_size rollouts per prompt (seeded by `seed`), scores them with `reward`, and
  // trains on them (see train_on). The reward callback sees this rank's prompts only.
  GrpoStepStats step(const std::vector<PromptInput>& prompts, int64_t group_size,
                     const SamplingOptions& sampling, const RewardFn& reward, uint64_t seed,
                     const std::vector<int64_t>& global_index = {});

  // The update on given rollouts and rewards: prompts are split into mini-batches of
  // prompts_per_update (one optimizer step each, `epochs` passes), each mini-batch into
  // micro-batches of micro_batch_size sequences whose gradients accumulate. Old log-probs are
  // the sampling log-probs when the step makes one update, else they are recomputed with the
  // training forward before the first update (so every ratio compares like with like).
  // Data parallel: `prompts` are this rank's, global_index[p] their (ascending) positions in
  // the step's global batch; empty means the ranks' prompts follow each other in rank order.
  // Mini-batch u is global prompts [u * prompts_per_update, ...) whichever rank holds them
  // (dist::update_shard_indices spreads every mini-batch over all ranks); the token weights
  // are normalised by the global mini-batch weight, gradients summed over ranks before
  // clipping, and the statistics are those of the whole batch.
  GrpoStepStats train_on(const std::vector<PromptInput>& prompts,
                         const std::vector<Generation>& rollouts, int64_t group_size,
                         const std::vector<double>& rewards,
                         const std::vector<int64_t>& global_index = {});

  const PolicyModel& policy() const { return policy_; }
  const PolicyModel* reference_policy() const { return reference_.get(); }
  // The reference as a demo VLM (null without a reference or for another model kind).
  const VLM* reference() const;
  AdamW& optimizer() { return *optimizer_; }                   // without parameters under ZeRO-1
  const dist::ZeroAdamW* zero() const { return zero_.get(); }  // null without ZeRO-1
  const GrpoConfig& config() const { return config_; }
  // Updates skipped in a row for a non-finite loss or gradient norm (part of a saved training
  // state, so that a resumed run stops exactly where an uninterrupted one would).
  int64_t nonfinite_in_a_row() const { return nonfinite_in_a_row_; }
  void set_nonfinite_in_a_row(int64_t n) { nonfinite_in_a_row_ = n; }
  dist::DataParallel& data_parallel() { return *dp_; }

 private:
  GrpoTrainer(std::unique_ptr<PolicyModel> owned, const GrpoConfig& config,
              std::shared_ptr<dist::DataParallel> dp);
  // global_index, or the rank-order layout when it is empty; sets the global prompt count.
  std::vector<int64_t> global_positions(int64_t local, const std::vector<int64_t>& given,
                                        int64_t* global_count);
  std::unique_ptr<PolicyModel> owned_policy_;  // the VLMPolicy of the VLM constructor
  PolicyModel& policy_;
  GrpoConfig config_;
  std::shared_ptr<dist::DataParallel> dp_;
  std::unique_ptr<PolicyModel> reference_;
  std::vector<Tensor> trainable_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<dist::ZeroAdamW> zero_;  // ZeRO-1 (dp->zero1()): holds the moments instead
  void zero_grad();
  int64_t nonfinite_in_a_row_ = 0;
};

// A deep copy of a model (fresh storage, no gradients).
std::unique_ptr<VLM> clone_model(const VLM& model);

}  // namespace visplay::rl
