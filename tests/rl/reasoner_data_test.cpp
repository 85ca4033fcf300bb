// Which kept questions the Reasoner trains on, with which labels and in which order.
#include "rl/reasoner_data.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "runtime/random.h"

namespace visplay::rl {
namespace {

SilverQuestion question(bool kept, const std::string& label) {
  SilverQuestion q;
  q.valid = true;
  q.has_label = true;
  q.kept = kept;
  q.label = label;
  q.question = "q?";
  return q;
}

TEST(ReasonerData, LabelSourcesPickQuestionsAndLabels) {
  SilverSet s;
  s.questions = {question(true, "no"), question(false, "yes"), question(true, "2"),
                 question(true, "red"), question(true, "yes")};
  const std::vector<std::optional<std::string>> oracle = {"yes", "yes", std::nullopt, "blue",
                                                          "yes"};
  ReasonerData silver = select_reasoner_data(s, {}, LabelSource::silver);
  EXPECT_EQ(silver.questions, (std::vector<size_t>{0, 2, 3, 4}));
  EXPECT_EQ(silver.labels, (std::vector<std::string>{"no", "2", "red", "yes"}));
  ReasonerData posed = select_reasoner_data(s, oracle, LabelSource::silver_well_posed);
  EXPECT_EQ(posed.questions, (std::vector<size_t>{0, 3, 4}));
  EXPECT_EQ(posed.labels, (std::vector<std::string>{"no", "red", "yes"}));
  ReasonerData truth = select_reasoner_data(s, oracle, LabelSource::oracle);
  EXPECT_EQ(truth.questions, (std::vector<size_t>{0, 3, 4}));
  EXPECT_EQ(truth.labels, (std::vector<std::string>{"yes", "blue", "yes"}));
  EXPECT_THROW(select_reasoner_data(s, {}, LabelSource::oracle), std::invalid_argument);
}

TEST(ReasonerData, UnbalancedOrderIsOnePermutation) {
  const std::vector<std::string> labels = {"no", "no", "no", "yes", "0", "no", "1"};
  std::vector<size_t> order = reasoner_order(labels, 100, 5, false);
  ASSERT_EQ(order.size(), labels.size());
  EXPECT_EQ(std::set<size_t>(order.begin(), order.end()).size(), labels.size());
  EXPECT_EQ(order, permutation(labels.size(), 5));
}

// A skewed mix (9 "no", 2 "yes", 1 "0"): over the training steps every label comes round
// equally often and each label's questions equally often among themselves.
TEST(ReasonerData, BalancedOrderGivesEveryLabelEqualTurns) {
  std::vector<std::string> labels;
  for (int i = 0; i < 9; ++i) labels.push_back("no");
  labels.insert(labels.begin() + 3, "yes");
  labels.push_back("yes");
  labels.push_back("0");
  const size_t length = 60;
  std::vector<size_t> order = reasoner_order(labels, length, 11, true);
  ASSERT_EQ(order.size(), length);
  std::map<std::string, int> per_label;
  std::map<size_t, int> per_question;
  for (size_t k : order) {
    ASSERT_LT(k, labels.size());
    ++per_label[labels[k]];
    ++per_question[k];
  }
  EXPECT_EQ(per_label["no"], 20);
  EXPECT_EQ(per_label["yes"], 20);
  EXPECT_EQ(per_label["0"], 20);
  for (size_t k = 0; k < labels.size(); ++k) {
    const int expect = labels[k] == "no" ? 20 / 9 : labels[k] == "yes" ? 10 : 20;
    EXPECT_GE(per_question[k], expect) << k;
    EXPECT_LE(per_question[k], expect + 1) << k;
  }
  // Deterministic for a seed; another seed visits in another order.
  EXPECT_EQ(order, reasoner_order(labels, length, 11, true));
  EXPECT_NE(order, reasoner_order(labels, length, 12, true));
}

}  // namespace
}  // namespace visplay::rl
