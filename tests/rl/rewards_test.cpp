// Reward formulas against hand-computed values.
#include "rl/rewards.h"

#include <gtest/gtest.h>

#include <cmath>

namespace visplay::rl {
namespace {

// Eight questions with no word in common pairwise: every BLEU is 0, every cluster a singleton.
const std::vector<std::string> kDistinct = {
    "how many red circles are there ?", "which shape lies leftmost overall",
    "count every blue square please",   "is anything green visible here",
    "what colour has the biggest one",  "do triangles outnumber crosses today",
    "name each yellow object shown",    "where sits that small ellipse"};

std::vector<QuestionerSample> group(int id, const std::vector<std::string>& questions, double c) {
  std::vector<QuestionerSample> out;
  for (const auto& q : questions) out.push_back({id, true, q, c});
  return out;
}

TEST(UncertaintyReward, Paper) {
  EXPECT_EQ(uncertainty_reward(0.5, UncertaintyReward::paper), 1.0);
  EXPECT_EQ(uncertainty_reward(0.0, UncertaintyReward::paper), 0.0);
  EXPECT_EQ(uncertainty_reward(1.0, UncertaintyReward::paper), 0.0);
  EXPECT_NEAR(uncertainty_reward(0.3, UncertaintyReward::paper), 0.6, 1e-15);
  EXPECT_NEAR(uncertainty_reward(0.9, UncertaintyReward::paper), 0.2, 1e-15);
  EXPECT_NEAR(uncertainty_reward(7.0 / 10, UncertaintyReward::paper), 0.6, 1e-15);
}

TEST(UncertaintyReward, ReferenceIsHalfAsLarge) {
  for (int k = 0; k <= 10; ++k) {
    const double c = k / 10.0;
    EXPECT_NEAR(uncertainty_reward(c, UncertaintyReward::reference),
                0.5 * uncertainty_reward(c, UncertaintyReward::paper), 1e-15);
  }
  EXPECT_EQ(uncertainty_reward(0.5, UncertaintyReward::reference), 0.5);
  EXPECT_NEAR(uncertainty_reward(0.2, UncertaintyReward::reference), 0.2, 1e-15);
}

TEST(QuestionerRewards, IdenticalGroupIsOneClusterAndEarnsNothing) {
  const auto samples =
      group(0, std::vector<std::string>(8, "how many red circles are there ?"), 0.5);
  const auto r = questioner_rewards(samples);
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(r.cluster_size[i], 8);
    EXPECT_EQ(r.uncertainty[i], 1.0);
    EXPECT_EQ(r.diversity[i], 1.0);  // lambda * 8 / 8
    EXPECT_EQ(r.reward[i], 0.0);
  }
}

TEST(QuestionerRewards, DistinctGroup) {
  const auto r = questioner_rewards(group(3, kDistinct, 0.5));
  for (int i = 0; i < 8; ++i) {
    EXPECT_EQ(r.cluster_size[i], 1);
    EXPECT_EQ(r.diversity[i], 1.0 / 8);
    EXPECT_EQ(r.reward[i], 1.0 - 1.0 / 8);
  }
}

TEST(QuestionerRewards, ReluAndReferenceVariant) {
  // Four copies of one question + four distinct: the copies' r_div = 4/8 = 0.5.
  std::vector<std::string> questions(4, "how many red circles are there ?");
  questions.insert(questions.end(), kDistinct.begin() + 1, kDistinct.begin() + 5);
  const auto samples = group(0, questions, 0.9);  // r_unc = 0.2
  const auto paper = questioner_rewards(samples);
  EXPECT_EQ(paper.cluster_size[0], 4);
  EXPECT_EQ(paper.cluster_size[7], 1);
  EXPECT_EQ(paper.reward[0], 0.0);  // relu(0.2 - 0.5)
  EXPECT_NEAR(paper.reward[7], 0.2 - 0.125, 1e-15);
  QuestionerRewardOptions reference;
  reference.combine = QuestionerReward::reference;
  const auto ref = questioner_rewards(samples, reference);
  EXPECT_NEAR(ref.reward[0], 0.2 - 0.5, 1e-15);
  EXPECT_NEAR(ref.reward[7], 0.2 - 0.125, 1e-15);
  reference.uncertainty = UncertaintyReward::reference;  // min(c, 1-c) = 0.1
  EXPECT_NEAR(questioner_rewards(samples, reference).reward[0], 0.1 - 0.5, 1e-15);
}

TEST(QuestionerRewards, InvalidOutputs) {
  auto samples = group(0, kDistinct, 0.5);
  samples[2].valid = false;
  samples[2].question.clear();
  samples[2].confidence = 7.0;  // never read for an invalid sample
  samples[5].valid = false;
  const auto paper = questioner_rewards(samples);
  EXPECT_EQ(paper.reward[2], 0.0);
  EXPECT_EQ(paper.reward[5], 0.0);
  EXPECT_EQ(paper.cluster_size[2], 0);
  EXPECT_EQ(paper.diversity[2], 0.0);
  EXPECT_EQ(paper.diversity[0], 1.0 / 8);  // G counts the invalid samples too
  EXPECT_EQ(paper.reward[0], 1.0 - 1.0 / 8);
  QuestionerRewardOptions reference;
  reference.combine = QuestionerReward::reference;
  EXPECT_EQ(questioner_rewards(samples, reference).reward[2], -1.0);
}

TEST(QuestionerRewards, LambdaScalesDiversity) {
  QuestionerRewardOptions options;
  options.diversity_lambda = 0.5;
  const auto r = questioner_rewards(
      group(0, std::vector<std::string>(4, "is the red circle above ?"), 0.5), options);
  EXPECT_EQ(r.cluster_size[0], 4);
  EXPECT_EQ(r.diversity[0], 0.5);  // 0.5 * 4 / 4
  EXPECT_EQ(r.reward[0], 0.5);
}

TEST(QuestionerRewards, ScopePerImageVersusBatch) {
  // Two images ask the same question; image 1 also has a distinct one. Groups are interleaved.
  const std::string same = "how many red circles are there ?";
  std::vector<QuestionerSample> samples = {{0, true, same, 0.5},
                                           {1, true, same, 0.5},
                                           {0, true, same, 0.5},
                                           {1, true, kDistinct[1], 0.5}};
  const auto paper = questioner_rewards(samples);
  EXPECT_EQ(paper.cluster_size, (std::vector<int>{2, 1, 2, 1}));
  EXPECT_EQ(paper.diversity, (std::vector<double>{1.0, 0.5, 1.0, 0.5}));  // |C| / G, G = 2
  QuestionerRewardOptions reference;
  reference.diversity_scope = DiversityScope::reference;
  const auto batch = questioner_rewards(samples, reference);
  EXPECT_EQ(batch.cluster_size, (std::vector<int>{3, 3, 3, 1}));
  EXPECT_EQ(batch.diversity, (std::vector<double>{0.75, 0.75, 0.75, 0.25}));  // |C| / 4
}

TEST(QuestionerRewards, RejectsBadConfidence) {
  auto samples = group(0, kDistinct, 0.5);
  samples[4].confidence = 1.5;
  EXPECT_THROW(questioner_rewards(samples), std::invalid_argument);
  samples[4].confidence = std::nan("");
  EXPECT_THROW(questioner_rewards(samples), std::invalid_argument);
}

TEST(ReasonerReward, Paper) {
  EXPECT_EQ(reasoner_reward("so \\boxed{3}", "3"), 1.0);
  EXPECT_EQ(reasoner_reward("so \\boxed{0.75}", "\\frac{3}{4}"), 1.0);
  EXPECT_EQ(reasoner_reward("so \\boxed{4}", "3"), 0.0);
  EXPECT_EQ(reasoner_reward("so 3", "3"), 0.0);
  EXPECT_EQ(reasoner_reward("\\boxed{3} then \\boxed{4}", "3"), 0.0);
  EXPECT_EQ(reasoner_reward("<think>x</think>\\boxed{3}", "3"), 1.0);  // no format term
}

TEST(ReasonerReward, ReferenceFormatWeight) {
  ReasonerRewardOptions reference;
  reference.kind = ReasonerReward::reference;
  EXPECT_NEAR(reasoner_reward("<think>1+2</think> so \\boxed{3}", "3", reference), 1.0, 1e-15);
  EXPECT_NEAR(reasoner_reward("so \\boxed{3}", "3", reference), 0.9, 1e-15);
  EXPECT_NEAR(reasoner_reward("<think>1+2</think> \\boxed{4}", "3", reference), 0.1, 1e-15);
  EXPECT_NEAR(reasoner_reward("nothing", "3", reference), 0.0, 1e-15);
  reference.format_weight = 0.25;
  EXPECT_NEAR(reasoner_reward("so \\boxed{3}", "3", reference), 0.75, 1e-15);
}

TEST(ReasonerReward, ThinkFormat) {
  EXPECT_TRUE(has_think_format("<think>a</think>\\boxed{1}"));
  EXPECT_TRUE(has_think_format("\n <think>a\nb</think>\nanswer: \\boxed{\\frac{1}{2}}."));
  EXPECT_FALSE(has_think_format("x <think>a</think>\\boxed{1}"));    // must open the response
  EXPECT_FALSE(has_think_format("<think>a \\boxed{1}"));             // never closes
  EXPECT_FALSE(has_think_format("<think>\\boxed{1}</think> done"));  // box inside the thought
  EXPECT_FALSE(has_think_format("<think>a</think>\\boxed{1"));       // truncated box
}

TEST(ConfidenceBand, InclusiveWithEpsilon) {
  EXPECT_TRUE(in_confidence_band(0.25, 0.25, 0.75));
  EXPECT_TRUE(in_confidence_band(0.75, 0.25, 0.75));
  EXPECT_TRUE(in_confidence_band(0.5, 0.25, 0.75));
  EXPECT_FALSE(in_confidence_band(0.2, 0.25, 0.75));
  EXPECT_FALSE(in_confidence_band(0.8, 0.25, 0.75));
  EXPECT_TRUE(in_confidence_band(0.25 - 1e-12, 0.25, 0.75));
  EXPECT_FALSE(in_confidence_band(0.25 - 1e-6, 0.25, 0.75));
  // Reference band 0.3 .. 0.8 with m = 9 keeps 3 to 7 votes.
  std::vector<int> kept;
  for (int k = 0; k <= 9; ++k) {
    if (in_confidence_band(k / 9.0, 0.3, 0.8)) kept.push_back(k);
  }
  EXPECT_EQ(kept, (std::vector<int>{3, 4, 5, 6, 7}));
  // Paper band with m = 9 keeps 3 to 6 votes.
  kept.clear();
  for (int k = 0; k <= 9; ++k) {
    if (in_confidence_band(k / 9.0, 0.25, 0.75)) kept.push_back(k);
  }
  EXPECT_EQ(kept, (std::vector<int>{3, 4, 5, 6}));
  // c = 3/10 computed as 0.1 * 3 = 0.30000000000000004 and 0.7 as 7 * 0.1 both in [0.3, 0.7].
  EXPECT_TRUE(in_confidence_band(0.1 * 3, 0.3, 0.7));
  EXPECT_TRUE(in_confidence_band(7 * 0.1, 0.3, 0.7));
}

}  // namespace
}  // namespace visplay::rl
