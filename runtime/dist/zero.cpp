#include "runtime/dist/zero.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "runtime/ops.h"

namespace visplay::dist {

ZeroAdamW::ZeroAdamW(std::vector<Tensor> params, AdamWOptions options,
                     std::shared_ptr<DataParallel> dp)
    : params_(std::move(params)), dp_(dp ? std::move(dp) : std::make_shared<DataParallel>()) {
  if (params_.empty()) throw std::invalid_argument("ZeroAdamW: no parameters");
  device_ = params_[0].device();
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (p.device() != device_) {
      throw std::invalid_argument("ZeroAdamW: parameter " + std::to_string(i) + " is on " +
                                  p.device().str() + ", parameter 0 on " + device_.str());
    }
    if (p.dtype() != DType::f32 || !p.is_contiguous()) {
      throw std::invalid_argument("ZeroAdamW: parameter " + std::to_string(i) + " " + p.str() +
                                  " is not a contiguous f32 tensor");
    }
    offset_.push_back(total_);
    total_ += p.numel();
  }
  const int W = dp_->size();
  shard_ = (total_ + W - 1) / W;
  padded_ = shard_ * W;
  begin_ = shard_ * dp_->rank();
  block_ = Tensor::zeros({shard_}, DType::f32, device_);
  block_.set_requires_grad(true);
  optimizer_ = std::make_unique<AdamW>(std::vector<Tensor>{block_}, options);
}

// The flat gradient (zeros where a parameter has no gradient on this rank), reduce-scattered.
double ZeroAdamW::reduce_gradients() {
  NoGradGuard no_grad;
  has_grad_.assign(params_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i) has_grad_[i] = params_[i].grad().defined() ? 1 : 0;
  if (dp_->distributed()) {
    Tensor flags = Tensor::from_vector(has_grad_, {static_cast<int64_t>(has_grad_.size())});
    dp_->cpu_group().all_reduce(flags, ReduceOp::max);
    has_grad_ = flags.to_vector<int32_t>();
  }
  Tensor flat = Tensor::zeros({padded_}, DType::f32, device_);
  for (size_t i = 0; i < params_.size(); ++i) {
    Tensor g = params_[i].grad();
    if (!g.defined()) continue;
    const int64_t n = params_[i].numel();
    flat.slice(0, offset_[i], offset_[i] + n).copy_(g.reshape({n}));
  }
  Tensor mine = dp_->distributed() ? dp_->group_for(device_).reduce_scatter(flat)
                                   : flat.slice(0, begin_, begin_ + shard_).contiguous();
  // The norm in double, as clip_grad_norm computes it.
  double squares = 0;
  for (double x : mine.to_vector<double>()) squares += x * x;
  norm_ = std::sqrt(dp_->sum(squares));
  block_.set_grad(mine);
  reduced_ = true;
  return norm_;
}

void ZeroAdamW::step(double max_norm, double lr) {
  if (!reduced_) throw std::logic_error("ZeroAdamW::step without reduce_gradients");
  reduced_ = false;
  NoGradGuard no_grad;
  // Clipping: the factor clip_grad_norm uses.
  if (max_norm > 0 && std::isfinite(max_norm) && std::isfinite(norm_) && norm_ > max_norm) {
    block_.set_grad(scale(block_.grad(), max_norm / (norm_ + 1e-6)));
  }
  // This rank's block of the current parameters (identical on every rank).
  Tensor flat = Tensor::zeros({padded_}, DType::f32, device_);
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = params_[i].numel();
    flat.slice(0, offset_[i], offset_[i] + n).copy_(params_[i].detach().reshape({n}));
  }
  block_.detach().copy_(flat.slice(0, begin_, begin_ + shard_));
  // Parameters without a gradient anywhere keep their values and moments: save the parts of
  // them that fall in this block and put them back after the update.
  struct Saved {
    int64_t at, n;
    Tensor value, m, v;
  };
  std::vector<Saved> saved;
  for (size_t i = 0; i < params_.size(); ++i) {
    if (has_grad_[i]) continue;
    const int64_t lo = std::max(offset_[i], begin_) - begin_;
    const int64_t hi = std::min(offset_[i] + params_[i].numel(), begin_ + shard_) - begin_;
    if (hi <= lo) continue;
    saved.push_back({lo, hi - lo, block_.detach().slice(0, lo, hi).clone(),
                     optimizer_->exp_avg()[0].slice(0, lo, hi).clone(),
                     optimizer_->exp_avg_sq()[0].slice(0, lo, hi).clone()});
  }
  optimizer_->step(lr);
  for (const Saved& s : saved) {
    block_.detach().slice(0, s.at, s.at + s.n).copy_(s.value);
    optimizer_->exp_avg()[0].slice(0, s.at, s.at + s.n).copy_(s.m);
    optimizer_->exp_avg_sq()[0].slice(0, s.at, s.at + s.n).copy_(s.v);
  }
  // Every rank's updated block into every rank's parameters.
  Tensor all = dp_->distributed() ? dp_->group_for(device_).all_gather(block_.detach())
                                  : block_.detach().clone();
  all = all.reshape({padded_});
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!has_grad_[i]) continue;
    const int64_t n = params_[i].numel();
    params_[i].detach().copy_(all.slice(0, offset_[i], offset_[i] + n).reshape(params_[i].shape()));
  }
}

void ZeroAdamW::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
  block_.zero_grad();
  reduced_ = false;
}

}  // namespace visplay::dist
