// Sentence BLEU against hand-computed values and against NLTK (fixture made by
// tools/gen_bleu_fixture.py).
#include "rl/bleu.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

namespace visplay::rl {
namespace {

nlohmann::json load_fixture() {
  const std::string path = std::string(VISPLAY_SOURCE_DIR) + "/tests/rl/fixtures/bleu_cluster.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open fixture " + path);
  return nlohmann::json::parse(in);
}

TEST(SplitWhitespace, PythonSemantics) {
  EXPECT_EQ(split_whitespace("  how\tmany \n red\x0b\x1c circles ?  "),
            (std::vector<std::string>{"how", "many", "red", "circles", "?"}));
  EXPECT_TRUE(split_whitespace("").empty());
  EXPECT_TRUE(split_whitespace(" \t\n").empty());
  EXPECT_EQ(split_whitespace("a"), (std::vector<std::string>{"a"}));
}

// Each expected value is written as the product of the precisions, then the 4th root: an
// independent arrangement of the same formula (the code sums logs).
TEST(SentenceBleu, HandComputed) {
  // Identical sentences of >= 4 tokens: every precision 1, no brevity penalty.
  EXPECT_DOUBLE_EQ(sentence_bleu("a b c d e", "a b c d e"), 1.0);
  // p1 = 3/5, no bigram matches: p2..p4 = 0.1 / (4, 3, 2) (method 1 keeps the denominator).
  EXPECT_NEAR(sentence_bleu("a x c y e", "a b c d e"),
              std::pow(0.6 * (0.1 / 4) * (0.1 / 3) * (0.1 / 2), 0.25), 1e-15);
  // All n-grams match but the hypothesis is half as long: BP = exp(1 - 8/4).
  EXPECT_NEAR(sentence_bleu("a b c d e f g h", "a b c d"), std::exp(-1.0), 1e-15);
  // Clipping: "the" x7 against a reference with two "the": p1 = 2/7, p2..p4 = 0.1/(6,5,4);
  // hypothesis longer than the reference: BP = 1.
  EXPECT_NEAR(sentence_bleu("the cat is on the mat", "the the the the the the the"),
              std::pow((2.0 / 7) * (0.1 / 6) * (0.1 / 5) * (0.1 / 4), 0.25), 1e-15);
  // Short identical sentences: missing orders have 0 n-grams, smoothed to 0.1 / 1.
  EXPECT_NEAR(sentence_bleu("what", "what"), std::pow(0.1 * 0.1 * 0.1, 0.25), 1e-15);
  EXPECT_NEAR(sentence_bleu("how many", "how many"), std::pow(0.1 * 0.1, 0.25), 1e-15);
  EXPECT_NEAR(sentence_bleu("how many circles", "how many circles"), std::pow(0.1, 0.25), 1e-15);
  // Equal lengths, one substitution: p = 5/6, 3/5, 2/4, 1/3, all non-zero.
  EXPECT_NEAR(sentence_bleu("a b c d e f", "a b c d x f"),
              std::pow((5.0 / 6) * (3.0 / 5) * (2.0 / 4) * (1.0 / 3), 0.25), 1e-15);
  // Same substitution in the middle of 5 tokens: no trigram survives, p3 = 0.1/3, p4 = 0.1/2.
  EXPECT_NEAR(sentence_bleu("a b c d e", "a b x d e"),
              std::pow(0.8 * 0.5 * (0.1 / 3) * (0.1 / 2), 0.25), 1e-15);
}

TEST(SentenceBleu, ZeroCases) {
  EXPECT_EQ(sentence_bleu("a b c d", "e f g h"), 0.0);  // no unigram match: 0 despite smoothing
  EXPECT_EQ(sentence_bleu("", "a b c"), 0.0);
  EXPECT_EQ(sentence_bleu("a b c", ""), 0.0);
  EXPECT_EQ(sentence_bleu("", ""), 0.0);
}

TEST(SentenceBleu, MatchesNltk) {
  const auto fixture = load_fixture();
  ASSERT_GE(fixture["bleu"].size(), 100u);
  int nonzero = 0, below_one = 0;
  for (const auto& c : fixture["bleu"]) {
    const std::string ref = c["ref"], hyp = c["hyp"];
    const double expected = c["bleu"];
    EXPECT_NEAR(sentence_bleu(ref, hyp), expected, 1e-9)
        << "ref='" << ref << "' hyp='" << hyp << "'";
    nonzero += expected > 0;
    below_one += expected > 0 && expected < 1;
  }
  EXPECT_GT(nonzero, 50);  // the fixture exercises partial matches, not only zeros
  EXPECT_GT(below_one, 40);
}

TEST(BleuDistance, MatrixSymmetries) {
  const std::vector<std::string> s = {"how many red circles are there ?", "how many red circles ?",
                                      "is the square left of the circle ?",
                                      "how many red circles ?"};
  const auto avg = bleu_distance_matrix(s, BleuSymmetry::average);
  const auto up = bleu_distance_matrix(s, BleuSymmetry::upper);
  ASSERT_EQ(avg.size(), 16u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(avg[i * 4 + i], 0.0);
    for (size_t j = 0; j < 4; ++j) {
      EXPECT_EQ(avg[i * 4 + j], avg[j * 4 + i]);
      EXPECT_EQ(up[i * 4 + j], up[j * 4 + i]);
      if (i < j) {
        const double forward = sentence_bleu(s[j], s[i]);  // hyp i, ref j
        const double backward = sentence_bleu(s[i], s[j]);
        EXPECT_NEAR(avg[i * 4 + j], 1.0 - 0.5 * (forward + backward), 1e-15);
        EXPECT_NEAR(up[i * 4 + j], 1.0 - forward, 1e-15);
      }
    }
  }
  // The asymmetry is real: a shorter hypothesis pays the brevity penalty.
  EXPECT_NE(sentence_bleu(s[0], s[1]), sentence_bleu(s[1], s[0]));
  EXPECT_EQ(avg[1 * 4 + 3], 0.0);  // identical >= 4-token questions
}

}  // namespace
}  // namespace visplay::rl
