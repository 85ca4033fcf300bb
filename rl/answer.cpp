#include "rl/answer.h"

#include <array>
#include <cctype>
#include <numeric>
#include <utility>
#include <vector>

namespace visplay::rl {
namespace {

constexpr size_t npos = std::string_view::npos;
constexpr std::string_view kBoxOpen = "\\boxed{";

bool is_space(char ch) {
  return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Index just past the `}` closing the `{` at s[open]; npos when it never closes. LaTeX escapes
// `\{`, `\}` and `\\` are skipped so that they do not count as grouping braces.
size_t match_brace(std::string_view s, size_t open) {
  int depth = 0;
  for (size_t i = open; i < s.size(); ++i) {
    const char ch = s[i];
    if (ch == '\\' && i + 1 < s.size() &&
        (s[i + 1] == '{' || s[i + 1] == '}' || s[i + 1] == '\\')) {
      ++i;
      continue;
    }
    if (ch == '{') {
      ++depth;
    } else if (ch == '}') {
      if (--depth == 0) return i + 1;
    }
  }
  return npos;
}

// Matching close bracket for s[open] in '([{', tracking all three kinds; npos when unbalanced.
size_t match_bracket(std::string_view s, size_t open) {
  std::vector<char> stack;
  for (size_t i = open; i < s.size(); ++i) {
    const char ch = s[i];
    if (ch == '(' || ch == '[' || ch == '{') {
      stack.push_back(ch);
    } else if (ch == ')' || ch == ']' || ch == '}') {
      const char want = ch == ')' ? '(' : ch == ']' ? '[' : '{';
      if (stack.empty() || stack.back() != want) return npos;
      stack.pop_back();
      if (stack.empty()) return i;
    }
  }
  return npos;
}

// Splits s at commas outside any bracket; nullopt when the brackets do not balance.
std::optional<std::vector<std::string_view>> split_top_level(std::string_view s) {
  std::vector<std::string_view> parts;
  int depth = 0;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    if (ch == '(' || ch == '[' || ch == '{') {
      ++depth;
    } else if (ch == ')' || ch == ']' || ch == '}') {
      if (--depth < 0) return std::nullopt;
    } else if (ch == ',' && depth == 0) {
      parts.push_back(trim(s.substr(start, i - start)));
      start = i + 1;
    }
  }
  if (depth != 0) return std::nullopt;
  parts.push_back(trim(s.substr(start)));
  return parts;
}

struct Tuple {
  char kind;  // '(' (also for a bare `a, b`) or '['
  std::vector<std::string_view> elements;
};

// `(a, b, ...)`, `[a, b, ...]` or a bare `a, b, ...` with at least two elements.
std::optional<Tuple> as_tuple(std::string_view s) {
  if (s.size() >= 2 && (s.front() == '(' || s.front() == '[')) {
    const size_t close = match_bracket(s, 0);
    if (close == s.size() - 1) {
      auto parts = split_top_level(s.substr(1, s.size() - 2));
      if (parts && parts->size() >= 2) return Tuple{s.front(), std::move(*parts)};
      return std::nullopt;
    }
  }
  auto parts = split_top_level(s);
  if (parts && parts->size() >= 2) return Tuple{'(', std::move(*parts)};
  return std::nullopt;
}

// Removes wrapping `( )` or `{ }` around a single value: "(b)" -> "b".
std::string_view unwrap_single(std::string_view s) {
  while (s.size() >= 2 && (s.front() == '(' || s.front() == '{') &&
         match_bracket(s, 0) == s.size() - 1) {
    s = trim(s.substr(1, s.size() - 2));
  }
  return s;
}

// Unsigned or signed decimal ("12", "-0.75", ".5", "3.") filling all of t, as a rational.
std::optional<Rational> parse_decimal(std::string_view t) {
  bool negative = false;
  if (!t.empty() && (t.front() == '-' || t.front() == '+')) {
    negative = t.front() == '-';
    t.remove_prefix(1);
  }
  long long mantissa = 0;
  int significant = 0, fraction_digits = 0, digits = 0;
  bool seen_point = false;
  for (char ch : t) {
    if (ch == '.') {
      if (seen_point) return std::nullopt;
      seen_point = true;
      continue;
    }
    if (ch < '0' || ch > '9') return std::nullopt;
    ++digits;
    if (seen_point) ++fraction_digits;
    if (mantissa != 0 || ch != '0') ++significant;
    if (significant > 18 || fraction_digits > 18) return std::nullopt;
    mantissa = mantissa * 10 + (ch - '0');
  }
  if (digits == 0) return std::nullopt;
  long long scale = 1;
  for (int i = 0; i < fraction_digits; ++i) scale *= 10;
  const long long g = std::gcd(mantissa, scale);
  return Rational{negative ? -mantissa / g : mantissa / g, scale / g};
}

// (a.num/a.den) / (b.num/b.den) in lowest terms; nullopt on division by zero or overflow.
std::optional<Rational> divide(Rational a, Rational b) {
  if (b.num == 0) return std::nullopt;
  __int128 num = static_cast<__int128>(a.num) * b.den;
  __int128 den = static_cast<__int128>(a.den) * b.num;
  if (den < 0) num = -num, den = -den;
  __int128 x = num < 0 ? -num : num, y = den;
  while (y != 0) {
    const __int128 r = x % y;
    x = y;
    y = r;
  }
  if (x != 0) num /= x, den /= x;
  const __int128 limit = static_cast<__int128>(1) << 62;
  if (num > limit || num < -limit || den > limit) return std::nullopt;
  return Rational{static_cast<long long>(num), static_cast<long long>(den)};
}

// [sign] \frac{A}{B} or [sign] \frac AB (two single digits), filling all of s.
std::optional<Rational> parse_frac_command(std::string_view s) {
  bool negative = false;
  if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
    negative = s.front() == '-';
    s = trim(s.substr(1));
  }
  constexpr std::string_view kFrac = "\\frac";
  if (s.substr(0, kFrac.size()) != kFrac) return std::nullopt;
  s = trim(s.substr(kFrac.size()));
  std::string_view top, bottom;
  if (!s.empty() && s.front() == '{') {
    const size_t end_top = match_brace(s, 0);
    if (end_top == npos) return std::nullopt;
    top = s.substr(1, end_top - 2);
    s = trim(s.substr(end_top));
    if (s.empty() || s.front() != '{') return std::nullopt;
    const size_t end_bottom = match_brace(s, 0);
    if (end_bottom != s.size()) return std::nullopt;
    bottom = s.substr(1, end_bottom - 2);
  } else if (s.size() == 2 && std::isdigit(static_cast<unsigned char>(s[0])) &&
             std::isdigit(static_cast<unsigned char>(s[1]))) {
    top = s.substr(0, 1);
    bottom = s.substr(1, 1);
  } else {
    return std::nullopt;
  }
  auto a = parse_decimal(trim(top));
  auto b = parse_decimal(trim(bottom));
  if (!a || !b) return std::nullopt;
  auto r = divide(*a, *b);
  if (r && negative) r->num = -r->num;
  return r;
}

// Element-wise tuple equality, then single values: strings, then exact rationals.
bool same_value(std::string_view a, std::string_view b) {
  a = trim(a);
  b = trim(b);
  auto tuple_a = as_tuple(a);
  auto tuple_b = as_tuple(b);
  if (tuple_a || tuple_b) {
    if (!tuple_a || !tuple_b) return false;
    if (tuple_a->kind != tuple_b->kind) return false;
    if (tuple_a->elements.size() != tuple_b->elements.size()) return false;
    for (size_t i = 0; i < tuple_a->elements.size(); ++i) {
      if (!same_value(tuple_a->elements[i], tuple_b->elements[i])) return false;
    }
    return true;
  }
  a = unwrap_single(a);
  b = unwrap_single(b);
  if (a == b) return true;
  auto number_a = parse_number(a);
  if (!number_a) return false;
  auto number_b = parse_number(b);
  return number_b && number_a->num == number_b->num && number_a->den == number_b->den;
}

// Replaces every `\cmd{X}` by X for the text-like wrappers (brace matched; unbalanced left).
void unwrap_text_commands(std::string& s) {
  static constexpr std::array<std::string_view, 9> kWrappers = {
      "\\text{",   "\\textbf{", "\\textit{", "\\textrm{",      "\\textnormal{",
      "\\mathrm{", "\\mathbf{", "\\mbox{",   "\\operatorname{"};
  for (std::string_view wrapper : kWrappers) {
    size_t pos = 0;
    while ((pos = s.find(wrapper, pos)) != std::string::npos) {
      const size_t open = pos + wrapper.size() - 1;
      const size_t end = match_brace(s, open);
      if (end == npos) {
        pos = open;
        continue;
      }
      s = s.substr(0, pos) + s.substr(open + 1, end - open - 2) + s.substr(end);
    }
  }
}

void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0, hit;
  while ((hit = s.find(from, pos)) != std::string::npos) {
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

// Removes `\left` / `\right` when used as delimiter sizing (not `\rightarrow`).
void remove_sizing(std::string& s, std::string_view command) {
  size_t pos = 0;
  while ((pos = s.find(command, pos)) != std::string::npos) {
    const size_t after = pos + command.size();
    if (after < s.size() && std::isalpha(static_cast<unsigned char>(s[after]))) {
      pos = after;
      continue;
    }
    s.erase(pos, command.size());
  }
}

}  // namespace

std::optional<std::string> extract_boxed(std::string_view text) {
  // Walk the top-level boxes left to right; a box nested in another is part of its content.
  std::optional<std::string_view> last;
  size_t pos = 0;
  while (true) {
    const size_t at = text.find(kBoxOpen, pos);
    if (at == npos) break;
    const size_t open = at + kBoxOpen.size() - 1;
    const size_t end = match_brace(text, open);
    if (end == npos) return std::nullopt;  // the final box is truncated: no answer
    last = text.substr(open + 1, end - open - 2);
    pos = end;
  }
  if (!last) return std::nullopt;
  std::string_view content = trim(*last);
  while (content.substr(0, kBoxOpen.size()) == kBoxOpen &&
         match_brace(content, kBoxOpen.size() - 1) == content.size()) {
    content = trim(content.substr(kBoxOpen.size(), content.size() - kBoxOpen.size() - 1));
  }
  if (content.empty()) return std::nullopt;
  return std::string(content);
}

std::string normalize_answer(std::string_view answer) {
  // Character-level rules first ('$', case, whitespace kinds), so the rewrites below see
  // their final input; the rewrites all shorten the string and run to a fixed point, which
  // makes normalize_answer idempotent (one rewrite can expose another: "\\ " -> "\ ").
  std::string s;
  s.reserve(answer.size());
  for (char ch : answer) {
    if (ch == '$') continue;
    s.push_back(is_space(ch) ? ' '
                             : static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
  }
  for (std::string before; before != s;) {
    before = s;
    unwrap_text_commands(s);
    replace_all(s, "\\dfrac", "\\frac");
    replace_all(s, "\\tfrac", "\\frac");
    remove_sizing(s, "\\left");
    remove_sizing(s, "\\right");
    replace_all(s, "\\!", "");
    for (std::string_view spacing : {"\\,", "\\;", "\\:", "\\ "}) replace_all(s, spacing, " ");
  }
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (char ch : s) {
    if (ch == ' ') {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(ch);
  }
  while (!out.empty() &&
         (out.back() == '.' || out.back() == ',' || out.back() == ';' || out.back() == ':' ||
          out.back() == '!' || out.back() == '?' || out.back() == ' ')) {
    out.pop_back();
  }
  return out;
}

std::optional<Rational> parse_number(std::string_view normalized) {
  std::string_view s = trim(normalized);
  if (s.empty()) return std::nullopt;
  if (auto r = parse_frac_command(s)) return r;
  const size_t slash = s.find('/');
  if (slash == npos) return parse_decimal(s);
  if (s.find('/', slash + 1) != npos) return std::nullopt;
  auto top = parse_decimal(trim(s.substr(0, slash)));
  auto bottom = parse_decimal(trim(s.substr(slash + 1)));
  if (!top || !bottom) return std::nullopt;
  return divide(*top, *bottom);
}

bool normalized_answers_equal(const std::string& a, const std::string& b,
                              const AnswerOptions& options) {
  if (a == b) return true;
  if (options.both_contain_no_rule && a.find("no ") != std::string::npos &&
      b.find("no ") != std::string::npos) {
    return true;
  }
  return same_value(a, b);
}

bool answers_equal(std::string_view a, std::string_view b, const AnswerOptions& options) {
  return normalized_answers_equal(normalize_answer(a), normalize_answer(b), options);
}

ParsedQuestion parse_questioner_output(std::string_view text) {
  // First complete <tag>...</tag> block, trimmed.
  auto block = [&](std::string_view open, std::string_view close) -> std::optional<std::string> {
    const size_t start = text.find(open);
    if (start == npos) return std::nullopt;
    const size_t content = start + open.size();
    const size_t end = text.find(close, content);
    if (end == npos) return std::nullopt;
    return std::string(trim(text.substr(content, end - content)));
  };
  ParsedQuestion parsed;
  if (auto question = block("<question>", "</question>")) {
    parsed.question = std::move(*question);
    parsed.valid = !parsed.question.empty();
  }
  parsed.type = block("<type>", "</type>");
  parsed.answer = block("<answer>", "</answer>");
  return parsed;
}

}  // namespace visplay::rl
