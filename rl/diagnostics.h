// Oracle diagnostics for ShapeWorld images: how good are the silver labels, the questions and
// the Reasoner, measured against the world's oracle. Measurement only: nothing here feeds
// training (the loop never reads an answer from the data).
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "data/shapeworld.h"
#include "rl/answer.h"
#include "rl/role_rewards.h"

namespace visplay::rl {

// The oracle answer to each candidate question: nullopt when the output was invalid, the
// question is outside the ShapeWorld grammar, or it is not askable about that scene.
// scenes[q.image] is the scene of candidate image q.image.
std::vector<std::optional<std::string>> oracle_answers(const SilverSet& set,
                                                       const std::vector<world::Scene>& scenes);

// The silver set's diagnostics:
//   candidates, valid_format, grammar_valid, answerable (fractions of the candidates);
//   silver_accuracy_all / _kept: label == oracle among answerable questions with a label
//     (all / kept), with their counts;
//   kept_unanswerable: kept valid questions the oracle cannot answer (outside the grammar or
//     not askable about the scene);
//   kept_hallucination, silver_accuracy_kept_hallucination: the kept answerable questions
//     whose true answer is in the hallucination slice (query_* "none", count_* "0", exist
//     "no"), and their labels' accuracy (null when there are none);
//   majority_accuracy, greedy_accuracy (when greedy answers exist) and
//   self_consistency_margin = majority - greedy, over the same answerable questions (a missing
//   label or greedy answer counts as wrong); vote_sample_accuracy = mean correctness of a
//   single vote.
nlohmann::json silver_diagnostics(const SilverSet& set,
                                  const std::vector<std::optional<std::string>>& oracle,
                                  const AnswerOptions& options = {});

// Accuracy of responses (their last \boxed{} answer) against the oracle, over the entries with
// an oracle answer; nullopt when there are none.
std::optional<double> oracle_accuracy(const std::vector<std::string>& responses,
                                      const std::vector<std::optional<std::string>>& oracle,
                                      const AnswerOptions& options = {});

}  // namespace visplay::rl
