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
  // Masters are kept when some parameter is bf16 (f32 parameters are their own master, but a
  // persistent block serves them as well); the bf16 all-gather needs every parameter bf16.
  bool all_bf16 = true;
  for (const Tensor& p : params_) {
    if (p.dtype() == DType::bf16) masters_ = options.master_weights;
    if (p.dtype() != DType::bf16) all_bf16 = false;
  }
  gather_bf16_ = masters_ && all_bf16;
  for (size_t i = 0; i < params_.size(); ++i) {
    const Tensor& p = params_[i];
    if (p.device() != device_) {
      throw std::invalid_argument("ZeroAdamW: parameter " + std::to_string(i) + " is on " +
                                  p.device().str() + ", parameter 0 on " + device_.str());
    }
    const bool dtype_ok =
        p.dtype() == DType::f32 || (options.master_weights && p.dtype() == DType::bf16);
    if (!dtype_ok || !p.is_contiguous()) {
      throw std::invalid_argument("ZeroAdamW: parameter " + std::to_string(i) + " " + p.str() +
                                  " is not a contiguous f32 tensor (bf16 needs master weights)");
    }
    offset_.push_back(total_);
    total_ += p.numel();
  }
  const int W = dp_->size();
  shard_ = (total_ + W - 1) / W;
  begin_ = shard_ * dp_->rank();
  block_ = Tensor::zeros({shard_}, DType::f32, device_);
  if (masters_) load_block();  // the f32 masters of this shard, once
  block_.set_requires_grad(true);
  AdamWOptions block_options = options;
  block_options.master_weights = false;  // the f32 block is its own master
  optimizer_ = std::make_unique<AdamW>(std::vector<Tensor>{block_}, block_options);
}

// Calls f(i, at, flat_at, n) for every parameter i that overlaps the flat range [lo, hi):
// its elements [at, at + n) are flat elements [flat_at, flat_at + n).
template <class F>
void ZeroAdamW::for_each_part(int64_t lo, int64_t hi, F&& f) const {
  // The first parameter that ends after lo (offsets are increasing).
  size_t i =
      static_cast<size_t>(std::upper_bound(offset_.begin(), offset_.end(), lo) - offset_.begin());
  i = i == 0 ? 0 : i - 1;
  for (; i < params_.size() && offset_[i] < hi; ++i) {
    const int64_t a = std::max(lo, offset_[i]), b = std::min(hi, offset_[i] + params_[i].numel());
    if (b > a) f(i, a - offset_[i], a, b - a);
  }
}

// This rank's block of the current parameters (identical on every rank), widened to f32: the
// part of each parameter that falls in [begin_, begin_ + shard_), so no whole flat copy is
// made (the padding stays zero).
void ZeroAdamW::load_block() {
  NoGradGuard no_grad;
  for_each_part(begin_, begin_ + shard_, [&](size_t i, int64_t at, int64_t flat_at, int64_t n) {
    block_.detach()
        .slice(0, flat_at - begin_, flat_at - begin_ + n)
        .copy_(params_[i].detach().reshape({params_[i].numel()}).slice(0, at, at + n));
  });
}

int64_t ZeroAdamW::state_bytes() const {
  int64_t bytes = 0;
  for (const std::vector<Tensor>* moments : {&optimizer_->exp_avg(), &optimizer_->exp_avg_sq()})
    for (const Tensor& t : *moments)
      bytes += t.numel() * static_cast<int64_t>(dtype_size(t.dtype()));
  if (masters_) bytes += block_.numel() * static_cast<int64_t>(dtype_size(block_.dtype()));
  return bytes;
}

int64_t ZeroAdamW::bucket_length() const {
  return std::max<int64_t>(1, bucket_elements_ / dp_->size());
}

// The gradient reduce-scattered bucket by bucket: bucket c holds piece c of every rank's
// block, in rank order ([W, len], zeros where a parameter has no gradient on this rank and in
// the padding), so rank r receives the summed piece c of its own block. No rank ever holds a
// flat gradient of every parameter: at 3 B parameters that would be 12 GB for a moment.
double ZeroAdamW::reduce_gradients() {
  NoGradGuard no_grad;
  has_grad_.assign(params_.size(), 0);
  for (size_t i = 0; i < params_.size(); ++i) has_grad_[i] = params_[i].grad().defined() ? 1 : 0;
  if (dp_->distributed()) {
    Tensor flags = Tensor::from_vector(has_grad_, {static_cast<int64_t>(has_grad_.size())});
    dp_->cpu_group().all_reduce(flags, ReduceOp::max);
    has_grad_ = flags.to_vector<int32_t>();
  }
  const int64_t W = dp_->size(), len = bucket_length();
  Tensor mine = Tensor::empty({shard_}, DType::f32, device_);
  for (int64_t c0 = 0; c0 < shard_; c0 += len) {
    const int64_t n = std::min(len, shard_ - c0);
    Tensor bucket = Tensor::zeros({W * n}, DType::f32, device_);
    for (int64_t q = 0; q < W; ++q) {
      const int64_t lo = q * shard_ + c0;
      for_each_part(lo, lo + n, [&](size_t i, int64_t at, int64_t flat_at, int64_t count) {
        Tensor g = params_[i].grad();
        if (!g.defined()) return;
        bucket.slice(0, q * n + flat_at - lo, q * n + flat_at - lo + count)
            .copy_(g.reshape({params_[i].numel()}).slice(0, at, at + count));
      });
    }
    Tensor part = dp_->distributed() ? dp_->group_for(device_).reduce_scatter(bucket)
                                     : bucket.slice(0, dp_->rank() * n, (dp_->rank() + 1) * n);
    mine.slice(0, c0, c0 + n).copy_(part);
  }
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
  // f32 parameters are their own master: the block is re-read from them (they are identical on
  // every rank). Under master weights the block already holds the masters.
  if (!masters_) load_block();
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
  // Every rank's updated block into every rank's parameters (a bf16 parameter stores the
  // rounding of its master), bucket by bucket like the gradients; when all are bf16 the
  // blocks travel rounded (half the bytes).
  const int64_t W = dp_->size(), len = bucket_length();
  for (int64_t c0 = 0; c0 < shard_; c0 += len) {
    const int64_t n = std::min(len, shard_ - c0);
    Tensor piece = block_.detach().slice(0, c0, c0 + n);
    piece = gather_bf16_ ? piece.to(DType::bf16) : piece.contiguous();
    Tensor all = dp_->distributed() ? dp_->group_for(device_).all_gather(piece) : piece;
    all = all.reshape({W * n});
    for (int64_t q = 0; q < W; ++q) {
      const int64_t lo = q * shard_ + c0;
      for_each_part(lo, lo + n, [&](size_t i, int64_t at, int64_t flat_at, int64_t count) {
        if (!has_grad_[i]) return;
        params_[i]
            .detach()
            .reshape({params_[i].numel()})
            .slice(0, at, at + count)
            .copy_(all.slice(0, q * n + flat_at - lo, q * n + flat_at - lo + count));
      });
    }
  }
}

void ZeroAdamW::zero_grad() {
  for (const Tensor& p : params_) p.zero_grad();
  block_.zero_grad();
  reduced_ = false;
}

}  // namespace visplay::dist
