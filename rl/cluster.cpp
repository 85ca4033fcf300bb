#include "rl/cluster.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace visplay::rl {

Clustering agglomerative_average(std::span<const double> distances, int n, double threshold) {
  if (n < 0 || distances.size() != static_cast<size_t>(n) * static_cast<size_t>(n)) {
    throw std::invalid_argument("agglomerative_average: distance matrix has " +
                                std::to_string(distances.size()) +
                                " entries, expected n*n with n=" + std::to_string(n));
  }
  const size_t N = static_cast<size_t>(n);
  // sum[i*N+j]: sum of item distances between clusters i and j (cluster id = smallest item).
  std::vector<double> sum(N * N, 0.0);
  for (size_t i = 0; i < N; ++i) {
    for (size_t j = i + 1; j < N; ++j) {
      const double d = distances[i * N + j];
      if (std::isnan(d) || d < 0) {
        throw std::invalid_argument("agglomerative_average: distance[" + std::to_string(i) + "][" +
                                    std::to_string(j) + "] = " + std::to_string(d) +
                                    " is not a non-negative number");
      }
      sum[i * N + j] = sum[j * N + i] = d;
    }
  }
  std::vector<double> count(N, 1.0);
  std::vector<bool> active(N, true);
  std::vector<int> parent(N);
  for (size_t i = 0; i < N; ++i) parent[i] = static_cast<int>(i);
  auto average = [&](size_t i, size_t j) { return sum[i * N + j] / (count[i] * count[j]); };

  // Nearest active neighbour of each active cluster (ties: smallest id), so that a step scans
  // n cached minima instead of n^2 pairs.
  constexpr double kNone = std::numeric_limits<double>::infinity();
  std::vector<size_t> nearest(N, 0);
  std::vector<double> nearest_distance(N, kNone);
  auto refresh = [&](size_t i) {
    nearest_distance[i] = kNone;
    for (size_t k = 0; k < N; ++k) {
      if (k == i || !active[k]) continue;
      const double d = average(i, k);
      if (d < nearest_distance[i]) nearest_distance[i] = d, nearest[i] = k;
    }
  };
  for (size_t i = 0; i < N; ++i) refresh(i);

  while (true) {
    // Closest pair: smallest cached distance, ties to the smallest lower id; its partner is
    // then the smallest id at that distance, i.e. the lexicographically smallest pair.
    size_t best = N;
    for (size_t i = 0; i < N; ++i) {
      if (active[i] && nearest_distance[i] < kNone &&
          (best == N || nearest_distance[i] < nearest_distance[best])) {
        best = i;
      }
    }
    if (best == N || !(nearest_distance[best] < threshold)) break;
    const size_t a = std::min(best, nearest[best]);
    const size_t b = std::max(best, nearest[best]);
    for (size_t k = 0; k < N; ++k) {
      if (!active[k] || k == a || k == b) continue;
      sum[a * N + k] = sum[k * N + a] = sum[a * N + k] + sum[b * N + k];
    }
    count[a] += count[b];
    active[b] = false;
    parent[b] = static_cast<int>(a);
    refresh(a);
    for (size_t k = 0; k < N; ++k) {
      if (!active[k] || k == a) continue;
      if (nearest[k] == a || nearest[k] == b) {
        refresh(k);
      } else {
        // The merged average is >= min(d(k,a), d(k,b)) >= k's cached minimum in exact
        // arithmetic; this only catches a rounding of the new sum to below it.
        const double d = average(k, a);
        if (d < nearest_distance[k] || (d == nearest_distance[k] && a < nearest[k])) {
          nearest_distance[k] = d;
          nearest[k] = a;
        }
      }
    }
  }

  Clustering result;
  result.label.assign(N, -1);
  std::vector<int> label_of_root(N, -1);
  for (size_t i = 0; i < N; ++i) {
    size_t root = i;
    while (parent[root] != static_cast<int>(root)) root = parent[root];
    if (label_of_root[root] < 0) {
      label_of_root[root] = result.num_clusters();
      result.size.push_back(0);
    }
    result.label[i] = label_of_root[root];
    ++result.size[result.label[i]];
  }
  return result;
}

}  // namespace visplay::rl
