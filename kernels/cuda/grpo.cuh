// GRPO loss kernel (launcher: visplay/kernels/grpo.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

// One token's contribution: the policy-gradient loss and kl, their derivative with
// respect to logp, and whether the clipped branch (or the dual clip) was taken.
struct GrpoToken {
  float pg, kl, dloss, clipped;
};

__device__ __forceinline__ GrpoToken grpo_token(float logp, float old_logp, float ref_logp,
                                                float advantage, float eps_low, float eps_high,
                                                float dual_clip, float kl_coef) {
  float ratio = __expf(logp - old_logp);
  float clipped_ratio = fminf(fmaxf(ratio, 1.0f - eps_low), 1.0f + eps_high);
  float pg_unclipped = -ratio * advantage, pg_clipped = -clipped_ratio * advantage;
  GrpoToken t;
  bool use_unclipped = pg_unclipped >= pg_clipped;
  t.pg = use_unclipped ? pg_unclipped : pg_clipped;
  // d pg / d logp: the unclipped branch depends on ratio = exp(logp - old); the clipped
  // value is a constant unless the ratio is inside the band (where both are equal).
  float dpg = use_unclipped ? -ratio * advantage : 0.0f;
  t.clipped = use_unclipped ? 0.0f : 1.0f;
  if (dual_clip > 1.0f && advantage < 0.0f && t.pg > -dual_clip * advantage) {
    t.pg = -dual_clip * advantage;
    dpg = 0.0f;
    t.clipped = 1.0f;
  }
  float log_ratio_ref = ref_logp - logp;
  float ratio_ref = __expf(log_ratio_ref);
  t.kl = ratio_ref - log_ratio_ref - 1.0f;
  t.dloss = dpg + kl_coef * (1.0f - ratio_ref);
  return t;
}

__global__ void grpo_loss_kernel(const float* logp, const float* old_logp, const float* ref_logp,
                                 const float* advantages, const float* mask, int num_tokens,
                                 float eps_low, float eps_high, float dual_clip, float kl_coef,
                                 float* grad_logp, float* stats);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
