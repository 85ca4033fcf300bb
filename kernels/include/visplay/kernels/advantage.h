// Group-relative advantages for GRPO: plain pointers, sizes and a stream, no Tensor.
// Declared for both builds of kernels/cuda/advantage.cu: visplay::kernels::cuda (nvcc,
// device pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_ADVANTAGE_H_
#define VISPLAY_KERNELS_ADVANTAGE_H_
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/advantage.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/advantage.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

// rewards[num_groups * group_size] (group-major) -> advantages of the same shape:
//   (r - mean_g) / (std_g + eps)   when scale_by_std, else r - mean_g.
// std_g is unbiased (divides by G - 1) or biased (by G); a group of one gets 0.
void group_advantage(const float* rewards, int num_groups, int group_size, bool unbiased_std,
                     bool scale_by_std, float eps, float* advantages, void* stream);

// advantages[num_responses] -> token_advantages[num_responses * tokens_per_response]:
// every token of response r gets advantage r.
void broadcast_advantage(const float* advantages, int num_responses, int tokens_per_response,
                         float* token_advantages, void* stream);

#endif
