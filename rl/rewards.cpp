#include "rl/rewards.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string>

#include "rl/cluster.h"

namespace visplay::rl {

double uncertainty_reward(double confidence, UncertaintyReward kind) {
  if (kind == UncertaintyReward::reference) return std::min(confidence, 1.0 - confidence);
  return 1.0 - std::fabs(2.0 * confidence - 1.0);
}

QuestionerRewards questioner_rewards(std::span<const QuestionerSample> samples,
                                     const QuestionerRewardOptions& options) {
  const size_t n = samples.size();
  QuestionerRewards out;
  out.reward.assign(n, 0.0);
  out.uncertainty.assign(n, 0.0);
  out.diversity.assign(n, 0.0);
  out.cluster_size.assign(n, 0);

  // Clustering units: one per image group (paper) or the whole batch (reference). Each unit
  // lists its valid samples (clustered) and its total sample count (the divisor).
  std::map<int, std::vector<size_t>> valid_members;
  std::map<int, int> unit_size;
  for (size_t i = 0; i < n; ++i) {
    const int unit = options.diversity_scope == DiversityScope::paper ? samples[i].group : 0;
    ++unit_size[unit];
    if (!samples[i].valid) continue;
    const double c = samples[i].confidence;
    if (!(c >= 0.0 && c <= 1.0)) {
      throw std::invalid_argument("questioner_rewards: sample " + std::to_string(i) +
                                  " has confidence " + std::to_string(c) + " outside [0, 1]");
    }
    valid_members[unit].push_back(i);
  }
  for (const auto& [unit, members] : valid_members) {
    std::vector<std::string> questions;
    questions.reserve(members.size());
    for (size_t i : members) questions.push_back(samples[i].question);
    const auto distance = bleu_distance_matrix(questions, options.bleu_symmetry);
    const Clustering clusters = agglomerative_average(distance, static_cast<int>(members.size()),
                                                      options.cluster_threshold);
    for (size_t k = 0; k < members.size(); ++k) {
      const size_t i = members[k];
      out.cluster_size[i] = clusters.size_of_item(static_cast<int>(k));
      out.diversity[i] = options.diversity_lambda * out.cluster_size[i] / unit_size[unit];
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (!samples[i].valid) {
      out.reward[i] = options.combine == QuestionerReward::paper ? 0.0 : -1.0;
      continue;
    }
    out.uncertainty[i] = uncertainty_reward(samples[i].confidence, options.uncertainty);
    const double margin = out.uncertainty[i] - out.diversity[i];
    out.reward[i] = options.combine == QuestionerReward::paper ? std::max(0.0, margin) : margin;
  }
  return out;
}

bool has_think_format(std::string_view response) {
  while (!response.empty() && std::isspace(static_cast<unsigned char>(response.front()))) {
    response.remove_prefix(1);
  }
  constexpr std::string_view kOpen = "<think>", kClose = "</think>";
  if (response.substr(0, kOpen.size()) != kOpen) return false;
  const size_t close = response.find(kClose, kOpen.size());
  if (close == std::string_view::npos) return false;
  return extract_boxed(response.substr(close + kClose.size())).has_value();
}

double reasoner_reward(std::string_view response, std::string_view silver_label,
                       const ReasonerRewardOptions& options) {
  const auto answer = extract_boxed(response);
  const double match = answer && answers_equal(*answer, silver_label, options.answer) ? 1.0 : 0.0;
  if (options.kind == ReasonerReward::paper) return match;
  const double format = has_think_format(response) ? 1.0 : 0.0;
  return (1.0 - options.format_weight) * match + options.format_weight * format;
}

bool in_confidence_band(double confidence, double low, double high) {
  return confidence >= low - kBandEpsilon && confidence <= high + kBandEpsilon;
}

}  // namespace visplay::rl
