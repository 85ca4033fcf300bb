// GRPO ops: group advantages (no gradient) and the fused loss.
#include "kernels/cpu/grpo.h"
#include "runtime/ops_common.h"
#include "visplay/kernels/advantage.h"
#include "visplay/kernels/grpo.h"

namespace visplay {
using namespace detail;

Tensor group_advantages(const Tensor& rewards, const kernels::cpu::AdvantageOptions& opt) {
  const char* op = "group_advantages";
  if (rewards.dim() != 2) op_error(op, "rewards must be [groups, G], got " + shape_str(rewards.shape()));
  Tensor r = rewards.to(DType::f32).contiguous();
  Tensor a = Tensor::empty(r.shape(), DType::f32, r.device());
  if (on_device(r)) {
    VISPLAY_DEVICE_KERNEL(r.device(), group_advantage, r.data<float>(), static_cast<int>(r.size(0)),
                          static_cast<int>(r.size(1)), opt.unbiased_std, opt.scale_by_std,
                          static_cast<float>(opt.eps), a.data<float>(), nullptr);
    return a;
  }
  kernels::cpu::group_advantages(r.data<float>(), a.data<float>(), r.size(0), r.size(1), opt);
  return a;
}

Tensor grpo_loss(const Tensor& logp, const Tensor& old_logp, const Tensor& ref_logp,
                 const Tensor& advantages, const Tensor& mask,
                 const kernels::cpu::GrpoLossOptions& opt, kernels::cpu::GrpoLossStats* stats) {
  const char* op = "grpo_loss";
  for (const Tensor* t : {&old_logp, &ref_logp, &advantages, &mask})
    if (t->shape() != logp.shape())
      op_error(op, "all inputs must have the log-probs' shape " + shape_str(logp.shape()) + ", got " +
                       shape_str(t->shape()));
  Tensor lp = logp.to(DType::f32).contiguous();
  Tensor old_c = old_logp.to(DType::f32).contiguous(), ref_c = ref_logp.to(DType::f32).contiguous();
  Tensor adv_c = advantages.to(DType::f32).contiguous(), mask_c = mask.to(DType::f32).contiguous();
  for (const Tensor* t : {&old_c, &ref_c, &adv_c, &mask_c}) check_same_device(op, lp, *t);
  int64_t T = lp.numel();
  Tensor dlogp = Tensor::empty(lp.shape(), DType::f32, lp.device());
  // The forward already knows the gradient per unit of loss: keep it.
  kernels::cpu::GrpoLossStats st;
  if (on_device(lp)) {
    Tensor dev_stats = Tensor::empty({4}, DType::f32, lp.device());
    // Each backend declares its own (identical) options struct.
    auto launch = [&](auto options, auto kernel) {
      options.eps_low = static_cast<float>(opt.clip_low);
      options.eps_high = static_cast<float>(opt.clip_high);
      options.dual_clip = static_cast<float>(opt.dual_clip);
      options.kl_coef = static_cast<float>(opt.kl_coef);
      kernel(lp.data<float>(), old_c.data<float>(), ref_c.data<float>(), adv_c.data<float>(),
             mask_c.data<float>(), static_cast<int>(T), options, dlogp.data<float>(), dev_stats.data<float>(),
             nullptr);
    };
    if (lp.device().type == DeviceType::sim) {
      launch(kernels::sim::GrpoLossOptions{}, kernels::sim::grpo_loss);
    } else {
#ifdef VISPLAY_HAVE_CUDA
      launch(kernels::cuda::GrpoLossOptions{}, kernels::cuda::grpo_loss);
#else
      op_error(op, "this build has no CUDA backend (device " + lp.device().str() + ")");
#endif
    }
    std::vector<float> sv = dev_stats.to_vector<float>();
    st.loss = sv[0], st.pg_loss = sv[1], st.kl = sv[2], st.clip_fraction = sv[3];
    st.tokens = sum(mask_c).item();
  } else {
    st = kernels::cpu::grpo_loss(lp.data<float>(), old_c.data<float>(), ref_c.data<float>(), adv_c.data<float>(),
                                 mask_c.data<float>(), T, opt, dlogp.data<float>(), 1.0);
  }
  if (stats) *stats = st;
  Tensor out = Tensor::full({}, st.loss, DType::f32, lp.device());
  return record_op(out, op, {lp}, [dlogp](const Tensor& g) {
    return std::vector<Tensor>{scale(dlogp, g.item())};
  });
}

}  // namespace visplay
