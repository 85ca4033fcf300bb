// Majority vote: counts, confidence, tie-break, unanswered samples.
#include "rl/vote.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace visplay::rl {
namespace {

using Answers = std::vector<std::optional<std::string>>;

TEST(MajorityVote, LargestBucketWins) {
  const Answers answers = {"3", "4", "4", "3", "4"};
  const VoteResult v = majority_vote(answers);
  ASSERT_TRUE(v.has_label);
  EXPECT_EQ(v.label, "4");
  EXPECT_EQ(v.count, 3);
  EXPECT_EQ(v.num_samples, 5);
  EXPECT_DOUBLE_EQ(v.confidence, 0.6);
  EXPECT_EQ(v.bucket_sizes, (std::vector<int>{2, 3}));
  EXPECT_EQ(v.bucket_of, (std::vector<int>{0, 1, 1, 0, 1}));
  EXPECT_EQ(v.winner, 1);
}

TEST(MajorityVote, TieGoesToEarliestFirstOccurrence) {
  EXPECT_EQ(majority_vote(Answers{"4", "3", "3", "4"}).label, "4");
  EXPECT_EQ(majority_vote(Answers{"3", "4", "4", "3"}).label, "3");
  // Three-way tie with a late-starting bucket.
  const VoteResult v = majority_vote(Answers{"b", "c", "a", "a", "c", "b"});
  EXPECT_EQ(v.label, "b");
  EXPECT_EQ(v.count, 2);
  EXPECT_NEAR(v.confidence, 1.0 / 3.0, 1e-15);
}

TEST(MajorityVote, BucketsByAnswerEquality) {
  const Answers answers = {"2", "0.5", "1/2", "\\frac{1}{2}", "2.0", "$\\dfrac{2}{4}$"};
  const VoteResult v = majority_vote(answers);
  EXPECT_EQ(v.label, "0.5");  // first answer of the winning bucket, as written
  EXPECT_EQ(v.count, 4);
  EXPECT_EQ(v.bucket_sizes, (std::vector<int>{2, 4}));
  EXPECT_NEAR(v.confidence, 4.0 / 6.0, 1e-15);
}

TEST(MajorityVote, NoRuleOption) {
  const Answers answers = {"there is no circle", "yes", "no square", "yes"};
  EXPECT_EQ(majority_vote(answers).label, "yes");
  AnswerOptions reference;
  reference.both_contain_no_rule = true;
  const VoteResult v = majority_vote(answers, reference);
  EXPECT_EQ(v.label, "there is no circle");  // 2-2 tie, earliest bucket
  EXPECT_EQ(v.count, 2);
}

TEST(MajorityVote, UnansweredCountInMButNeverWin) {
  Answers answers(6, std::nullopt);
  for (int i = 0; i < 4; ++i) answers.push_back("5");
  const VoteResult v = majority_vote(answers);
  ASSERT_TRUE(v.has_label);
  EXPECT_EQ(v.label, "5");
  EXPECT_EQ(v.count, 4);
  EXPECT_EQ(v.num_unanswered, 6);
  EXPECT_EQ(v.num_samples, 10);
  EXPECT_DOUBLE_EQ(v.confidence, 0.4);
  EXPECT_EQ(v.bucket_of[0], -1);
  EXPECT_EQ(v.bucket_of[9], 0);
}

TEST(MajorityVote, NothingAnswered) {
  const VoteResult v = majority_vote(Answers(9, std::nullopt));
  EXPECT_FALSE(v.has_label);
  EXPECT_EQ(v.count, 0);
  EXPECT_EQ(v.confidence, 0.0);
  EXPECT_EQ(v.num_unanswered, 9);
  EXPECT_EQ(v.winner, -1);
  const VoteResult empty = majority_vote(Answers{});
  EXPECT_FALSE(empty.has_label);
  EXPECT_EQ(empty.num_samples, 0);
  EXPECT_EQ(empty.confidence, 0.0);
}

TEST(MajorityVote, FromResponses) {
  const std::vector<std::string> responses = {"<think>two plus one</think> \\boxed{3}",
                                              "\\boxed{3.0}", "I think \\boxed{4}", "no box here",
                                              "\\boxed{\\frac{6}{2}} and a truncated \\boxed{7"};
  const VoteResult v = majority_vote_responses(responses);
  EXPECT_EQ(v.label, "3");
  EXPECT_EQ(v.count, 2);  // the last response's final box is truncated: no answer
  EXPECT_EQ(v.num_unanswered, 2);
  EXPECT_DOUBLE_EQ(v.confidence, 0.4);
}

// Random integer answers, where answer equality is string equality: counts against a map.
TEST(MajorityVote, RandomAgainstCounting) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 300; ++trial) {
    const int m = 1 + static_cast<int>(rng() % 12);
    Answers answers;
    std::map<std::string, int> count;
    std::map<std::string, int> first;
    int unanswered = 0;
    for (int i = 0; i < m; ++i) {
      if (rng() % 5 == 0) {
        answers.push_back(std::nullopt);
        ++unanswered;
        continue;
      }
      const std::string a = std::to_string(rng() % 4);
      answers.push_back(a);
      if (!count.count(a)) first[a] = i;
      ++count[a];
    }
    std::string best;
    for (const auto& [a, c] : count) {
      if (best.empty() || c > count[best] || (c == count[best] && first[a] < first[best])) best = a;
    }
    const VoteResult v = majority_vote(answers);
    EXPECT_EQ(v.num_unanswered, unanswered);
    ASSERT_EQ(v.has_label, !best.empty());
    if (best.empty()) continue;
    EXPECT_EQ(v.label, best);
    EXPECT_EQ(v.count, count[best]);
    EXPECT_EQ(v.confidence, static_cast<double>(count[best]) / m);
    EXPECT_EQ(static_cast<int>(v.bucket_sizes.size()), static_cast<int>(count.size()));
  }
}

}  // namespace
}  // namespace visplay::rl
