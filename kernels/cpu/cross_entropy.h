// Cross-entropy of logits [N, V] against target ids, mean over the targets
// that are not ignore_index. The forward keeps each row's log-sum-exp.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// Returns the mean loss; lse[N] is written; count_out = number of counted rows.
template <class T>
double cross_entropy_forward(const T* logits, const int64_t* targets, T* lse, int64_t N, int64_t V,
                             int64_t ignore_index, int64_t* count_out);
// dlogits = scale * (softmax - onehot) for counted rows, 0 for ignored rows;
// scale is d(loss) / count.
template <class T>
void cross_entropy_backward(const T* logits, const int64_t* targets, const T* lse, T* dlogits,
                            int64_t N, int64_t V, int64_t ignore_index, double scale);

}  // namespace visplay::kernels::cpu
