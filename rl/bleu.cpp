#include "rl/bleu.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <utility>

namespace visplay::rl {
namespace {

constexpr int kMaxOrder = 4;
constexpr double kEpsilon = 0.1;  // SmoothingFunction().method1 default

bool is_python_space(char ch) {
  return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= '\x1c' && ch <= '\x1f');
}

// A sentence's n-gram multiset per order, as sorted (n-gram id, count) lists so that clipped
// counts of a pair are one merge. Ids come from an interner shared by all sentences compared.
struct NgramProfile {
  int length = 0;
  std::array<std::vector<std::pair<int, int>>, kMaxOrder> counts;
};

class NgramInterner {
 public:
  NgramProfile profile(std::span<const std::string> tokens) {
    std::vector<int> ids(tokens.size());
    for (size_t i = 0; i < tokens.size(); ++i) {
      ids[i] = token_ids_.emplace(tokens[i], static_cast<int>(token_ids_.size())).first->second;
    }
    NgramProfile p;
    p.length = static_cast<int>(tokens.size());
    for (int n = 1; n <= kMaxOrder; ++n) {
      std::vector<int> grams;
      for (size_t start = 0; start + n <= ids.size(); ++start) {
        std::vector<int> gram(ids.begin() + start, ids.begin() + start + n);
        grams.push_back(
            gram_ids_.emplace(std::move(gram), static_cast<int>(gram_ids_.size())).first->second);
      }
      std::sort(grams.begin(), grams.end());
      auto& list = p.counts[n - 1];
      for (int g : grams) {
        if (!list.empty() && list.back().first == g) {
          ++list.back().second;
        } else {
          list.emplace_back(g, 1);
        }
      }
    }
    return p;
  }

 private:
  std::map<std::string, int> token_ids_;
  std::map<std::vector<int>, int> gram_ids_;
};

// NLTK's sentence_bleu(..., smoothing_function=method1) from two profiles.
double bleu_from_profiles(const NgramProfile& reference, const NgramProfile& hypothesis) {
  std::array<long long, kMaxOrder> numerator{}, denominator{};
  for (int n = 0; n < kMaxOrder; ++n) {
    const auto& hyp = hypothesis.counts[n];
    const auto& ref = reference.counts[n];
    long long total = 0, clipped = 0;
    size_t r = 0;
    for (const auto& [gram, count] : hyp) {
      total += count;
      while (r < ref.size() && ref[r].first < gram) ++r;
      if (r < ref.size() && ref[r].first == gram) clipped += std::min(count, ref[r].second);
    }
    numerator[n] = clipped;
    denominator[n] = std::max(1LL, total);
  }
  if (numerator[0] == 0) return 0.0;
  const double h = hypothesis.length, r = reference.length;
  const double brevity = h > r ? 1.0 : std::exp(1.0 - r / h);  // h > 0 here
  double log_sum = 0.0;
  for (int n = 0; n < kMaxOrder; ++n) {
    const double p = numerator[n] == 0
                         ? kEpsilon / static_cast<double>(denominator[n])
                         : static_cast<double>(numerator[n]) / static_cast<double>(denominator[n]);
    log_sum += 0.25 * std::log(p);
  }
  return brevity * std::exp(log_sum);
}

}  // namespace

std::vector<std::string> split_whitespace(std::string_view text) {
  std::vector<std::string> tokens;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_python_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_python_space(text[i])) ++i;
    if (i > start) tokens.emplace_back(text.substr(start, i - start));
  }
  return tokens;
}

double sentence_bleu(std::span<const std::string> reference,
                     std::span<const std::string> hypothesis) {
  NgramInterner interner;
  const NgramProfile ref = interner.profile(reference);
  const NgramProfile hyp = interner.profile(hypothesis);
  return bleu_from_profiles(ref, hyp);
}

double sentence_bleu(std::string_view reference, std::string_view hypothesis) {
  const auto ref = split_whitespace(reference);
  const auto hyp = split_whitespace(hypothesis);
  return sentence_bleu(std::span<const std::string>(ref), std::span<const std::string>(hyp));
}

std::vector<double> bleu_distance_matrix(std::span<const std::string> sentences,
                                         BleuSymmetry symmetry) {
  const size_t n = sentences.size();
  NgramInterner interner;
  std::vector<NgramProfile> profiles;
  profiles.reserve(n);
  for (const std::string& s : sentences) profiles.push_back(interner.profile(split_whitespace(s)));
  std::vector<double> distance(n * n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = i + 1; j < n; ++j) {
      const double forward = bleu_from_profiles(profiles[j], profiles[i]);  // hyp i, ref j
      const double bleu = symmetry == BleuSymmetry::upper
                              ? forward
                              : 0.5 * (forward + bleu_from_profiles(profiles[i], profiles[j]));
      distance[i * n + j] = distance[j * n + i] = 1.0 - bleu;
    }
  }
  return distance;
}

}  // namespace visplay::rl
