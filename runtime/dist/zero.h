// ZeRO stage 1: AdamW whose moments are sharded over the data-parallel ranks. The parameters
// are laid end to end in one flat f32 vector (padded to a multiple of the rank count); rank r
// owns block r. An update is
//   1. reduce-scatter of the flat gradient: rank r receives the sum over ranks of block r;
//   2. the global gradient norm from the blocks' squared norms (one scalar all-reduce), and
//      the same clipping factor clip_grad_norm would apply;
//   3. AdamW on block r only (the ordinary AdamW on a flat tensor, so each element gets
//      exactly the update the unsharded optimizer computes), moments kept for block r only;
//   4. all-gather of the updated blocks into every rank's parameters.
// Memory for the moments drops from 2N to 2N / ranks floats per rank. The result equals
// DataParallel::all_reduce_gradients + clip_grad_norm + AdamW up to float rounding; a
// parameter without a gradient on every rank is left alone (value and moments), as AdamW
// leaves it.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/dist/data_parallel.h"
#include "runtime/optim.h"

namespace visplay::dist {

class ZeroAdamW {
 public:
  // `params`: every rank the same list (same shapes, one device). Moments start at zero.
  ZeroAdamW(std::vector<Tensor> params, AdamWOptions options, std::shared_ptr<DataParallel> dp);

  // Steps 1-2: sums the gradients over ranks into this rank's block and returns the global
  // L2 norm of the summed gradient (before clipping). The parameters' own .grad are left as
  // they were (zero_grad clears them).
  double reduce_gradients();
  // Steps 2-4 after reduce_gradients: clip to max_norm (<= 0 or infinite: no clipping), AdamW
  // with lr (< 0: the options' lr), all-gather the parameters.
  void step(double max_norm, double lr = -1);
  void zero_grad();

  int64_t steps() const { return optimizer_->steps(); }
  int64_t shard_numel() const { return shard_; }
  int64_t total_numel() const { return total_; }

 private:
  std::vector<Tensor> params_;
  std::vector<int64_t> offset_;  // each parameter's first element in the flat vector
  std::shared_ptr<DataParallel> dp_;
  Device device_;
  int64_t total_ = 0, padded_ = 0, shard_ = 0, begin_ = 0;
  Tensor block_;  // this rank's block of the flat parameters [shard_], its .grad the summed block
  std::unique_ptr<AdamW> optimizer_;
  std::vector<int32_t> has_grad_;  // per parameter, over every rank
  double norm_ = 0;
  bool reduced_ = false;
};

}  // namespace visplay::dist
