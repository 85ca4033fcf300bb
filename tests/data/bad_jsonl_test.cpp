// questions.jsonl lines that are broken in ways beyond plain bad JSON: invalid UTF-8,
// NUL bytes, a very long line, deep nesting, wrong types. Each is reported with its
// line number and skipped; every good line around them is kept, in order.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <sstream>

#include "data/benchmark.h"

namespace {

using namespace visplay;

std::string good_line(int index) {
  return R"({"id": "q)" + std::to_string(index) +
         R"(", "image": "images/x.png", "question": "how many objects are there?", "answer": ")" +
         std::to_string(index % 5) + R"("})";
}

TEST(BadJsonl, EveryKindOfBrokenLineIsReportedAndTheRestKept) {
  std::vector<std::pair<std::string, std::string>> bad = {
      {R"({"id": "u", "image": "a.png", "question": "caf)"
       "\xC3\x28"
       R"("})",
       "invalid JSON"},                                            // invalid UTF-8
      {std::string("{\"id\": \"n\0ul\", }", 16), "invalid JSON"},  // a NUL byte
      {std::string(200000, '['), "invalid JSON"},                  // deep, unterminated
      {R"({"id": 7, "image": "a.png", "question": "q?"})", "\"id\""},
      {R"({"id": "e", "image": "", "question": "q?"})", "empty"},
      {R"({"id": "t", "image": "a.png", "question": "q?", "type": ["count"]})", "\"type\""},
      {R"("just a string")", "expected a JSON object"},
      {"{\"id\": \"q0\", \"image\": \"b.png\", \"question\": \"again?\"}", "duplicate id \"q0\""},
  };
  // Good and bad lines interleaved in a shuffled but seeded order.
  std::mt19937 rng(17);
  std::vector<int> order;
  for (int i = 0; i < static_cast<int>(bad.size()); ++i) order.push_back(-1 - i);
  for (int i = 0; i < 12; ++i) order.push_back(i);
  std::shuffle(order.begin() + 1, order.end(), rng);
  // q0 must come before the duplicate, so a good line opens the file.
  order.insert(order.begin(), 0);
  order.erase(std::find(order.begin() + 1, order.end(), 0));
  std::string text;
  std::vector<int64_t> expected_good_lines, expected_bad_lines;
  std::vector<std::string> expected_ids, expected_reasons;
  for (size_t k = 0; k < order.size(); ++k) {
    int64_t line = static_cast<int64_t>(k) + 1;
    if (order[k] >= 0) {
      text += good_line(order[k]) + "\n";
      expected_good_lines.push_back(line);
      expected_ids.push_back("q" + std::to_string(order[k]));
    } else {
      text += bad[-1 - order[k]].first + "\n";
      expected_bad_lines.push_back(line);
      expected_reasons.push_back(bad[-1 - order[k]].second);
    }
  }
  std::istringstream in(text);
  Benchmark bench = parse_benchmark_questions(in, "q.jsonl", /*warn=*/false);
  ASSERT_EQ(bench.questions.size(), expected_good_lines.size());
  for (size_t i = 0; i < bench.questions.size(); ++i) {
    EXPECT_EQ(bench.questions[i].line, expected_good_lines[i]);
    EXPECT_EQ(bench.questions[i].id, expected_ids[i]);
  }
  ASSERT_EQ(bench.errors.size(), expected_bad_lines.size());
  for (size_t i = 0; i < bench.errors.size(); ++i) {
    std::string prefix = "q.jsonl:" + std::to_string(expected_bad_lines[i]) + ": ";
    EXPECT_EQ(bench.errors[i].rfind(prefix, 0), 0u) << bench.errors[i];
    EXPECT_NE(bench.errors[i].find(expected_reasons[i]), std::string::npos) << bench.errors[i];
  }
  // The kept questions are scored as usual (every reply right here).
  std::vector<std::string> replies;
  for (const auto& q : bench.questions) replies.push_back("\\boxed{" + *q.answer + "}");
  ScoreReport report = score_replies(bench.questions, replies);
  EXPECT_EQ(report.overall.total, 12);
  EXPECT_EQ(report.overall.correct, 12);
}

}  // namespace

namespace {

// The committed fuzz seeds for the reader (fuzz/corpus/benchmark) stay what they claim.
TEST(BadJsonl, FuzzSeedsReadAsIntended) {
  std::string corpus = std::string(VISPLAY_SOURCE_DIR) + "/fuzz/corpus/benchmark/";
  Benchmark labeled = visplay::read_benchmark(corpus + "labeled.jsonl", false);
  EXPECT_EQ(labeled.questions.size(), 3u);
  EXPECT_TRUE(labeled.errors.empty());
  Benchmark mixed = visplay::read_benchmark(corpus + "mixed_bad_lines.jsonl", false);
  EXPECT_EQ(mixed.questions.size(), 2u);
  EXPECT_EQ(mixed.errors.size(), 4u);
  EXPECT_EQ(visplay::read_scenes(corpus).size(), 2u);
}

}  // namespace
