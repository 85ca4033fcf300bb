// ZeRO stage 1: AdamW whose moments are sharded over the data-parallel ranks. The parameters
// are laid end to end in one flat f32 vector (padded to a multiple of the rank count); rank r
// owns block r. An update is
//   1. reduce-scatter of the flat gradient: rank r receives the sum over ranks of block r;
//   2. the global gradient norm from the blocks' squared norms (one scalar all-reduce), and
//      the same clipping factor clip_grad_norm would apply;
//   3. AdamW on block r only (the ordinary AdamW on a flat tensor, so each element gets
//      exactly the update the unsharded optimizer computes), moments kept for block r only;
//   4. all-gather of the updated blocks into every rank's parameters.
// Memory for the moments drops from 2N to 2N / ranks floats per rank. Steps 1 and 4 run in
// buckets of set_bucket_elements() elements, so the flat vector itself is never built.
// Mixed precision (AdamWOptions::master_weights with bf16 parameters): block r *is* rank r's
// f32 master of its shard, taken from the parameters once when the optimizer is built and
// kept from step to step (not re-read from the rounded bf16 weights); step 4 rounds the
// updated block to bf16 (nearest even, as AdamW's master store) and all-gathers the bf16
// blocks. Masters and moments take 3N / ranks floats per rank instead of 3N. The result equals
// DataParallel::all_reduce_gradients + clip_grad_norm + AdamW up to float rounding; a
// parameter without a gradient on every rank is left alone (value and moments), as AdamW
// leaves it.
#pragma once
#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "runtime/dist/data_parallel.h"
#include "runtime/optim.h"

namespace visplay::dist {

class ZeroAdamW {
 public:
  // `params`: every rank the same list (same shapes, one device), contiguous f32, or bf16 when
  // options.master_weights. Moments start at zero.
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
  // Bytes of optimizer state this rank holds: the moments and, with master weights, the f32
  // master block.
  int64_t state_bytes() const;
  // This rank's f32 block of the flat parameters (the masters under master weights).
  const Tensor& block() const { return block_; }
  // Elements per collective (every rank's piece together) in the bucketed reduce-scatter and
  // all-gather; the results do not depend on it. Default 2^25 (128 MB of f32).
  void set_bucket_elements(int64_t elements) { bucket_elements_ = std::max<int64_t>(1, elements); }

 private:
  void load_block();
  template <class F>
  void for_each_part(int64_t lo, int64_t hi, F&& f) const;
  int64_t bucket_length() const;  // each rank's piece of a bucket

  std::vector<Tensor> params_;
  std::vector<int64_t> offset_;  // each parameter's first element in the flat vector
  std::shared_ptr<DataParallel> dp_;
  Device device_;
  int64_t total_ = 0, shard_ = 0, begin_ = 0;  // begin_: this rank's first flat element
  Tensor block_;  // this rank's block of the flat parameters [shard_], its .grad the summed block
  std::unique_ptr<AdamW> optimizer_;
  std::vector<int32_t> has_grad_;  // per parameter, over every rank
  double norm_ = 0;
  bool reduced_ = false;
  bool masters_ = false;      // bf16 parameters: block_ persists as the f32 master shard
  bool gather_bf16_ = false;  // every parameter bf16: the updated blocks travel as bf16
  int64_t bucket_elements_ = int64_t{1} << 25;
};

}  // namespace visplay::dist
