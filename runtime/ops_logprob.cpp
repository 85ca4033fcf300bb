// token_logprobs: the fused LM head + log-softmax + gather (f32 compute).
#include "kernels/cpu/logprob.h"
#include "runtime/ops_common.h"
#include "visplay/kernels/logprob.h"

namespace visplay {
using namespace detail;

TokenLogprobs token_logprobs(const Tensor& hidden, const Tensor& head_weight, const Tensor& targets,
                             int64_t chunk) {
  const char* op = "token_logprobs";
  check_floating(op, hidden);
  check_floating(op, head_weight);
  check_same_device(op, hidden, head_weight);
  if (chunk <= 0) op_error(op, "chunk must be positive");
  int64_t D = hidden.size(-1);
  if (head_weight.dim() != 2 || head_weight.size(1) != D)
    op_error(op, "head weight " + shape_str(head_weight.shape()) + " does not match hidden " +
                     shape_str(hidden.shape()) + " (expected [V, D])");
  Shape lead(hidden.shape().begin(), hidden.shape().end() - 1);
  if (targets.shape() != lead)
    op_error(op, "targets " + shape_str(targets.shape()) + " must be " + shape_str(lead) +
                     " for hidden " + shape_str(hidden.shape()));
  int64_t V = head_weight.size(0), N = shape_numel(lead);
  Tensor tg = as_index(op, targets);
  for (int64_t i = 0; i < N; ++i) {
    int64_t t = tg.data<int64_t>()[i];
    if (t < 0 || t >= V)
      op_error(op, "target " + std::to_string(t) + " at token " + std::to_string(i) +
                       " out of range for a vocabulary of " + std::to_string(V));
  }
  DType out_dtype = hidden.dtype();
  if (on_device(hidden)) {
    Tensor h = hidden.to(DType::f32).contiguous(), w = head_weight.to(DType::f32).contiguous();
    Tensor t32 = tg.to(DType::i32).to(h.device());
    Tensor logprob = Tensor::empty(lead, DType::f32, h.device()), entropy = Tensor::empty(lead, DType::f32, h.device());
    Tensor lse = Tensor::empty({N}, DType::f32, h.device());
    VISPLAY_DEVICE_KERNEL(h.device(), logprob_forward, h.data<float>(), w.data<float>(), t32.data<int32_t>(),
                          static_cast<int>(N), static_cast<int>(D), static_cast<int>(V), logprob.data<float>(),
                          entropy.data<float>(), lse.data<float>(), nullptr);
    Tensor hs = h.detach(), ws = w.detach();
    Tensor out = record_op(logprob, op, {h, w}, [=](const Tensor& g) {
      Tensor gc = g.to(DType::f32).contiguous();
      Tensor dh = Tensor::empty(hs.shape(), DType::f32, hs.device());
      Tensor dw = Tensor::empty(ws.shape(), DType::f32, ws.device());
      VISPLAY_DEVICE_KERNEL(hs.device(), logprob_backward, hs.data<float>(), ws.data<float>(), t32.data<int32_t>(),
                            static_cast<int>(N), static_cast<int>(D), static_cast<int>(V), lse.data<float>(),
                            nullptr, gc.data<float>(), nullptr, dh.data<float>(), dw.data<float>(), nullptr);
      return std::vector<Tensor>{dh, dw};
    });
    return {out, entropy};
  }
  // The kernel computes in f32; f64 inputs (gradient checks) are rounded.
  Tensor h = hidden.to(DType::f32).contiguous(), w = head_weight.to(DType::f32).contiguous();
  Tensor logprob = Tensor::empty(lead, DType::f32), entropy = Tensor::empty(lead, DType::f32);
  Tensor lse = Tensor::empty({N}, DType::f32);
  kernels::cpu::token_logprobs_forward(h.data<float>(), w.data<float>(), tg.data<int64_t>(),
                                       logprob.data<float>(), entropy.data<float>(),
                                       lse.data<float>(), N, D, V, chunk);
  Tensor hs = h.detach(), ws = w.detach();
  bool need_h = h.requires_grad(), need_w = w.requires_grad();
  Tensor out = record_op(logprob, op, {h, w}, [=](const Tensor& g) {
    Tensor gc = g.to(DType::f32).contiguous();
    Tensor dh = need_h ? Tensor::empty(hs.shape(), DType::f32) : Tensor();
    Tensor dw = need_w ? Tensor::empty(ws.shape(), DType::f32) : Tensor();
    kernels::cpu::token_logprobs_backward(hs.data<float>(), ws.data<float>(), tg.data<int64_t>(),
                                          lse.data<float>(), gc.data<float>(),
                                          need_h ? dh.data<float>() : nullptr,
                                          need_w ? dw.data<float>() : nullptr, N, D, V, chunk);
    return std::vector<Tensor>{dh, dw};
  });
  return {out.to(out_dtype == DType::f64 ? DType::f64 : DType::f32), entropy};
}

}  // namespace visplay
