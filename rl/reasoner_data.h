// What the Reasoner trains on in an iteration's third phase: which of the kept (in-band)
// questions, with which labels, in which order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "rl/config.h"
#include "rl/role_rewards.h"

namespace visplay::rl {

struct ReasonerData {
  std::vector<size_t> questions;    // indices into silver.questions, ascending
  std::vector<std::string> labels;  // the label each of them trains with
};

// The kept questions and their silver labels. The diagnostic sources (LabelSource) need
// `oracle` (indexed like silver.questions; nullopt = the oracle cannot answer): they leave out
// the questions it cannot answer, and `oracle` trains with the true answers.
ReasonerData select_reasoner_data(const SilverSet& silver,
                                  const std::vector<std::optional<std::string>>& oracle,
                                  LabelSource source);

// The order in which the training steps visit the questions (indices into `labels`; step s
// takes entries s * per_step ... of the returned list, cyclically).
// Without balancing: one seeded permutation (the questions come round equally often).
// With balancing, every distinct label comes round equally often, whatever the questions'
// label mix: the labels take turns (in sorted order), each cycling through a seeded
// permutation of its own questions; `length` entries. Why: the Questioner's questions are
// skewed (most "is there a ..." questions are answered "no"), and training on that mix moves
// the Reasoner's answer prior away from a balanced benchmark's, even with correct labels.
std::vector<size_t> reasoner_order(const std::vector<std::string>& labels, size_t length,
                                   uint64_t seed, bool balance_labels);

}  // namespace visplay::rl
