// GRPO on the CPU: group-relative advantages and the clipped-surrogate loss
// with k3 KL, forward and backward in one pass over the tokens.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

struct AdvantageOptions {
  bool scale_by_std = true;  // false: Dr. GRPO, advantages are r - mean
  bool unbiased_std = true;  // std with n - 1 (torch.std) or n
  double eps = 1e-6;
};

// rewards [groups * group_size] -> advantages, (r - mean_g) / (std_g + eps).
// A group of one, or a group whose rewards are all equal, gets 0.
void group_advantages(const float* rewards, float* advantages, int64_t groups, int64_t group_size,
                      const AdvantageOptions& opt);

struct GrpoLossOptions {
  double clip_low = 0.2;   // ratio >= 1 - clip_low
  double clip_high = 0.3;  // ratio <= 1 + clip_high
  double dual_clip = 3.0;  // for negative advantages the loss is capped at -A * dual_clip; <= 1 disables
  double kl_coef = 0.01;   // k3 estimator against the reference log-probs; 0 disables
};

struct GrpoLossStats {
  double loss = 0;           // token-mean total loss
  double pg_loss = 0;        // token-mean policy-gradient part
  double kl = 0;             // token-mean k3 KL
  double clip_fraction = 0;  // share of tokens whose gradient a clip cut (either kind)
  double dual_clip_fraction = 0;
  double tokens = 0;         // sum of the mask
};

// Per token t (T tokens, flattened [sequences, length]):
//   ratio = exp(logp - old_logp)
//   pg    = max(-A ratio, -A clip(ratio, 1 - lo, 1 + hi)), capped at -A c when A < 0
//   kl    = exp(ref - logp) - (ref - logp) - 1
//   loss  = sum_t mask (pg + kl_coef kl) / sum_t mask
// advantages are per token (broadcast from the sequence beforehand).
// dlogp (nullable) receives d loss / d logp, scaled by grad_scale.
GrpoLossStats grpo_loss(const float* logp, const float* old_logp, const float* ref_logp,
                        const float* advantages, const float* mask, int64_t T,
                        const GrpoLossOptions& opt, float* dlogp, double grad_scale);

}  // namespace visplay::kernels::cpu
