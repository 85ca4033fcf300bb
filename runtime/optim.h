// AdamW with decoupled weight decay, global-norm gradient clipping and the
// learning-rate schedules the training loops use.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/tensor.h"

namespace visplay {

struct AdamWOptions {
  double lr = 1e-3;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;
  // Mixed precision: every bf16 parameter gets an f32 master copy (taken from the parameter
  // when the optimizer is built). Steps update the master with f32 moments and store the
  // master rounded to bf16 (nearest even) into the parameter, so updates smaller than a bf16
  // ulp accumulate instead of rounding away. Off: a bf16 parameter is widened, stepped and
  // rounded back each step (cpu only). f32/f64 parameters are their own master either way.
  bool master_weights = false;
};

class AdamW {
 public:
  AdamW(std::vector<Tensor> params, AdamWOptions opt);
  // One update from the accumulated .grad of every parameter (parameters
  // without a gradient are skipped). Uses lr_override when >= 0.
  void step(double lr_override = -1);
  void zero_grad();
  int64_t steps() const { return step_; }
  const AdamWOptions& options() const { return opt_; }
  // Optimizer state for checkpoints: first and second moments per parameter.
  std::vector<Tensor>& exp_avg() { return m_; }
  std::vector<Tensor>& exp_avg_sq() { return v_; }
  // The f32 master copy per parameter (undefined where the parameter is its own master).
  std::vector<Tensor>& master() { return master_; }
  void set_steps(int64_t s) { step_ = s; }
  const std::vector<Tensor>& params() const { return params_; }

 private:
  std::vector<Tensor> params_, m_, v_, master_;
  AdamWOptions opt_;
  int64_t step_ = 0;
};

// Scales all gradients so their global L2 norm is at most max_norm; returns
// the norm before clipping (computed in double, in parameter order).
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

enum class LrSchedule { constant, linear_warmup, cosine };
LrSchedule lr_schedule_from_name(const std::string& name);

// The learning rate at `step` (0-based) of `total` steps: constant; linear
// warmup over `warmup` steps then constant; or warmup then cosine decay to
// min_lr at the last step.
double lr_at(LrSchedule s, double base_lr, int64_t step, int64_t total, int64_t warmup = 0,
             double min_lr = 0.0);

}  // namespace visplay
