#include "rl/reasoner_data.h"

#include <map>
#include <stdexcept>

#include "runtime/random.h"

namespace visplay::rl {

ReasonerData select_reasoner_data(const SilverSet& silver,
                                  const std::vector<std::optional<std::string>>& oracle,
                                  LabelSource source) {
  if (source != LabelSource::silver && oracle.size() != silver.questions.size()) {
    throw std::invalid_argument("select_reasoner_data: reasoner.labels = " + to_string(source) +
                                " needs an oracle answer slot per question (" +
                                std::to_string(silver.questions.size()) + "), got " +
                                std::to_string(oracle.size()));
  }
  ReasonerData out;
  for (size_t i = 0; i < silver.questions.size(); ++i) {
    const SilverQuestion& q = silver.questions[i];
    if (!q.kept) continue;
    if (source != LabelSource::silver && !oracle[i]) continue;
    out.questions.push_back(i);
    out.labels.push_back(source == LabelSource::oracle ? *oracle[i] : q.label);
  }
  return out;
}

std::vector<size_t> reasoner_order(const std::vector<std::string>& labels, size_t length,
                                   uint64_t seed, bool balance_labels) {
  if (!balance_labels) return permutation(labels.size(), seed);
  std::map<std::string, std::vector<size_t>> by_label;  // sorted by label
  for (size_t i = 0; i < labels.size(); ++i) by_label[labels[i]].push_back(i);
  std::vector<std::vector<size_t>> turns;
  uint64_t k = 0;
  for (auto& [label, members] : by_label) {
    const std::vector<size_t> p = permutation(members.size(), seed + 0x9e3779b97f4a7c15ull * ++k);
    std::vector<size_t> shuffled(members.size());
    for (size_t j = 0; j < members.size(); ++j) shuffled[j] = members[p[j]];
    turns.push_back(std::move(shuffled));
  }
  std::vector<size_t> order;
  order.reserve(length);
  for (size_t r = 0; order.size() < length && !turns.empty(); ++r) {
    for (const auto& t : turns) {
      if (order.size() == length) break;
      order.push_back(t[r % t.size()]);
    }
  }
  return order;
}

}  // namespace visplay::rl
