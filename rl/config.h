// Every knob of the VisPlay loop in one struct, defaults = the paper's values (the reference
// code's where the paper says nothing; see /shared/visplay-method.md and docs/rewards.md).
// JSON I/O: sections mirror the nested structs; a file may give any subset of keys, unknown
// keys and nonsense values are errors naming the key and the value.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "rl/bleu.h"
#include "rl/rewards.h"

namespace visplay::rl {

// GRPO variants (used by the training code; here so that they live in the config).
enum class AdvantageKind { grpo, dr_grpo };  // (r - mean)/(std + eps) | r - mean (Dr. GRPO)
enum class KlEstimator { k1, k2, k3 };       // k3 = exp(ref - pi) - (ref - pi) - 1
enum class LossAggregation { token_mean, seq_mean_token_mean };
// Where the Reasoner's training labels come from. Only `silver` is VisPlay; the others need
// the ShapeWorld oracle and exist to diagnose the loop: `silver_well_posed` drops the kept
// questions the oracle cannot answer (ill-posed), `oracle` also replaces each silver label by
// the true answer (an upper bound for the same questions).
enum class LabelSource { silver, silver_well_posed, oracle };

// One way of sampling from a model.
struct SamplingConfig {
  double temperature = 1.0;  // 0 = greedy
  double top_p = 1.0;        // (0, 1]; 1 = off
  int top_k = 0;             // 0 = off
  int max_new_tokens = 1024;
};

struct QuestionerConfig {
  int group_size = 8;  // G questions per image
  int steps = 20;      // GRPO steps per iteration (N)
  SamplingConfig rollout{1.0, 0.99, 0, 2048};
};

struct ReasonerConfig {
  int group_size = 8;  // rollouts per kept question
  int steps = 20;      // GRPO steps per iteration (N)
  SamplingConfig rollout{1.0, 0.99, 0, 4096};
  // Guard against collapse: skip the Reasoner phase (logged) when fewer than this share of
  // the candidate questions survive the confidence band.
  double min_kept_fraction = 0.05;
  LabelSource labels = LabelSource::silver;  // diagnostics only, see LabelSource
  // Every distinct label comes round equally often in the training steps (reasoner_order in
  // rl/reasoner_data.h); off: each kept question equally often.
  bool balance_labels = false;
};

// The frozen Reasoner as uncertainty oracle during Questioner training: direct answers.
struct UncertaintyConfig {
  int samples = 10;  // m
  SamplingConfig sampling{1.0, 1.0, 40, 4096};
};

// Phase 2: questions on candidate images, voted silver labels, the confidence band.
struct DataConfig {
  int candidate_images = 8000;
  bool same_images_every_iteration = true;
  SamplingConfig question_sampling{1.0, 0.95, 0, 2048};
  int vote_samples = 9;  // m for the silver label, with step-by-step reasoning
  SamplingConfig vote_sampling{1.0, 1.0, 0, 4096};
  double band_low = 0.25;  // keep band_low <= c <= band_high (reference code: 0.3 .. 0.8)
  double band_high = 0.75;
};

struct GrpoConfig {
  int prompts_per_step = 512;
  int prompts_per_update = 128;  // optimizer updates per step = prompts_per_step / this
  int epochs = 1;
  // Updates whose loss or gradient norm is NaN/Inf are skipped (logged and counted); this many
  // in a row stop the run with an error, the checkpoints already written intact.
  int max_nonfinite_updates = 3;
  int micro_batch_size = 8;  // sequences per forward/backward (gradient accumulation)
  AdvantageKind advantage = AdvantageKind::grpo;
  double advantage_eps = 1e-6;
  bool drop_constant_groups = false;  // leave groups with all-equal rewards out of the loss
  double clip_eps_low = 0.2;
  double clip_eps_high = 0.3;
  double dual_clip = 3.0;  // c of dual-clip PPO; > 1
  LossAggregation loss_aggregation = LossAggregation::token_mean;
  double kl_coef = 0.01;
  KlEstimator kl_estimator = KlEstimator::k3;
  double lr = 1e-6;
  double weight_decay = 0.01;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_eps = 1e-8;
  double grad_clip = 1.0;  // global norm; 0 = off
  bool train_vision_tower = true;
  // Mixed precision: a Qwen2.5-VL policy's weights are held in bf16 and AdamW keeps f32 master
  // weights and moments for them (runtime/optim.h AdamWOptions::master_weights). Off: f32.
  bool master_weights = false;
  // Activation recomputation in the training forward (runtime/tensor.h checkpoint): Qwen2.5-VL
  // decoder layers and vision blocks, the demo VLM's decoder layers. Far less activation
  // memory for one more forward of each micro-batch; the gradients are the same bit for bit.
  bool recompute_layers = false;
  // Most sequences one batched generation call decodes together (prompts are chunked; each
  // sequence has its own seed, so chunking does not change what is sampled).
  int generation_batch = 512;
};

struct RewardConfig {
  UncertaintyReward uncertainty = UncertaintyReward::paper;
  DiversityScope diversity_scope = DiversityScope::paper;
  QuestionerReward questioner = QuestionerReward::paper;
  ReasonerReward reasoner = ReasonerReward::paper;
  double diversity_lambda = 1.0;
  double cluster_threshold = 0.5;
  BleuSymmetry bleu_symmetry = BleuSymmetry::average;
  double format_weight = 0.1;   // reasoner == reference: (1 - w) * match + w * format
  bool answer_no_rule = false;  // reference code: answers that both contain "no " are equal

  QuestionerRewardOptions questioner_options() const;
  ReasonerRewardOptions reasoner_options() const;
};

struct ImageConfig {
  int64_t min_pixels = 512 * 512;  // area-preserving resize into [min, max] pixels
  int64_t max_pixels = 2048 * 2048;
};

// User-turn texts; the chat template and the image placement belong to the model.
// Reasoner prompts contain the placeholder {question}.
struct PromptConfig {
  std::string questioner =
      "You create questions about images. Study the image, then write exactly one question "
      "that can only be answered by analysing or reasoning about what it shows, not by "
      "describing it. Choose the question type: multiple choice (yes/no or options A-D), "
      "numerical, or regression. Reply with nothing but "
      "<type>TYPE</type><question>QUESTION</question><answer>ANSWER</answer>, numbers without "
      "units.";
  std::string reasoner_direct =
      "{question}\nGive only the final answer inside \\boxed{}, with no reasoning.";
  std::string reasoner_vote =
      "{question}\nThink step by step about the image and the question, then give the final "
      "answer inside \\boxed{}.";
  std::string reasoner_train =
      "{question}\nReason step by step about this question, then give the final answer inside "
      "\\boxed{}, and nowhere else.";
};

struct VisPlayConfig {
  int iterations = 3;
  int64_t seed = 1234;
  // The crash-safe training state (OUT/state/train_state.safetensors, docs/reliability.md) is
  // written every this many GRPO steps or silver-label chunks, and at the end of every phase.
  int checkpoint_every = 5;
  QuestionerConfig questioner;
  ReasonerConfig reasoner;
  UncertaintyConfig uncertainty;
  DataConfig data;
  GrpoConfig grpo;
  RewardConfig rewards;
  ImageConfig images;
  PromptConfig prompts;

  // Throws std::runtime_error naming the first bad key and its value.
  void validate() const;

  nlohmann::json to_json() const;
  // Starts from the defaults, applies every key of `j`, validates. Throws std::runtime_error for
  // an unknown key, a wrong type or an invalid value (message: key and value).
  static VisPlayConfig from_json(const nlohmann::json& j);

  // Files: the same, with the path in every error message.
  static VisPlayConfig load(const std::string& path);
  void save(const std::string& path) const;
};

// "paper" / "reference" and the other enum spellings used in the JSON.
std::string to_string(UncertaintyReward v);
std::string to_string(DiversityScope v);
std::string to_string(QuestionerReward v);
std::string to_string(ReasonerReward v);
std::string to_string(BleuSymmetry v);
std::string to_string(AdvantageKind v);
std::string to_string(KlEstimator v);
std::string to_string(LossAggregation v);
std::string to_string(LabelSource v);

}  // namespace visplay::rl
