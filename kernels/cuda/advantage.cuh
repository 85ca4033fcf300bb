// Group-relative advantage kernels (launchers: visplay/kernels/advantage.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void group_advantage_kernel(const float* rewards, int num_groups, int group_size,
                                       bool unbiased_std, bool scale_by_std, float eps,
                                       float* advantages);
__global__ void broadcast_advantage_kernel(const float* advantages, long total,
                                           int tokens_per_response, float* token_advantages);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
