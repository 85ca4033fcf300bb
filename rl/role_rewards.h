// The roles run on a model: asking questions about images, answering them (direct, vote or
// training prompt), and the rewards and silver labels built from those answers:
//   - Questioner reward: the frozen Reasoner answers every valid question m times directly
//     (all questions batched, each prompt's KV cache shared by its m samples); c = majority
//     share; r_unc and r_div from rl/rewards.
//   - Silver labels: one question per candidate image, m votes with step-by-step prompts,
//     majority -> label, keep band_low <= c <= band_high.
//   - Reasoner reward: the boxed answer equals the silver label.
// This is also the API for eval and the demo: ask_questions / answer_questions.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "model/policy.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "model/vlm.h"
#include "rl/answer.h"
#include "rl/config.h"
#include "rl/grpo_trainer.h"
#include "rl/roles.h"
#include "rl/vote.h"

namespace visplay::rl {

// Everything needed to turn role texts into model prompts and back.
struct RoleSetup {
  const Tokenizer* tokenizer = nullptr;
  ChatFormat format;
  PromptConfig prompts;
  // Image-pad tokens a prompt needs for a prepared image (PolicyModel::visual_tokens).
  std::function<int64_t(const Tensor& image)> visual_tokens;
  int64_t stop_token = -1;
  int64_t generation_batch = 512;  // most sequences one generation call decodes together
};
// Format from the tokenizer kind, prompts resolved for its vocabulary (resolve_prompts), visual
// token counts from the model (which must outlive the setup). Throws when the model's
// image-pad id differs from the tokenizer's (they would disagree about where the image goes).
RoleSetup make_role_setup(const PolicyModel& model, const Tokenizer& tokenizer,
                          const VisPlayConfig& config);
// The demo VLM (its visual token count is fixed; the setup keeps no reference to it).
RoleSetup make_role_setup(const VLM& model, const Tokenizer& tokenizer,
                          const VisPlayConfig& config);

// One sampled Questioner output.
struct AskedQuestion {
  std::string output;  // decoded response (stop token dropped)
  ParsedQuestion parsed;
};
// samples_per_image questions for each image (prepared by the model: PolicyModel::prepare_image);
// result[i][j] is sample j of image i.
std::vector<std::vector<AskedQuestion>> ask_questions(
    const PolicyModel& questioner, const RoleSetup& setup, const std::vector<Tensor>& images,
    int64_t samples_per_image, const SamplingConfig& sampling, uint64_t seed);

// samples Reasoner responses to each (image, question) pair with the mode's prompt;
// result[i][j] is response j to question i (decoded, stop token dropped).
std::vector<std::vector<std::string>> answer_questions(
    const PolicyModel& reasoner, const RoleSetup& setup, const std::vector<Tensor>& images,
    const std::vector<std::string>& questions, ReasonerMode mode, int64_t samples,
    const SamplingConfig& sampling, uint64_t seed);

// The Questioner's GRPO reward against a frozen Reasoner. `reasoner` must outlive the returned
// callback; call k (counted from first_call: a resumed run passes the calls already made) uses
// seed mix_seed(seed, k). Metrics: valid_fraction, r_unc_mean, r_div_mean, confidence_mean,
// cluster_size_mean, oracle_answer_seconds.
RewardFn make_questioner_reward(const PolicyModel& reasoner, const RoleSetup& setup,
                                const VisPlayConfig& config, uint64_t seed,
                                uint64_t first_call = 0);
// The demo VLM (the callback holds a VLMPolicy sharing its weights).
RewardFn make_questioner_reward(const VLM& reasoner, const RoleSetup& setup,
                                const VisPlayConfig& config, uint64_t seed,
                                uint64_t first_call = 0);

// One candidate question of the data-building phase.
struct SilverQuestion {
  int64_t image = 0;   // index into the candidate images
  std::string output;  // the Questioner's raw output
  bool valid = false;  // the <question> block parsed
  std::string question;
  bool has_label = false;
  std::string label;                              // majority answer (as extracted)
  double confidence = 0;                          // c
  bool kept = false;                              // in the confidence band
  std::vector<std::optional<std::string>> votes;  // extracted answer of each vote
  std::optional<std::string> greedy;              // greedy answer, when asked for
};
struct SilverSet {
  std::vector<SilverQuestion> questions;
  int64_t kept = 0;
  std::vector<int64_t> confidence_histogram;  // votes of the winner: bin k = k of m (k = 0..m)
  double seconds = 0;
};
// The new Questioner asks one question per image; the frozen Reasoner votes
// data.vote_samples times with the vote prompt; kept = label and c in the band. With
// with_greedy, each valid question also gets one greedy answer (vote prompt) for diagnostics.
SilverSet build_silver_set(const PolicyModel& questioner, const PolicyModel& reasoner,
                           const RoleSetup& setup, const VisPlayConfig& config,
                           const std::vector<Tensor>& images, uint64_t seed, bool with_greedy);

// The Reasoner's GRPO reward: prompts[p] is the training prompt of a question whose silver label
// is labels[p]. Metrics: silver_match, format_fraction (a complete \boxed{} answer).
RewardFn make_reasoner_reward(const RoleSetup& setup, const VisPlayConfig& config,
                              std::vector<std::string> labels);

// A well-mixed seed for (base, a, b): iteration, phase, step...
uint64_t mix_seed(uint64_t base, uint64_t a, uint64_t b = 0);

}  // namespace visplay::rl
