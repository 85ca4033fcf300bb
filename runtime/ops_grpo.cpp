// GRPO ops: group advantages (no gradient) and the fused loss.
#include "kernels/cpu/grpo.h"
#include "runtime/ops_common.h"

namespace visplay {
using namespace detail;

Tensor group_advantages(const Tensor& rewards, const kernels::cpu::AdvantageOptions& opt) {
  const char* op = "group_advantages";
  require_cpu(op, rewards);
  if (rewards.dim() != 2) op_error(op, "rewards must be [groups, G], got " + shape_str(rewards.shape()));
  Tensor r = rewards.to(DType::f32).contiguous();
  Tensor a = Tensor::empty(r.shape(), DType::f32);
  kernels::cpu::group_advantages(r.data<float>(), a.data<float>(), r.size(0), r.size(1), opt);
  return a;
}

Tensor grpo_loss(const Tensor& logp, const Tensor& old_logp, const Tensor& ref_logp,
                 const Tensor& advantages, const Tensor& mask,
                 const kernels::cpu::GrpoLossOptions& opt, kernels::cpu::GrpoLossStats* stats) {
  const char* op = "grpo_loss";
  require_cpu(op, logp);
  for (const Tensor* t : {&old_logp, &ref_logp, &advantages, &mask})
    if (t->shape() != logp.shape())
      op_error(op, "all inputs must have the log-probs' shape " + shape_str(logp.shape()) + ", got " +
                       shape_str(t->shape()));
  Tensor lp = logp.to(DType::f32).contiguous();
  Tensor old_c = old_logp.to(DType::f32).contiguous(), ref_c = ref_logp.to(DType::f32).contiguous();
  Tensor adv_c = advantages.to(DType::f32).contiguous(), mask_c = mask.to(DType::f32).contiguous();
  int64_t T = lp.numel();
  Tensor dlogp = Tensor::empty(lp.shape(), DType::f32);
  // The forward already knows the gradient per unit of loss: keep it.
  kernels::cpu::GrpoLossStats st =
      kernels::cpu::grpo_loss(lp.data<float>(), old_c.data<float>(), ref_c.data<float>(),
                              adv_c.data<float>(), mask_c.data<float>(), T, opt, dlogp.data<float>(), 1.0);
  if (stats) *stats = st;
  Tensor out = Tensor::full({}, st.loss, DType::f32);
  return record_op(out, op, {lp}, [dlogp](const Tensor& g) {
    return std::vector<Tensor>{scale(dlogp, g.item())};
  });
}

}  // namespace visplay
