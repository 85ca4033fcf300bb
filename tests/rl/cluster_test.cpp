// Average-linkage agglomerative clustering: hand cases, a brute-force reference with the same
// tie-break, and scikit-learn's partitions (fixture from tools/gen_bleu_fixture.py).
#include "rl/cluster.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "rl/bleu.h"

namespace visplay::rl {
namespace {

std::vector<double> symmetric(int n, const std::vector<double>& upper) {
  std::vector<double> d(static_cast<size_t>(n) * n, 0.0);
  size_t k = 0;
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) d[i * n + j] = d[j * n + i] = upper[k++];
  }
  return d;
}

// Labels as a canonical partition: renumbered in order of first appearance.
std::vector<int> canonical(const std::vector<int>& labels) {
  std::map<int, int> rename;
  std::vector<int> out;
  for (int l : labels)
    out.push_back(rename.emplace(l, static_cast<int>(rename.size())).first->second);
  return out;
}

// Brute force: every step recomputes every cluster pair's average from the item distances and
// takes the lexicographically first minimal pair (clusters ordered by their smallest item).
std::vector<int> brute_force(const std::vector<double>& d, int n, double threshold) {
  std::vector<std::vector<int>> clusters;
  for (int i = 0; i < n; ++i) clusters.push_back({i});
  while (clusters.size() > 1) {
    double best = std::numeric_limits<double>::infinity();
    size_t best_a = 0, best_b = 0;
    for (size_t a = 0; a < clusters.size(); ++a) {
      for (size_t b = a + 1; b < clusters.size(); ++b) {
        double total = 0;
        for (int x : clusters[a]) {
          for (int y : clusters[b]) total += d[std::min(x, y) * n + std::max(x, y)];
        }
        const double average =
            total / (static_cast<double>(clusters[a].size()) * clusters[b].size());
        if (average < best) best = average, best_a = a, best_b = b;
      }
    }
    if (!(best < threshold)) break;
    clusters[best_a].insert(clusters[best_a].end(), clusters[best_b].begin(),
                            clusters[best_b].end());
    clusters.erase(clusters.begin() + best_b);  // clusters stay ordered by smallest item
  }
  std::vector<int> label(n);
  for (size_t c = 0; c < clusters.size(); ++c) {
    for (int x : clusters[c]) label[x] = static_cast<int>(c);
  }
  return canonical(label);
}

TEST(Cluster, AverageLinkageHandCases) {
  // (0,1) merge at 0.2; then average(01, 2) = (0.9 + 0.6) / 2 = 0.75 >= 0.5.
  auto c = agglomerative_average(symmetric(3, {0.2, 0.9, 0.6}), 3, 0.5);
  EXPECT_EQ(c.label, (std::vector<int>{0, 0, 1}));
  EXPECT_EQ(c.size, (std::vector<int>{2, 1}));
  EXPECT_EQ(c.size_of_item(1), 2);
  // Average, not single linkage: (0,1) at 0.1, then (0.6 + 0.45) / 2 = 0.525 stays apart
  // although item 2 is 0.45 from item 1.
  c = agglomerative_average(symmetric(3, {0.1, 0.6, 0.45}), 3, 0.5);
  EXPECT_EQ(c.label, (std::vector<int>{0, 0, 1}));
  // ...and not complete linkage: (0.5 + 0.3) / 2 = 0.4 < 0.5 merges all three.
  c = agglomerative_average(symmetric(3, {0.1, 0.5, 0.3}), 3, 0.5);
  EXPECT_EQ(c.label, (std::vector<int>{0, 0, 0}));
  EXPECT_EQ(c.num_clusters(), 1);
}

TEST(Cluster, ThresholdIsStrict) {
  EXPECT_EQ(agglomerative_average(symmetric(2, {0.5}), 2, 0.5).num_clusters(), 2);
  EXPECT_EQ(agglomerative_average(symmetric(2, {std::nextafter(0.5, 0.0)}), 2, 0.5).num_clusters(),
            1);
  EXPECT_EQ(agglomerative_average(symmetric(2, {0.0}), 2, 0.0).num_clusters(), 2);
}

TEST(Cluster, TieBreakPrefersSmallestPair) {
  // (0,1) and (1,2) tie at 0.2; (0,1) goes first, after which 2 is 0.55 from {0,1}.
  auto c = agglomerative_average(symmetric(3, {0.2, 0.9, 0.2}), 3, 0.5);
  EXPECT_EQ(c.label, (std::vector<int>{0, 0, 1}));
  // Mirror image: the tie between (0,2) and (1,2) goes to (0,2).
  c = agglomerative_average(symmetric(3, {0.9, 0.2, 0.2}), 3, 0.5);
  EXPECT_EQ(c.label, (std::vector<int>{0, 1, 0}));
}

TEST(Cluster, EdgeSizesAndErrors) {
  EXPECT_EQ(agglomerative_average({}, 0, 0.5).num_clusters(), 0);
  const std::vector<double> one = {0.0};
  auto c = agglomerative_average(one, 1, 0.5);
  EXPECT_EQ(c.label, (std::vector<int>{0}));
  EXPECT_EQ(c.size, (std::vector<int>{1}));
  EXPECT_THROW(agglomerative_average(std::vector<double>(5, 0.1), 2, 0.5), std::invalid_argument);
  EXPECT_THROW(agglomerative_average(symmetric(2, {std::nan("")}), 2, 0.5), std::invalid_argument);
  EXPECT_THROW(agglomerative_average(symmetric(2, {-0.1}), 2, 0.5), std::invalid_argument);
}

TEST(Cluster, ReadsOnlyTheUpperTriangle) {
  std::vector<double> d = symmetric(3, {0.2, 0.9, 0.6});
  for (int i = 0; i < 3; ++i) {
    for (int j = 0; j < i; ++j) d[i * 3 + j] = 100.0 + i;  // junk below the diagonal
  }
  d[0] = d[4] = d[8] = 7.0;  // and on it
  EXPECT_EQ(agglomerative_average(d, 3, 0.5).label, (std::vector<int>{0, 0, 1}));
}

TEST(Cluster, IdenticalQuestionsFormOneCluster) {
  const std::vector<std::string> questions(8, "how many red circles are in the image ?");
  const auto c = agglomerative_average(bleu_distance_matrix(questions), 8, 0.5);
  EXPECT_EQ(c.num_clusters(), 1);
  EXPECT_EQ(c.size_of_item(5), 8);
}

// Random matrices against the brute force, including many exact ties (multiples of 1/16 are
// exact, and so are their sums, so both implementations see the same ties).
TEST(Cluster, RandomAgainstBruteForce) {
  std::mt19937 rng(123);
  int merged_cases = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const int n = 2 + static_cast<int>(rng() % 24);
    const bool quantised = trial % 2 == 0;
    std::vector<double> upper;
    for (int k = 0; k < n * (n - 1) / 2; ++k) {
      upper.push_back(quantised ? static_cast<double>(rng() % 17) / 16.0
                                : std::uniform_real_distribution<double>(0.0, 1.0)(rng));
    }
    const double threshold = trial % 3 == 0 ? 0.5 : 0.25 + 0.5 * (rng() % 100) / 100.0;
    const auto d = symmetric(n, upper);
    const auto c = agglomerative_average(d, n, threshold);
    ASSERT_EQ(c.label, brute_force(d, n, threshold)) << "trial " << trial << " n " << n;
    int total = 0;
    for (int s : c.size) total += s;
    EXPECT_EQ(total, n);
    merged_cases += c.num_clusters() < n && c.num_clusters() > 1;
  }
  EXPECT_GT(merged_cases, 100);  // mostly non-trivial partitions
}

nlohmann::json load_fixture() {
  const std::string path = std::string(VISPLAY_SOURCE_DIR) + "/tests/rl/fixtures/bleu_cluster.json";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open fixture " + path);
  return nlohmann::json::parse(in);
}

TEST(Cluster, MatchesSklearnOnRandomMatrices) {
  const auto fixture = load_fixture();
  const double threshold = fixture["threshold"];
  ASSERT_GE(fixture["matrices"].size(), 20u);
  for (const auto& m : fixture["matrices"]) {
    const int n = m["n"];
    const auto c =
        agglomerative_average(symmetric(n, m["upper"].get<std::vector<double>>()), n, threshold);
    EXPECT_EQ(c.label, canonical(m["labels"].get<std::vector<int>>())) << "n = " << n;
  }
}

TEST(Cluster, MatchesSklearnOnBleuDistances) {
  const auto fixture = load_fixture();
  const double threshold = fixture["threshold"];
  ASSERT_GE(fixture["groups"].size(), 20u);
  for (const auto& g : fixture["groups"]) {
    const auto questions = g["questions"].get<std::vector<std::string>>();
    const BleuSymmetry symmetry =
        g["symmetry"] == "upper" ? BleuSymmetry::upper : BleuSymmetry::average;
    const int n = static_cast<int>(questions.size());
    const auto c = agglomerative_average(bleu_distance_matrix(questions, symmetry), n, threshold);
    EXPECT_EQ(c.label, canonical(g["labels"].get<std::vector<int>>()))
        << g["symmetry"] << " " << nlohmann::json(questions).dump();
  }
}

}  // namespace
}  // namespace visplay::rl
