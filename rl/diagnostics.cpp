#include "rl/diagnostics.h"

#include <stdexcept>

namespace visplay::rl {
namespace {

bool correct(const std::optional<std::string>& answer, const std::string& truth,
             const AnswerOptions& options) {
  return answer.has_value() && answers_equal(*answer, truth, options);
}

double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }

}  // namespace

std::vector<std::optional<std::string>> oracle_answers(const SilverSet& set,
                                                       const std::vector<world::Scene>& scenes) {
  std::vector<std::optional<std::string>> out(set.questions.size());
  for (size_t i = 0; i < set.questions.size(); ++i) {
    const SilverQuestion& q = set.questions[i];
    if (q.image < 0 || static_cast<size_t>(q.image) >= scenes.size()) {
      throw std::runtime_error("oracle_answers: question " + std::to_string(i) + " names image " +
                               std::to_string(q.image) + " but there are " +
                               std::to_string(scenes.size()) + " scenes");
    }
    if (q.valid) out[i] = world::oracle_answer(scenes[static_cast<size_t>(q.image)], q.question);
  }
  return out;
}

nlohmann::json silver_diagnostics(const SilverSet& set,
                                  const std::vector<std::optional<std::string>>& oracle,
                                  const AnswerOptions& options) {
  if (oracle.size() != set.questions.size()) {
    throw std::runtime_error("silver_diagnostics: " + std::to_string(oracle.size()) +
                             " oracle answers for " + std::to_string(set.questions.size()) +
                             " questions");
  }
  double valid = 0, grammar = 0, answerable = 0;
  double labelled = 0, label_ok = 0, kept = 0, kept_ok = 0;
  double majority_ok = 0, greedy_ok = 0, votes = 0, votes_ok = 0;
  double kept_unanswerable = 0, kept_hallucination = 0, kept_hallucination_ok = 0;
  for (size_t i = 0; i < set.questions.size(); ++i) {
    const SilverQuestion& q = set.questions[i];
    valid += q.valid;
    const std::optional<world::QuestionSpec> spec =
        q.valid ? world::parse_question(q.question) : std::nullopt;
    grammar += spec.has_value();
    if (!oracle[i]) {
      // A kept question the oracle cannot answer still trains the Reasoner on its label.
      kept_unanswerable += q.valid && q.kept;
      continue;
    }
    const std::string& truth = *oracle[i];
    answerable += 1;
    const bool label_correct = q.has_label && answers_equal(q.label, truth, options);
    if (q.has_label) {
      labelled += 1;
      label_ok += label_correct;
    }
    if (q.kept) {
      kept += 1;
      kept_ok += label_correct;
      // Labels about something absent: a wrong one names an object that is not there, which
      // is what lowers the hallucination slice.
      if (spec && world::is_hallucination(spec->type, truth)) {
        kept_hallucination += 1;
        kept_hallucination_ok += label_correct;
      }
    }
    majority_ok += label_correct;
    greedy_ok += correct(q.greedy, truth, options);
    for (const auto& v : q.votes) {
      votes += 1;
      votes_ok += correct(v, truth, options);
    }
  }
  const double n = static_cast<double>(set.questions.size());
  nlohmann::json kept_hallucination_accuracy;  // null when none was kept
  if (kept_hallucination > 0) {
    kept_hallucination_accuracy = ratio(kept_hallucination_ok, kept_hallucination);
  }
  nlohmann::json j = {{"candidates", set.questions.size()},
                      {"valid_format", ratio(valid, n)},
                      {"grammar_valid", ratio(grammar, n)},
                      {"answerable", ratio(answerable, n)},
                      {"labelled_answerable", labelled},
                      {"silver_accuracy_all", ratio(label_ok, labelled)},
                      {"kept_answerable", kept},
                      {"silver_accuracy_kept", ratio(kept_ok, kept)},
                      {"kept_unanswerable", kept_unanswerable},
                      {"kept_hallucination", kept_hallucination},
                      {"silver_accuracy_kept_hallucination", kept_hallucination_accuracy},
                      {"majority_accuracy", ratio(majority_ok, answerable)},
                      {"vote_sample_accuracy", ratio(votes_ok, votes)}};
  bool any_greedy = false;
  for (const SilverQuestion& q : set.questions) any_greedy = any_greedy || q.greedy.has_value();
  if (any_greedy) {
    j["greedy_accuracy"] = ratio(greedy_ok, answerable);
    j["self_consistency_margin"] = ratio(majority_ok, answerable) - ratio(greedy_ok, answerable);
  }
  return j;
}

std::optional<double> oracle_accuracy(const std::vector<std::string>& responses,
                                      const std::vector<std::optional<std::string>>& oracle,
                                      const AnswerOptions& options) {
  if (responses.size() != oracle.size()) {
    throw std::runtime_error("oracle_accuracy: " + std::to_string(responses.size()) +
                             " responses for " + std::to_string(oracle.size()) + " answers");
  }
  double n = 0, ok = 0;
  for (size_t i = 0; i < responses.size(); ++i) {
    if (!oracle[i]) continue;
    n += 1;
    ok += correct(extract_boxed(responses[i]), *oracle[i], options);
  }
  if (n == 0) return std::nullopt;
  return ok / n;
}

}  // namespace visplay::rl
