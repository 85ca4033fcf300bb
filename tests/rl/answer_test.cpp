// Answer extraction, normalisation and equality; Questioner output parsing.
#include "rl/answer.h"

#include <gtest/gtest.h>

#include <random>

namespace visplay::rl {
namespace {

TEST(ExtractBoxed, TakesTheLastBox) {
  EXPECT_EQ(extract_boxed("so the answer is \\boxed{3}."), "3");
  EXPECT_EQ(extract_boxed("first \\boxed{1}, then corrected: \\boxed{2}"), "2");
  EXPECT_EQ(extract_boxed("\\boxed{ 5 }"), "5");
}

TEST(ExtractBoxed, MatchesNestedBraces) {
  EXPECT_EQ(extract_boxed("\\boxed{\\frac{1}{2}} done"), "\\frac{1}{2}");
  EXPECT_EQ(extract_boxed("x \\boxed{\\text{a {b} c}}"), "\\text{a {b} c}");
  // Escaped braces are literal characters, not groups.
  EXPECT_EQ(extract_boxed("\\boxed{\\{1, 2\\}}"), "\\{1, 2\\}");
  EXPECT_EQ(extract_boxed("\\boxed{\\}}"), "\\}");
}

TEST(ExtractBoxed, NestedBoxes) {
  EXPECT_EQ(extract_boxed("\\boxed{\\boxed{7}}"), "7");
  EXPECT_EQ(extract_boxed("\\boxed{ \\boxed{\\boxed{8}} }"), "8");
  // A box inside other content stays part of the outer (last top-level) box.
  EXPECT_EQ(extract_boxed("\\boxed{1} \\boxed{a \\boxed{b} c}"), "a \\boxed{b} c");
}

TEST(ExtractBoxed, NoAnswer) {
  EXPECT_FALSE(extract_boxed("the answer is 3").has_value());
  EXPECT_FALSE(extract_boxed("").has_value());
  EXPECT_FALSE(extract_boxed("\\boxed{}").has_value());
  EXPECT_FALSE(extract_boxed("\\boxed{  }").has_value());
  // The last box is truncated: no answer, even though an earlier box closed.
  EXPECT_FALSE(extract_boxed("\\boxed{2} and then \\boxed{3").has_value());
  EXPECT_FALSE(extract_boxed("\\boxed{\\frac{1}{2}").has_value());
  EXPECT_FALSE(extract_boxed("\\boxed 3").has_value());
}

TEST(NormalizeAnswer, Rules) {
  EXPECT_EQ(normalize_answer("  The   Answer\t is\n Red.  "), "the answer is red");
  EXPECT_EQ(normalize_answer("\\text{Red}"), "red");
  EXPECT_EQ(normalize_answer("\\textbf{\\text{Blue}} circle"), "blue circle");
  EXPECT_EQ(normalize_answer("$3$"), "3");
  EXPECT_EQ(normalize_answer("Yes!?"), "yes");
  EXPECT_EQ(normalize_answer("4 ."), "4");
  EXPECT_EQ(normalize_answer("\\dfrac{3}{4}"), "\\frac{3}{4}");
  EXPECT_EQ(normalize_answer("\\left( 1,\\, 2 \\right)"), "( 1, 2 )");
  EXPECT_EQ(normalize_answer("x \\rightarrow y"), "x \\rightarrow y");
  EXPECT_EQ(normalize_answer("\\text{unclosed"), "\\text{unclosed");
  EXPECT_EQ(normalize_answer(""), "");
}

TEST(ParseNumber, ExactRationals) {
  auto check = [](const char* text, long long num, long long den) {
    auto r = parse_number(text);
    ASSERT_TRUE(r.has_value()) << text;
    EXPECT_EQ(r->num, num) << text;
    EXPECT_EQ(r->den, den) << text;
  };
  check("3", 3, 1);
  check("-12", -12, 1);
  check("+7", 7, 1);
  check("0.75", 3, 4);
  check(".5", 1, 2);
  check("3.", 3, 1);
  check("3/4", 3, 4);
  check("6 / 8", 3, 4);
  check("-6/8", -3, 4);
  check("3/-4", -3, 4);
  check("\\frac{3}{4}", 3, 4);
  check("-\\frac{10}{4}", -5, 2);
  check("\\frac{-1}{ 3 }", -1, 3);
  check("\\frac34", 3, 4);
  check("1.5/3", 1, 2);
  check("-0", 0, 1);
  check("123456789012345678", 123456789012345678LL, 1);
  for (const char* bad : {"", "abc", "1.2.3", "1/0", "1/2/3", "3 4", "--3", "\\frac{1}{0}",
                          "\\frac{1}", "\\frac{a}{2}", "1e3", "1234567890123456789"}) {
    EXPECT_FALSE(parse_number(bad).has_value()) << bad;
  }
}

TEST(AnswersEqual, NumbersAsNumbers) {
  EXPECT_TRUE(answers_equal("3/4", "0.75"));
  EXPECT_TRUE(answers_equal("\\frac{3}{4}", "0.75"));
  EXPECT_TRUE(answers_equal("\\dfrac{3}{4}", "3/4"));
  EXPECT_TRUE(answers_equal("-\\frac{1}{2}", "-0.5"));
  EXPECT_TRUE(answers_equal("0.50", ".5"));
  EXPECT_TRUE(answers_equal("3", "3.0"));
  EXPECT_TRUE(answers_equal("$3$", "\\text{3}."));
  EXPECT_TRUE(answers_equal("2/4", "\\frac{1}{2}"));
  EXPECT_FALSE(answers_equal("3", "3.1"));
  EXPECT_FALSE(answers_equal("1/3", "0.333"));
  EXPECT_FALSE(answers_equal("1/3", "0.3333333333"));
  EXPECT_FALSE(answers_equal("-3", "3"));
  EXPECT_FALSE(answers_equal("1000001", "1000000"));
  // "1,000" is a tuple, not a thousands separator.
  EXPECT_FALSE(answers_equal("1,000", "1000"));
  // Unparseable numbers fall back to string equality.
  EXPECT_TRUE(answers_equal("1/0", "1/0"));
  EXPECT_FALSE(answers_equal("1/0", "2/0"));
}

TEST(AnswersEqual, StringsAndTuples) {
  EXPECT_TRUE(answers_equal("\\text{Yes}", "yes."));
  EXPECT_TRUE(answers_equal("Red  Circle", "red circle"));
  EXPECT_FALSE(answers_equal("red circle", "red square"));
  EXPECT_TRUE(answers_equal("(B)", "b"));
  EXPECT_TRUE(answers_equal("((3))", "3"));
  EXPECT_TRUE(answers_equal("(1, 2)", "(1,2.0)"));
  EXPECT_TRUE(answers_equal("1, 2", "(1, 2)"));
  EXPECT_TRUE(answers_equal("(1/2, 3)", "(0.5, 3)"));
  EXPECT_TRUE(answers_equal("((1, 2), 3)", "((1, 2.0), 3)"));
  EXPECT_FALSE(answers_equal("(1, 2)", "(2, 1)"));
  EXPECT_FALSE(answers_equal("(1, 2)", "[1, 2]"));
  EXPECT_FALSE(answers_equal("(1, 2)", "(1, 2, 3)"));
  EXPECT_FALSE(answers_equal("(1, 2)", "1"));
  EXPECT_TRUE(answers_equal("[a, b]", "[A, B]"));
}

TEST(AnswersEqual, ReferenceNoRuleIsAnOption) {
  AnswerOptions reference;
  reference.both_contain_no_rule = true;
  EXPECT_FALSE(answers_equal("There is no circle", "no square"));
  EXPECT_TRUE(answers_equal("There is no circle", "no square", reference));
  EXPECT_TRUE(answers_equal("NO  Circle", "there is no  square", reference));
  // "No" alone does not contain "no " (the reference's literal rule).
  EXPECT_FALSE(answers_equal("No", "no square", reference));
  EXPECT_TRUE(answers_equal("No", "no.", reference));
  EXPECT_FALSE(answers_equal("yes", "no", reference));
}

TEST(AnswersEqual, IsSymmetricOnMixedInputs) {
  const char* items[] = {"3/4", "0.75", "\\frac{3}{4}", "(1, 2)", "1, 2",  "[1, 2]",
                         "(B)", "b",    "no cat",       "no dog", "1,000", "1000",
                         "yes", "Yes.", "-0.5",         "-1/2",   "",      "1/0"};
  for (bool rule : {false, true}) {
    AnswerOptions options;
    options.both_contain_no_rule = rule;
    for (const char* a : items) {
      EXPECT_TRUE(answers_equal(a, a, options)) << a;
      for (const char* b : items) {
        EXPECT_EQ(answers_equal(a, b, options), answers_equal(b, a, options)) << a << " | " << b;
      }
    }
  }
}

TEST(ParseQuestioner, FullFormat) {
  auto q = parse_questioner_output(
      "<type>numerical</type><question> How many red circles? </question><answer>3</answer>");
  EXPECT_TRUE(q.valid);
  EXPECT_EQ(q.question, "How many red circles?");
  ASSERT_TRUE(q.type.has_value());
  EXPECT_EQ(*q.type, "numerical");
  ASSERT_TRUE(q.answer.has_value());
  EXPECT_EQ(*q.answer, "3");
}

TEST(ParseQuestioner, QuestionOnlyIsThePaperFormat) {
  auto q =
      parse_questioner_output("Sure.\n<question>Is the square left of\nthe circle?</question>");
  EXPECT_TRUE(q.valid);
  EXPECT_EQ(q.question, "Is the square left of\nthe circle?");
  EXPECT_FALSE(q.type.has_value());
  EXPECT_FALSE(q.answer.has_value());
}

TEST(ParseQuestioner, Invalid) {
  EXPECT_FALSE(parse_questioner_output("").valid);
  EXPECT_FALSE(parse_questioner_output("How many circles?").valid);
  EXPECT_FALSE(parse_questioner_output("<question>How many circles?").valid);
  EXPECT_FALSE(parse_questioner_output("<question>  \n </question>").valid);
  EXPECT_FALSE(parse_questioner_output("</question>x<question>").valid);
  auto q = parse_questioner_output("<type>numerical<question>x</question>");
  EXPECT_TRUE(q.valid);
  EXPECT_FALSE(q.type.has_value());  // the type block never closes
}

TEST(ParseQuestioner, FirstBlockWins) {
  auto q = parse_questioner_output("<question>first</question><question>second</question>");
  EXPECT_TRUE(q.valid);
  EXPECT_EQ(q.question, "first");
}

// Random strings made of the characters and commands the parsers care about: nothing throws or
// reads out of bounds (run under ASan in CI), equality stays reflexive and symmetric, and an
// extracted answer never carries an unbalanced brace.
TEST(AnswerFuzz, RandomStructuredStrings) {
  const std::vector<std::string> pieces = {
      "\\boxed{", "{",         "}",          "\\",          "\\{",    "\\}",     "(",
      ")",        "[",         "]",          ",",           "/",      ".",       "-",
      "\\frac",   "\\text{",   "$",          " ",           "1",      "2",       "0",
      "no ",      "A",         "<question>", "</question>", "<type>", "</type>", "\\left(",
      "\\right)", "\\dfrac34", "?",          "\\,"};
  std::mt19937 rng(99);
  auto random_string = [&] {
    std::string s;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) s += pieces[rng() % pieces.size()];
    return s;
  };
  AnswerOptions rule;
  rule.both_contain_no_rule = true;
  for (int trial = 0; trial < 3000; ++trial) {
    const std::string a = random_string(), b = random_string();
    if (auto boxed = extract_boxed(a)) {
      int depth = 0;
      for (size_t i = 0; i < boxed->size(); ++i) {
        if ((*boxed)[i] == '\\' && i + 1 < boxed->size()) {
          ++i;
          continue;
        }
        depth += (*boxed)[i] == '{' ? 1 : (*boxed)[i] == '}' ? -1 : 0;
        ASSERT_GE(depth, 0) << a;
      }
      EXPECT_EQ(depth, 0) << a;
      EXPECT_FALSE(boxed->empty());
    }
    EXPECT_TRUE(answers_equal(a, a)) << a;
    EXPECT_EQ(answers_equal(a, b), answers_equal(b, a)) << a << " | " << b;
    EXPECT_EQ(answers_equal(a, b, rule), answers_equal(b, a, rule)) << a << " | " << b;
    EXPECT_EQ(normalize_answer(normalize_answer(a)), normalize_answer(a)) << a;
    const ParsedQuestion q = parse_questioner_output(a + b);
    EXPECT_EQ(q.valid, !q.question.empty());
  }
}

}  // namespace
}  // namespace visplay::rl
