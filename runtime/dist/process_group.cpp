#include "runtime/dist/process_group.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "runtime/ops.h"

#ifdef VISPLAY_HAVE_MPI
#include <mpi.h>
#endif

namespace visplay::dist {

ReduceOp reduce_op_from_name(const std::string& name) {
  if (name == "sum") return ReduceOp::sum;
  if (name == "avg") return ReduceOp::avg;
  if (name == "max") return ReduceOp::max;
  if (name == "min") return ReduceOp::min;
  throw std::invalid_argument("unknown reduce op '" + name + "' (sum, avg, max, min)");
}

namespace {

class SingleProcessGroup final : public ProcessGroup {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  std::string backend() const override { return "single"; }
  void all_reduce(const Tensor&, ReduceOp) override {}
  void broadcast(const Tensor&, int root) override {
    if (root != 0) throw std::invalid_argument("broadcast: root " + std::to_string(root) + " in a group of 1");
  }
  Tensor all_gather(const Tensor& t) override { return t.detach().clone().unsqueeze(0); }
  Tensor reduce_scatter(const Tensor& t, ReduceOp) override { return t.detach().clone(); }
  void barrier() override {}
};

#ifdef VISPLAY_HAVE_MPI

void check_mpi(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string("MPI ") + what + " failed: " + std::string(msg, len));
  }
}

MPI_Datatype mpi_type(DType t) {
  switch (t) {
    case DType::f32: return MPI_FLOAT;
    case DType::f64: return MPI_DOUBLE;
    case DType::i32: return MPI_INT32_T;
    case DType::i64: return MPI_INT64_T;
    case DType::bf16: return MPI_UINT16_T;  // only for broadcast / gather
  }
  return MPI_BYTE;
}

MPI_Op mpi_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::avg: return MPI_SUM;
    case ReduceOp::max: return MPI_MAX;
    case ReduceOp::min: return MPI_MIN;
  }
  return MPI_SUM;
}

void require_host_contiguous(const char* op, const Tensor& t) {
  if (!t.device().is_host()) op_error(op, "the MPI backend takes host tensors, got " + t.str());
  if (!t.is_contiguous()) op_error(op, "needs a contiguous tensor, got " + t.str());
}

class MpiProcessGroup final : public ProcessGroup {
 public:
  MpiProcessGroup() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      check_mpi(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "init");
      std::atexit([] {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
      });
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string backend() const override { return "mpi"; }

  void all_reduce(const Tensor& t, ReduceOp op) override {
    require_host_contiguous("all_reduce", t);
    if (t.dtype() == DType::bf16) op_error("all_reduce", "bf16 reductions are not supported on MPI: " + t.str());
    check_mpi(MPI_Allreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()),
                            mpi_op(op), MPI_COMM_WORLD),
              "all_reduce");
    if (op == ReduceOp::avg) divide(t);
  }

  void broadcast(const Tensor& t, int root) override {
    require_host_contiguous("broadcast", t);
    check_mpi(MPI_Bcast(t.raw_data(), static_cast<int>(t.numel()), mpi_type(t.dtype()), root, MPI_COMM_WORLD),
              "broadcast");
  }

  Tensor all_gather(const Tensor& t) override {
    Tensor src = t.detach().contiguous();
    require_host_contiguous("all_gather", src);
    Shape shape = src.shape();
    shape.insert(shape.begin(), size_);
    Tensor out = Tensor::empty(shape, src.dtype(), src.device());
    check_mpi(MPI_Allgather(src.raw_data(), static_cast<int>(src.numel()), mpi_type(src.dtype()), out.raw_data(),
                            static_cast<int>(src.numel()), mpi_type(src.dtype()), MPI_COMM_WORLD),
              "all_gather");
    return out;
  }

  Tensor reduce_scatter(const Tensor& t, ReduceOp op) override {
    Tensor src = t.detach().contiguous();
    require_host_contiguous("reduce_scatter", src);
    if (src.dim() == 0 || src.size(0) % size_ != 0)
      op_error("reduce_scatter", "dim 0 of " + shape_str(src.shape()) + " must divide by the group size " +
                                     std::to_string(size_));
    Shape shape = src.shape();
    shape[0] /= size_;
    Tensor out = Tensor::empty(shape, src.dtype(), src.device());
    check_mpi(MPI_Reduce_scatter_block(src.raw_data(), out.raw_data(), static_cast<int>(out.numel()),
                                       mpi_type(src.dtype()), mpi_op(op), MPI_COMM_WORLD),
              "reduce_scatter");
    if (op == ReduceOp::avg) divide(out);
    return out;
  }

  void barrier() override { check_mpi(MPI_Barrier(MPI_COMM_WORLD), "barrier"); }

  void all_reduce_async(const Tensor& t, ReduceOp op) override {
    require_host_contiguous("all_reduce_async", t);
    if (t.dtype() == DType::bf16)
      op_error("all_reduce_async", "bf16 reductions are not supported on MPI: " + t.str());
    MPI_Request request;
    check_mpi(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), static_cast<int>(t.numel()),
                             mpi_type(t.dtype()), mpi_op(op), MPI_COMM_WORLD, &request),
              "all_reduce_async");
    pending_.push_back({request, t, op});
  }

  void wait() override {
    std::vector<Pending> pending = std::move(pending_);
    pending_.clear();
    for (Pending& p : pending) {
      check_mpi(MPI_Wait(&p.request, MPI_STATUS_IGNORE), "wait");
      if (p.op == ReduceOp::avg) divide(p.tensor);
    }
  }

 private:
  struct Pending {
    MPI_Request request;
    Tensor tensor;
    ReduceOp op;
  };
  std::vector<Pending> pending_;

  void divide(const Tensor& t) const {
    NoGradGuard no_grad;
    t.copy_(scale(t.detach(), 1.0 / size_));
  }
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

#endif  // VISPLAY_HAVE_MPI

bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

// The job size mpirun announces (1 when unknown).
int launched_job_size() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const char* s = std::getenv(v)) return std::atoi(s);
  return 1;
}

}  // namespace

std::shared_ptr<ProcessGroup> single_process_group() { return std::make_shared<SingleProcessGroup>(); }

bool mpi_available() {
#ifdef VISPLAY_HAVE_MPI
  return true;
#else
  return false;
#endif
}

std::shared_ptr<ProcessGroup> world_group() {
  static std::once_flag once;
  static std::shared_ptr<ProcessGroup> group;
  std::call_once(once, [] {
#ifdef VISPLAY_HAVE_MPI
    if (launched_by_mpi()) {
      group = std::make_shared<MpiProcessGroup>();
      return;
    }
#endif
    // A build without MPI under mpirun: N copies of a single-process run would all write the
    // same files, so refuse.
    if (!mpi_available() && launched_by_mpi() && launched_job_size() > 1)
      throw std::runtime_error("launched by mpirun with " + std::to_string(launched_job_size()) +
                               " ranks, but this build has no MPI (configure with "
                               "-DVISPLAY_MPI=ON and libopenmpi-dev)");
    group = single_process_group();
  });
  return group;
}

}  // namespace visplay::dist
