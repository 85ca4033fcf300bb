#include "runtime/optim.h"

#include <cmath>
#include <stdexcept>

#include "kernels/cpu/adamw.h"
#include "runtime/ops_common.h"
#include "visplay/kernels/adamw.h"

namespace visplay {
using namespace detail;

AdamW::AdamW(std::vector<Tensor> params, AdamWOptions opt) : params_(std::move(params)), opt_(opt) {
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (!p.is_leaf() || !p.requires_grad())
      op_error("AdamW", "parameter " + std::to_string(i) + " " + p.str() + " is not a leaf that requires grad");
    if (!p.is_contiguous()) op_error("AdamW", "parameter " + std::to_string(i) + " is not contiguous");
    // Moments in f32 for f32/bf16 parameters (the master copy is the caller's
    // choice), f64 for f64.
    DType t = p.dtype() == DType::f64 ? DType::f64 : DType::f32;
    m_.push_back(Tensor::zeros(p.shape(), t, p.device()));
    v_.push_back(Tensor::zeros(p.shape(), t, p.device()));
    if (opt_.master_weights && p.dtype() == DType::bf16) {
      NoGradGuard no_grad;
      master_.push_back(p.detach().to(DType::f32).contiguous());
    } else {
      if (on_device(p) && p.dtype() == DType::bf16)
        op_error("AdamW", "bf16 parameter " + std::to_string(i) + " on " + p.device().str() +
                              " needs AdamWOptions::master_weights (device steps keep an f32 "
                              "master)");
      master_.emplace_back();
    }
  }
}

void AdamW::step(double lr_override) {
  NoGradGuard no_grad;
  ++step_;
  double lr = lr_override >= 0 ? lr_override : opt_.lr;
  // Device parameters (f32) go through the fused multi-tensor kernel in one launch.
  std::vector<size_t> device_params;
  std::vector<Tensor> device_grads;
  for (size_t i = 0; i < params_.size(); ++i)
    if (on_device(params_[i]) && params_[i].grad().defined()) {
      if (!master_[i].defined()) require_device_f32("AdamW", params_[i]);
      device_params.push_back(i);
      device_grads.push_back(params_[i].grad().to(DType::f32).contiguous());
    }
  if (!device_params.empty()) {
    Device dev = params_[device_params[0]].device();
    auto launch = [&](auto tensor_tag, auto options, auto kernel) {
      using TensorDesc = decltype(tensor_tag);
      std::vector<TensorDesc> descs;
      for (size_t k = 0; k < device_params.size(); ++k) {
        size_t i = device_params[k];
        TensorDesc d{};
        d.grad = device_grads[k].data<float>();
        d.m = m_[i].data<float>();
        d.v = v_[i].data<float>();
        d.size = static_cast<long>(params_[i].numel());
        if (master_[i].defined()) {  // step the master, store its bf16 rounding in the parameter
          d.param = master_[i].data<float>();
          d.param_bf16 = reinterpret_cast<uint16_t*>(params_[i].data<bf16>());
        } else {
          d.param = params_[i].data<float>();
        }
        descs.push_back(d);
      }
      options.lr = lr;
      options.beta1 = opt_.beta1;
      options.beta2 = opt_.beta2;
      options.eps = opt_.eps;
      options.weight_decay = opt_.weight_decay;
      options.step = static_cast<int>(step_);
      kernel(descs.data(), static_cast<int>(descs.size()), options, nullptr);
    };
    if (dev.type == DeviceType::sim) {
      launch(kernels::sim::AdamWTensor{}, kernels::sim::AdamWOptions{}, kernels::sim::adamw_multi);
    } else {
#ifdef VISPLAY_HAVE_CUDA
      launch(kernels::cuda::AdamWTensor{}, kernels::cuda::AdamWOptions{}, kernels::cuda::adamw_multi);
#else
      op_error("AdamW", "this build has no CUDA backend (device " + dev.str() + ")");
#endif
    }
  }
  for (size_t i = 0; i < params_.size(); ++i) {
    if (on_device(params_[i])) continue;
    const Tensor& p = params_[i];
    Tensor g = p.grad();
    if (!g.defined()) continue;
    require_cpu("AdamW", p);
    if (master_[i].defined()) {
      Tensor g32 = g.to(DType::f32).contiguous();
      kernels::cpu::adamw_step_bf16_master(
          master_[i].data<float>(), reinterpret_cast<uint16_t*>(p.data<bf16>()), g32.data<float>(),
          m_[i].data<float>(), v_[i].data<float>(), p.numel(), lr, opt_.beta1, opt_.beta2, opt_.eps,
          opt_.weight_decay, step_);
      continue;
    }
    if (p.dtype() == DType::bf16) {
      // Update an f32 copy, then round back into the bf16 parameter.
      Tensor p32 = p.to(DType::f32).contiguous();
      Tensor g32 = g.to(DType::f32).contiguous();
      kernels::cpu::adamw_step<float>(p32.data<float>(), g32.data<float>(), m_[i].data<float>(),
                                      v_[i].data<float>(), p.numel(), lr, opt_.beta1, opt_.beta2,
                                      opt_.eps, opt_.weight_decay, step_);
      p.detach().copy_(p32);
      continue;
    }
    Tensor gc = g.to(p.dtype()).contiguous();
    dispatch_float("AdamW", p.dtype(), [&](auto t) {
      using T = decltype(t);
      kernels::cpu::adamw_step<T>(p.data<T>(), gc.data<T>(), m_[i].data<T>(), v_[i].data<T>(),
                                  p.numel(), lr, opt_.beta1, opt_.beta2, opt_.eps,
                                  opt_.weight_decay, step_);
    });
  }
}

void AdamW::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard no_grad;
  double total = 0;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    std::vector<double> v = g.to_vector<double>();
    for (double x : v) total += x * x;
  }
  double norm = std::sqrt(total);
  if (std::isfinite(norm) && norm > max_norm && norm > 0) {
    double factor = max_norm / (norm + 1e-6);
    for (const Tensor& p : params)
      if (p.grad().defined()) p.set_grad(scale(p.grad(), factor));
  }
  return norm;
}

LrSchedule lr_schedule_from_name(const std::string& name) {
  if (name == "constant") return LrSchedule::constant;
  if (name == "linear_warmup") return LrSchedule::linear_warmup;
  if (name == "cosine") return LrSchedule::cosine;
  throw std::invalid_argument("unknown lr schedule '" + name +
                              "' (expected constant, linear_warmup or cosine)");
}

double lr_at(LrSchedule s, double base_lr, int64_t step, int64_t total, int64_t warmup,
             double min_lr) {
  if (s == LrSchedule::constant) return base_lr;
  if (warmup > 0 && step < warmup) return base_lr * static_cast<double>(step + 1) / warmup;
  if (s == LrSchedule::linear_warmup) return base_lr;
  int64_t span = std::max<int64_t>(1, total - warmup - 1);
  double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
  return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace visplay
