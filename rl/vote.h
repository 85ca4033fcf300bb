// Majority vote over m sampled answers: the silver label (data building) and the confidence c
// that drives the Questioner's uncertainty reward.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "rl/answer.h"

namespace visplay::rl {

struct VoteResult {
  // False when no sample produced an answer: there is no label and count = c = 0.
  bool has_label = false;
  std::string label;           // first answer of the winning bucket, as extracted (not normalised)
  int count = 0;               // size of the winning bucket
  int num_samples = 0;         // m, unanswered samples included
  double confidence = 0;       // c = count / m
  int num_unanswered = 0;      // samples without an extractable answer
  int winner = -1;             // index of the winning bucket in bucket_sizes, -1 without a label
  std::vector<int> bucket_of;  // per sample: its bucket, -1 for "no answer"
  std::vector<int> bucket_sizes;  // buckets in order of their first sample
};

// Buckets answers by answers_equal: each answer joins the first existing bucket whose first
// answer equals it (equality need not be transitive, so this order is what makes the result
// deterministic), else opens a new one. Unanswered samples (nullopt) form a "no answer" group
// that counts in m but can never win. The winner is the largest bucket; a tie goes to the bucket
// whose first answer came earliest.
VoteResult majority_vote(std::span<const std::optional<std::string>> answers,
                         const AnswerOptions& options = {});

// Extracts the last \boxed{} answer of each response, then votes.
VoteResult majority_vote_responses(std::span<const std::string> responses,
                                   const AnswerOptions& options = {});

}  // namespace visplay::rl
