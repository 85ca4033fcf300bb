#include "kernels/cpu/grpo.h"

#include <algorithm>
#include <cmath>

namespace visplay::kernels::cpu {

void group_advantages(const float* rewards, float* advantages, int64_t groups, int64_t group_size,
                      const AdvantageOptions& opt) {
  for (int64_t g = 0; g < groups; ++g) {
    const float* r = rewards + g * group_size;
    float* a = advantages + g * group_size;
    if (group_size < 2) {
      std::fill(a, a + group_size, 0.0f);
      continue;
    }
    double mean = 0;
    for (int64_t i = 0; i < group_size; ++i) mean += r[i];
    mean /= group_size;
    double var = 0;
    for (int64_t i = 0; i < group_size; ++i) var += (r[i] - mean) * (r[i] - mean);
    var /= opt.unbiased_std ? group_size - 1 : group_size;
    double denom = opt.scale_by_std ? std::sqrt(var) + opt.eps : 1.0;
    for (int64_t i = 0; i < group_size; ++i) a[i] = var == 0 ? 0.0f : static_cast<float>((r[i] - mean) / denom);
  }
}

GrpoLossStats grpo_loss(const float* logp, const float* old_logp, const float* ref_logp,
                        const float* advantages, const float* mask, int64_t T,
                        const GrpoLossOptions& opt, float* dlogp, double grad_scale) {
  GrpoLossStats st;
  for (int64_t t = 0; t < T; ++t) st.tokens += mask[t];
  double inv = st.tokens > 0 ? 1.0 / st.tokens : 0.0;
  double pg_sum = 0, kl_sum = 0, clipped = 0, dual = 0;
  for (int64_t t = 0; t < T; ++t) {
    double m = mask[t];
    if (m == 0) {
      if (dlogp) dlogp[t] = 0;
      continue;
    }
    double A = advantages[t];
    double ratio = std::exp(static_cast<double>(logp[t]) - old_logp[t]);
    double clipped_ratio = std::clamp(ratio, 1.0 - opt.clip_low, 1.0 + opt.clip_high);
    double pg1 = -A * ratio, pg2 = -A * clipped_ratio;
    double pg = std::max(pg1, pg2);
    bool grad_flows = pg1 >= pg2;  // the unclipped term is the one in use
    if (opt.dual_clip > 1.0 && A < 0 && pg > -A * opt.dual_clip) {
      pg = -A * opt.dual_clip;
      grad_flows = false;
      dual += m;
    }
    if (!grad_flows) clipped += m;
    double dpg = grad_flows ? -A * ratio : 0.0;
    double kl = 0, dkl = 0;
    if (opt.kl_coef != 0) {
      double diff = static_cast<double>(ref_logp[t]) - logp[t];
      double e = std::exp(diff);
      kl = e - diff - 1.0;
      dkl = -e + 1.0;
    }
    pg_sum += m * pg;
    kl_sum += m * kl;
    if (dlogp) dlogp[t] = static_cast<float>(grad_scale * m * inv * (dpg + opt.kl_coef * dkl));
  }
  st.pg_loss = pg_sum * inv;
  st.kl = kl_sum * inv;
  st.loss = st.pg_loss + opt.kl_coef * st.kl;
  st.clip_fraction = clipped * inv;
  st.dual_clip_fraction = dual * inv;
  return st;
}

}  // namespace visplay::kernels::cpu
