// Sentence BLEU as NLTK computes it (sentence_bleu with one reference, weights 0.25 x 4,
// SmoothingFunction().method1 with epsilon 0.1), and the BLEU distance matrix that the
// Questioner's diversity penalty clusters.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace visplay::rl {

// Python's str.split(): tokens separated by runs of ASCII whitespace (space, \t \n \v \f \r and
// \x1c-\x1f). Unicode spaces such as U+00A0 are not separators here (Python splits on them).
std::vector<std::string> split_whitespace(std::string_view text);

// BLEU-4 of `hypothesis` against one `reference`: modified n-gram precisions p_n (n = 1..4,
// clipped counts over max(1, #hypothesis n-grams)), a zero numerator replaced by 0.1 (method 1),
// brevity penalty exp(1 - r/h) when h <= r (0 for an empty hypothesis), and 0 whenever no
// unigram matches. Exactly NLTK's arithmetic, so sentences shorter than 4 tokens score < 1
// even against themselves.
double sentence_bleu(std::span<const std::string> reference,
                     std::span<const std::string> hypothesis);
double sentence_bleu(std::string_view reference, std::string_view hypothesis);

// BLEU is asymmetric; how a pair's distance is made symmetric.
enum class BleuSymmetry {
  average,  // d(i,j) = 1 - (BLEU(hyp i | ref j) + BLEU(hyp j | ref i)) / 2   (default)
  upper,    // d(i,j) = 1 - BLEU(hyp min(i,j) | ref max(i,j)): what scikit-learn reads from a
            // matrix filled with dist[i][j] = 1 - BLEU(hyp i | ref j) (upper triangle only)
};

// Row-major n x n matrix of 1 - BLEU between whitespace-tokenised sentences; diagonal 0.
std::vector<double> bleu_distance_matrix(std::span<const std::string> sentences,
                                         BleuSymmetry symmetry = BleuSymmetry::average);

}  // namespace visplay::rl
