#include "rl/vote.h"

namespace visplay::rl {

VoteResult majority_vote(std::span<const std::optional<std::string>> answers,
                         const AnswerOptions& options) {
  VoteResult result;
  result.num_samples = static_cast<int>(answers.size());
  result.bucket_of.assign(answers.size(), -1);
  std::vector<std::string> bucket_key;  // normalised first answer of each bucket
  std::vector<size_t> bucket_first;     // sample index of that first answer
  for (size_t i = 0; i < answers.size(); ++i) {
    if (!answers[i]) {
      ++result.num_unanswered;
      continue;
    }
    const std::string key = normalize_answer(*answers[i]);
    int bucket = -1;
    for (size_t b = 0; b < bucket_key.size(); ++b) {
      if (normalized_answers_equal(bucket_key[b], key, options)) {
        bucket = static_cast<int>(b);
        break;
      }
    }
    if (bucket < 0) {
      bucket = static_cast<int>(bucket_key.size());
      bucket_key.push_back(key);
      bucket_first.push_back(i);
      result.bucket_sizes.push_back(0);
    }
    result.bucket_of[i] = bucket;
    ++result.bucket_sizes[bucket];
  }
  // Buckets are in first-occurrence order, so a strict '>' keeps the earliest on ties.
  for (size_t b = 0; b < result.bucket_sizes.size(); ++b) {
    if (result.winner < 0 || result.bucket_sizes[b] > result.bucket_sizes[result.winner]) {
      result.winner = static_cast<int>(b);
    }
  }
  if (result.winner >= 0) {
    result.has_label = true;
    result.label = *answers[bucket_first[result.winner]];
    result.count = result.bucket_sizes[result.winner];
    result.confidence = static_cast<double>(result.count) / result.num_samples;
  }
  return result;
}

VoteResult majority_vote_responses(std::span<const std::string> responses,
                                   const AnswerOptions& options) {
  std::vector<std::optional<std::string>> answers;
  answers.reserve(responses.size());
  for (const std::string& response : responses) answers.push_back(extract_boxed(response));
  return majority_vote(answers, options);
}

}  // namespace visplay::rl
