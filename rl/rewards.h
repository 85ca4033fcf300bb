// VisPlay's reward formulas: the Questioner's uncertainty and diversity terms and their
// combination, the Reasoner's silver-label reward, and the silver-label confidence band.
// Each paper-vs-reference-code difference is an enum whose names are "paper" / "reference";
// docs/rewards.md writes the formulas out with the reasons for each choice.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rl/answer.h"
#include "rl/bleu.h"

namespace visplay::rl {

// paper: r_unc = 1 - |2c - 1| (1 at c = 0.5, 0 at c = 0 or 1); reference: min(c, 1 - c).
enum class UncertaintyReward { paper, reference };
// paper: cluster the questions of one image, r_div = lambda * |C_k| / G (G = that image's
// sample count); reference: cluster the whole batch, r_div = lambda * |C_k| / batch size.
enum class DiversityScope { paper, reference };
// paper: valid * relu(r_unc - r_div), an invalid output gets 0;
// reference: r_unc - r_div without relu, an invalid output gets -1.
enum class QuestionerReward { paper, reference };
// paper: 1 if the boxed answer equals the silver label else 0;
// reference: (1 - w) * match + w * format, w = format_weight (0.1).
enum class ReasonerReward { paper, reference };

double uncertainty_reward(double confidence, UncertaintyReward kind);

struct QuestionerRewardOptions {
  UncertaintyReward uncertainty = UncertaintyReward::paper;
  DiversityScope diversity_scope = DiversityScope::paper;
  QuestionerReward combine = QuestionerReward::paper;
  double diversity_lambda = 1.0;
  double cluster_threshold = 0.5;  // on the distance 1 - BLEU
  BleuSymmetry bleu_symmetry = BleuSymmetry::average;
};

// One sampled Questioner output. `confidence` is the Reasoner's majority share c over its m
// answers to `question`; it is read only when `valid`.
struct QuestionerSample {
  int group = 0;  // image index: the G samples of one image share it (need not be contiguous)
  bool valid = false;
  std::string question;
  double confidence = 0;
};

// Per sample; invalid samples have uncertainty = diversity = 0 and cluster_size = 0.
struct QuestionerRewards {
  std::vector<double> reward;
  std::vector<double> uncertainty;  // r_unc
  std::vector<double> diversity;    // r_div
  std::vector<int> cluster_size;    // |C_k| of the sample's cluster
};

// Only valid questions are clustered (an invalid output has no question); the divisor is the
// number of samples in the group (paper) or batch (reference), invalid ones included, so G = 8
// whatever the validity. Throws std::invalid_argument for a valid sample with c outside [0, 1].
QuestionerRewards questioner_rewards(std::span<const QuestionerSample> samples,
                                     const QuestionerRewardOptions& options = {});

struct ReasonerRewardOptions {
  ReasonerReward kind = ReasonerReward::paper;
  double format_weight = 0.1;
  AnswerOptions answer;
};

// The reference code's format check, read leniently about leading spaces: the response starts
// with `<think>`, a `</think>` follows, and a complete `\boxed{...}` comes after it.
bool has_think_format(std::string_view response);

// Match = the last \boxed{} of `response` equals `silver_label` (answers_equal); an answer that
// does not extract never matches.
double reasoner_reward(std::string_view response, std::string_view silver_label,
                       const ReasonerRewardOptions& options = {});

// Silver-label filter: keep a question when low <= c <= high. c = k/m is a rounded float
// (e.g. 7/9 * 9 != 7 exactly), so both bounds are widened by 1e-9.
constexpr double kBandEpsilon = 1e-9;
bool in_confidence_band(double confidence, double low, double high);

}  // namespace visplay::rl
