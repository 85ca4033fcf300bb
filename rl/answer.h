// Answers and questions as text: the final `\boxed{}` answer of a Reasoner response, answer
// normalisation and equality (used by the majority vote, the silver labels and the Reasoner
// reward), and the parsing of a Questioner output into its tagged parts.
// Everything here is pure string processing; docs/rewards.md states the rules in prose.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace visplay::rl {

struct AnswerOptions {
  // The reference code's rule: two answers that both contain "no " (after lower-casing and
  // collapsing spaces) are equal, whatever else they say. Off by default (paper).
  bool both_contain_no_rule = false;
};

// Content of the last top-level `\boxed{...}` in `text`, braces matched (escaped `\{` `\}` do not
// count), surrounding spaces trimmed, and nested `\boxed{\boxed{x}}` unwrapped to `x`.
// nullopt when there is no box or when the last box never closes (a truncated answer).
std::optional<std::string> extract_boxed(std::string_view text);

// Canonical form used for comparison: `\text{}`-like wrappers unwrapped, `$` removed,
// `\left`/`\right` and LaTeX spacing removed, `\dfrac`/`\tfrac` -> `\frac`, ASCII lower case,
// runs of whitespace -> one space, trimmed, trailing `.,;:!?` removed.
std::string normalize_answer(std::string_view answer);

// Answer equality: equal normalised strings; numbers compared as exact rationals (integers,
// decimals, `a/b`, `\frac{a}{b}`: 0.75 == 3/4 == \frac{3}{4}); tuples `(a, b)` / `[a, b]` /
// bare `a, b` element-wise; a single wrapping `( )` ignored; optional "no " rule.
bool answers_equal(std::string_view a, std::string_view b, const AnswerOptions& options = {});

// Same, for two strings that are already the output of normalize_answer (saves re-normalising
// inside the O(m * buckets) vote).
bool normalized_answers_equal(const std::string& a, const std::string& b,
                              const AnswerOptions& options = {});

// A number given as an exact rational num/den (den > 0), when `normalized` is one: integer,
// decimal, simple fraction `a/b` or `\frac{a}{b}`, with an optional sign. Numbers with more
// than 18 significant digits (num or den) do not parse and compare as strings.
struct Rational {
  long long num = 0;
  long long den = 1;
};
std::optional<Rational> parse_number(std::string_view normalized);

// A Questioner output: `<type>...</type><question>...</question><answer>...</answer>`, where
// only the question block is required (the paper's format has nothing else).
struct ParsedQuestion {
  bool valid = false;  // a `<question>` block closes and its trimmed content is non-empty
  std::string question;
  std::optional<std::string> type;    // trimmed content of `<type>`, when the block closes
  std::optional<std::string> answer;  // trimmed content of `<answer>` (ignored by all rewards)
};
// The first complete block of each tag is used; text outside the tags is ignored.
ParsedQuestion parse_questioner_output(std::string_view text);

}  // namespace visplay::rl
