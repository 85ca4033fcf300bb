// Data-parallel training over a ProcessGroup: every rank holds the whole model, takes its
// share of a global batch, and the ranks agree on everything that decides what happens next
// (gradients, loss normalisers, skip decisions, metrics). The helpers here are what the
// training loops (rl/pretrain, rl/grpo_trainer, rl/evolve) call at those points:
//   - shard_range / update_shard_indices: which items of a global batch this rank owns;
//   - broadcast_parameters: rank 0's weights everywhere at start (ranks cannot drift);
//   - all_reduce_gradients: the sum of every rank's gradients, in flat buckets (host
//     tensors over MPI, cuda tensors over NCCL on its own stream);
//   - sum / max / min of scalars and all_gather_strings for metrics and gathered records.
// With a group of one process every call is a no-op (or the identity), so single-process
// runs take exactly the code path they took before data parallelism existed.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/dist/process_group.h"
#include "runtime/tensor.h"

namespace visplay::dist {

// Items [begin, end) of n that rank `rank` of `world` owns: contiguous, in rank order, sizes
// differing by at most one (the first n % world ranks take one more).
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Range shard_range(int64_t n, int rank, int world);

// The global indices of a batch of n items that this rank owns when the batch is consumed in
// consecutive blocks of `block` items (one optimizer update each): every block is split with
// shard_range, so every update spreads over all ranks. Ascending.
std::vector<int64_t> update_shard_indices(int64_t n, int64_t block, int rank, int world);

class DataParallel {
 public:
  // `group` null: a single-process group.
  explicit DataParallel(std::shared_ptr<ProcessGroup> group = nullptr,
                        int64_t bucket_bytes = 16 << 20);

  int rank() const { return cpu_->rank(); }
  int size() const { return cpu_->size(); }
  bool is_main() const { return cpu_->rank() == 0; }
  bool distributed() const { return cpu_->size() > 1; }
  ProcessGroup& cpu_group() const { return *cpu_; }
  // The group for tensors on `device`: the CPU group for host tensors, an NCCL group over the
  // same ranks for cuda tensors (made on first use, a collective call).
  ProcessGroup& group_for(const Device& device);

  // Copies rank 0's values into every rank's tensors (in order; each on its own device).
  void broadcast_parameters(const std::vector<Tensor>& params);

  // Replaces every parameter's .grad by the sum over ranks. A parameter without a gradient
  // on some rank counts as zero there; one without a gradient on every rank stays without
  // (so the optimizer skips it exactly as a single process would). Gradients are packed into
  // f32 buckets of at most bucket_bytes per device and reduced bucket by bucket (MPI:
  // non-blocking all-reduces; NCCL: on the group's own stream).
  void all_reduce_gradients(const std::vector<Tensor>& params);

  // Element-wise sums / maxima / minima over ranks, in double.
  std::vector<double> sum(std::vector<double> values);
  double sum(double value) { return sum(std::vector<double>{value})[0]; }
  double max(double value);
  double min(double value);
  // Every rank's string, in rank order.
  std::vector<std::string> all_gather_strings(const std::string& mine);
  // Exclusive prefix sum of a per-rank count: the global index of this rank's first item
  // when the ranks' items are laid out in rank order. Also returns the total.
  int64_t offset_of(int64_t count, int64_t* total = nullptr);

  void barrier() { cpu_->barrier(); }

  // ZeRO-1 for the trainers that honour it (rl/pretrain, rl/grpo_trainer): AdamW moments
  // sharded over the ranks (runtime/dist/zero.h) instead of all-reduce + full AdamW.
  void set_zero1(bool on) { zero1_ = on; }
  bool zero1() const { return zero1_; }

 private:
  bool zero1_ = false;
  std::shared_ptr<ProcessGroup> cpu_, gpu_;
  int gpu_device_ = -1;
  int64_t bucket_bytes_;
};

// The process-wide data-parallel context of the CLI: world_group() (MPI under mpirun, else a
// single process).
std::shared_ptr<DataParallel> world_data_parallel();

// For a rank launched by mpirun on a machine with GPUs: selects GPU local_rank % count and
// returns it; -1 when the build or machine has no GPU.
int select_local_gpu(const ProcessGroup& group);

}  // namespace visplay::dist
