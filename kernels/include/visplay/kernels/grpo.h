// GRPO policy loss, forward and backward in one kernel: plain pointers and a stream.
// Declared for both builds of kernels/cuda/grpo.cu (visplay::kernels::cuda / ::sim).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_GRPO_H_
#define VISPLAY_KERNELS_GRPO_H_
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/grpo.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/grpo.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

struct GrpoLossOptions {
  float eps_low = 0.2f;    // ratio clipped below at 1 - eps_low
  float eps_high = 0.3f;   // ... and above at 1 + eps_high
  float dual_clip = 3.0f;  // for A < 0 the loss is capped at dual_clip * |A|; <= 1 disables
  float kl_coef = 0.01f;   // weight of the k3 KL estimate against the reference policy
};

// Per token t (all arrays [num_tokens], mask 0/1):
//   ratio = exp(logp - old_logp)
//   pg    = max(-ratio A, -clip(ratio, 1 - eps_low, 1 + eps_high) A), then for A < 0
//           min(pg, dual_clip |A|)
//   kl    = exp(ref - logp) - (ref - logp) - 1                         (k3)
//   loss  = sum_t mask (pg + kl_coef kl) / sum_t mask                  (token mean)
// Writes grad_logp = d loss / d logp for every token (0 where mask is 0) and
// stats[4] = {loss, mean pg loss, mean kl, fraction of tokens clipped}, means over the
// mask. With an all-zero mask everything is 0.
void grpo_loss(const float* logp, const float* old_logp, const float* ref_logp,
               const float* advantages, const float* mask, int num_tokens,
               const GrpoLossOptions& options, float* grad_logp, float* stats, void* stream);

#endif
