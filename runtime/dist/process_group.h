// Collectives for data-parallel training over existing engines: MPI for CPU
// tensors and process launch, NCCL for GPU tensors. Never a home-made
// transport. Without MPI (or when not launched by mpirun) a single-process
// group makes every collective a no-op, so the binary runs unchanged.
#pragma once
#include <memory>
#include <string>

#include "runtime/tensor.h"

namespace visplay::dist {

enum class ReduceOp { sum, avg, max, min };

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;  // rank among the processes on this node (GPU choice)
  virtual std::string backend() const = 0;

  // In place on a contiguous tensor.
  virtual void all_reduce(const Tensor& t, ReduceOp op = ReduceOp::sum) = 0;
  virtual void broadcast(const Tensor& t, int root) = 0;
  // Returns [size, ...t.shape]: every rank's tensor stacked in rank order.
  virtual Tensor all_gather(const Tensor& t) = 0;
  // t [size * n, ...] -> this rank's reduced block [n, ...].
  virtual Tensor reduce_scatter(const Tensor& t, ReduceOp op = ReduceOp::sum) = 0;
  virtual void barrier() = 0;

  // Starts an in-place all-reduce that completes at the next wait(): the tensor must stay
  // alive and unread until then. Lets a caller queue several buckets at once (MPI:
  // non-blocking requests; NCCL: the group's own stream). Default: blocking.
  virtual void all_reduce_async(const Tensor& t, ReduceOp op = ReduceOp::sum) { all_reduce(t, op); }
  virtual void wait() {}

  bool is_main() const { return rank() == 0; }
};

// A group of one process.
std::shared_ptr<ProcessGroup> single_process_group();

// The CPU group of this job: MPI when the binary was built with MPI and
// launched by mpirun/mpiexec (MPI is initialised on first call and finalised
// at exit), otherwise the single-process group.
std::shared_ptr<ProcessGroup> world_group();

// True when the build includes the MPI backend.
bool mpi_available();

ReduceOp reduce_op_from_name(const std::string& name);

}  // namespace visplay::dist
