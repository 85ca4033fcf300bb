// Group-relative advantages: one warp per group of G rollouts. Two passes over the
// group (mean, then the centred sum of squares) instead of E[r^2] - E[r]^2, which
// cancels badly when rewards are large and nearly equal.
#include <stdexcept>
#include <string>

#include "kernels/cuda/advantage.cuh"
#include "visplay/kernels/advantage.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void group_advantage_kernel(const float* rewards, int num_groups, int group_size,
                                       bool unbiased_std, bool scale_by_std, float eps,
                                       float* advantages) {
  int group = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (group >= num_groups) return;  // whole warps leave together
  const float* r = rewards + static_cast<long>(group) * group_size;
  float* a = advantages + static_cast<long>(group) * group_size;
  float sum = 0.0f;
  for (int i = lane; i < group_size; i += 32) sum += r[i];
  float mean = warp_sum(sum) / group_size;
  float squares = 0.0f;
  for (int i = lane; i < group_size; i += 32) squares += (r[i] - mean) * (r[i] - mean);
  squares = warp_sum(squares);
  int dof = unbiased_std ? group_size - 1 : group_size;
  float std_dev = dof > 0 ? sqrtf(squares / dof) : 0.0f;
  for (int i = lane; i < group_size; i += 32) {
    float centred = group_size > 1 ? r[i] - mean : 0.0f;
    a[i] = scale_by_std ? centred / (std_dev + eps) : centred;
  }
}

__global__ void broadcast_advantage_kernel(const float* advantages, long total,
                                           int tokens_per_response, float* token_advantages) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    token_advantages[i] = advantages[i / tokens_per_response];
}

void group_advantage(const float* rewards, int num_groups, int group_size, bool unbiased_std,
                     bool scale_by_std, float eps, float* advantages, void* stream) {
  if (num_groups < 0 || group_size <= 0)
    throw std::invalid_argument("group_advantage: need group_size > 0 and num_groups >= 0, got " +
                                std::to_string(num_groups) + " groups of " +
                                std::to_string(group_size));
  if (num_groups == 0) return;
  constexpr int kWarpsPerBlock = 4;
  SIMT_LAUNCH(group_advantage_kernel, ceil_div(num_groups, kWarpsPerBlock), 32 * kWarpsPerBlock, 0,
              stream)
  (rewards, num_groups, group_size, unbiased_std, scale_by_std, eps, advantages);
  simt::check_launch("group_advantage");
}

void broadcast_advantage(const float* advantages, int num_responses, int tokens_per_response,
                         float* token_advantages, void* stream) {
  if (num_responses < 0 || tokens_per_response <= 0)
    throw std::invalid_argument("broadcast_advantage: bad shape " + std::to_string(num_responses) +
                                " x " + std::to_string(tokens_per_response));
  long total = static_cast<long>(num_responses) * tokens_per_response;
  if (total == 0) return;
  int blocks = static_cast<int>(total / 256 + 1 < 1024 ? total / 256 + 1 : 1024);
  SIMT_LAUNCH(broadcast_advantage_kernel, blocks, 256, 0, stream)
  (advantages, total, tokens_per_response, token_advantages);
  simt::check_launch("broadcast_advantage");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
