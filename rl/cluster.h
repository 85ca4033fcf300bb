// Agglomerative clustering with average linkage on a precomputed distance matrix, cut at a
// distance threshold: the grouping behind the Questioner's diversity penalty.
#pragma once

#include <span>
#include <vector>

namespace visplay::rl {

struct Clustering {
  std::vector<int> label;  // per item; clusters numbered in order of their first item
  std::vector<int> size;   // per cluster
  int num_clusters() const { return static_cast<int>(size.size()); }
  int size_of_item(int item) const { return size[label[item]]; }
};

// Same partition as scikit-learn's AgglomerativeClustering(n_clusters=None, metric='precomputed',
// linkage='average', distance_threshold=threshold): clusters are merged, closest pair first,
// while the average pairwise distance between them is strictly below `threshold` (sklearn keeps
// every merge whose height is < threshold). `distances` is n x n row-major; like sklearn only
// the upper triangle (i < j) is read, so an asymmetric matrix is taken as its upper half. Exact
// ties between candidate pairs go to the pair with the smallest (lower, higher) cluster ids,
// a cluster's id being its smallest item: deterministic, but it may differ from scipy's order
// in tied cases. Average linkage is computed from sums of the original distances.
// Throws std::invalid_argument for a size mismatch or a NaN / negative distance.
Clustering agglomerative_average(std::span<const double> distances, int n, double threshold);

}  // namespace visplay::rl
