// GRPO loss forward and backward in one kernel. The token mean needs the mask count
// before any gradient can be written, so a single block makes two passes: count, then
// loss terms and gradients. One block keeps every sum in a fixed order (deterministic)
// and the op is memory-bound and tiny next to the model, so the lost parallelism is cheap.
#include <stdexcept>
#include <string>

#include "kernels/cuda/grpo.cuh"
#include "visplay/kernels/grpo.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void grpo_loss_kernel(const float* logp, const float* old_logp, const float* ref_logp,
                                 const float* advantages, const float* mask, int num_tokens,
                                 float eps_low, float eps_high, float dual_clip, float kl_coef,
                                 float* grad_logp, float* stats) {
  __shared__ float scratch[32];
  float count = 0.0f;
  for (int i = threadIdx.x; i < num_tokens; i += blockDim.x) count += mask[i];
  count = block_sum(count, scratch);
  float inv_count = count > 0.0f ? 1.0f / count : 0.0f;
  float pg_sum = 0.0f, kl_sum = 0.0f, clipped_sum = 0.0f;
  for (int i = threadIdx.x; i < num_tokens; i += blockDim.x) {
    if (mask[i] == 0.0f) {
      grad_logp[i] = 0.0f;
      continue;
    }
    GrpoToken t = grpo_token(logp[i], old_logp[i], ref_logp[i], advantages[i], eps_low, eps_high,
                             dual_clip, kl_coef);
    grad_logp[i] = mask[i] * t.dloss * inv_count;
    pg_sum += mask[i] * t.pg;
    kl_sum += mask[i] * t.kl;
    clipped_sum += mask[i] * t.clipped;
  }
  pg_sum = block_sum(pg_sum, scratch);
  kl_sum = block_sum(kl_sum, scratch);
  clipped_sum = block_sum(clipped_sum, scratch);
  if (threadIdx.x == 0) {
    stats[0] = (pg_sum + kl_coef * kl_sum) * inv_count;
    stats[1] = pg_sum * inv_count;
    stats[2] = kl_sum * inv_count;
    stats[3] = clipped_sum * inv_count;
  }
}

void grpo_loss(const float* logp, const float* old_logp, const float* ref_logp,
               const float* advantages, const float* mask, int num_tokens,
               const GrpoLossOptions& options, float* grad_logp, float* stats, void* stream) {
  if (num_tokens < 0)
    throw std::invalid_argument("grpo_loss: num_tokens = " + std::to_string(num_tokens));
  if (!(options.eps_low >= 0.0f && options.eps_low < 1.0f && options.eps_high >= 0.0f))
    throw std::invalid_argument("grpo_loss: need 0 <= eps_low < 1 and eps_high >= 0");
  SIMT_LAUNCH(grpo_loss_kernel, 1, 256, 0, stream)
  (logp, old_logp, ref_logp, advantages, mask, num_tokens, options.eps_low, options.eps_high,
   options.dual_clip, options.kl_coef, grad_logp, stats);
  simt::check_launch("grpo_loss");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
