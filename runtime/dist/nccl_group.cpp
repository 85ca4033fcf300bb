#include "runtime/dist/nccl_group.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/cuda_device.h"
#include "runtime/ops.h"

#if defined(VISPLAY_HAVE_NCCL) && defined(VISPLAY_HAVE_CUDA)
#include <cuda_runtime.h>
#include <nccl.h>
#endif

namespace visplay::dist {

#if defined(VISPLAY_HAVE_NCCL) && defined(VISPLAY_HAVE_CUDA)

namespace {

void check_nccl(ncclResult_t rc, const char* what) {
  if (rc != ncclSuccess) throw std::runtime_error(std::string("NCCL ") + what + " failed: " + ncclGetErrorString(rc));
}

void check_cuda(cudaError_t rc, const char* what) {
  if (rc != cudaSuccess)
    throw std::runtime_error(std::string("CUDA ") + what + " failed: " + cudaGetErrorString(rc));
}

ncclDataType_t nccl_type(DType t) {
  switch (t) {
    case DType::f32: return ncclFloat32;
    case DType::f64: return ncclFloat64;
    case DType::bf16: return ncclBfloat16;
    case DType::i32: return ncclInt32;
    case DType::i64: return ncclInt64;
  }
  return ncclFloat32;
}

ncclRedOp_t nccl_op(ReduceOp op) {
  switch (op) {
    case ReduceOp::sum: return ncclSum;
    case ReduceOp::avg: return ncclAvg;
    case ReduceOp::max: return ncclMax;
    case ReduceOp::min: return ncclMin;
  }
  return ncclSum;
}

void require_cuda_contiguous(const char* op, const Tensor& t) {
  if (t.device().type != DeviceType::cuda) op_error(op, "the NCCL backend takes cuda tensors, got " + t.str());
  if (!t.is_contiguous()) op_error(op, "needs a contiguous tensor, got " + t.str());
}

class NcclProcessGroup final : public ProcessGroup {
 public:
  NcclProcessGroup(const std::shared_ptr<ProcessGroup>& bootstrap, int device)
      : bootstrap_(bootstrap), device_(device) {
    cuda_set_device(device);
    ncclUniqueId id;
    if (bootstrap->rank() == 0) check_nccl(ncclGetUniqueId(&id), "get unique id");
    // The id travels over the CPU group as bytes.
    std::vector<int32_t> raw(sizeof(id), 0);
    if (bootstrap->rank() == 0)
      for (size_t i = 0; i < sizeof(id); ++i) raw[i] = static_cast<unsigned char>(id.internal[i]);
    Tensor bytes = Tensor::from_vector(raw, {static_cast<int64_t>(sizeof(id))}, DType::i32);
    bootstrap->broadcast(bytes, 0);
    std::vector<int32_t> got = bytes.to_vector<int32_t>();
    for (size_t i = 0; i < sizeof(id); ++i) id.internal[i] = static_cast<char>(got[i]);
    check_nccl(ncclCommInitRank(&comm_, bootstrap->size(), id, bootstrap->rank()), "comm init");
    // Collectives run on a stream of their own that waits for the compute (default) stream
    // at each call, so queued gradient buckets reduce while later buckets are still packed.
    check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream create");
    check_cuda(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming), "event create");
  }
  ~NcclProcessGroup() override {
    ncclCommDestroy(comm_);
    cudaEventDestroy(ready_);
    cudaStreamDestroy(stream_);
  }

  int rank() const override { return bootstrap_->rank(); }
  int size() const override { return bootstrap_->size(); }
  int local_rank() const override { return bootstrap_->local_rank(); }
  std::string backend() const override { return "nccl"; }

  void all_reduce(const Tensor& t, ReduceOp op) override {
    require_cuda_contiguous("all_reduce", t);
    after_compute();
    check_nccl(ncclAllReduce(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()),
                             nccl_op(op), comm_, stream_),
               "all_reduce");
    sync();
  }
  void broadcast(const Tensor& t, int root) override {
    require_cuda_contiguous("broadcast", t);
    after_compute();
    check_nccl(ncclBroadcast(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()), root,
                             comm_, stream_),
               "broadcast");
    sync();
  }
  Tensor all_gather(const Tensor& t) override {
    Tensor src = t.detach().contiguous();
    require_cuda_contiguous("all_gather", src);
    after_compute();
    Shape shape = src.shape();
    shape.insert(shape.begin(), size());
    Tensor out = Tensor::empty(shape, src.dtype(), src.device());
    check_nccl(ncclAllGather(src.raw_data(), out.raw_data(), src.numel(), nccl_type(src.dtype()),
                             comm_, stream_),
               "all_gather");
    sync();
    return out;
  }
  Tensor reduce_scatter(const Tensor& t, ReduceOp op) override {
    Tensor src = t.detach().contiguous();
    require_cuda_contiguous("reduce_scatter", src);
    after_compute();
    if (src.dim() == 0 || src.size(0) % size() != 0)
      op_error("reduce_scatter", "dim 0 of " + shape_str(src.shape()) + " must divide by the group size " +
                                     std::to_string(size()));
    Shape shape = src.shape();
    shape[0] /= size();
    Tensor out = Tensor::empty(shape, src.dtype(), src.device());
    check_nccl(ncclReduceScatter(src.raw_data(), out.raw_data(), out.numel(),
                                 nccl_type(src.dtype()), nccl_op(op), comm_, stream_),
               "reduce_scatter");
    sync();
    return out;
  }
  void barrier() override { bootstrap_->barrier(); }

  void all_reduce_async(const Tensor& t, ReduceOp op) override {
    require_cuda_contiguous("all_reduce_async", t);
    after_compute();
    check_nccl(ncclAllReduce(t.raw_data(), t.raw_data(), t.numel(), nccl_type(t.dtype()),
                             nccl_op(op), comm_, stream_),
               "all_reduce_async");
  }
  void wait() override { sync(); }

 private:
  // The collective stream waits for everything queued so far on the compute stream.
  void after_compute() {
    check_cuda(cudaEventRecord(ready_, cudaStreamLegacy), "event record");
    check_cuda(cudaStreamWaitEvent(stream_, ready_, 0), "stream wait");
  }
  void sync() { check_cuda(cudaStreamSynchronize(stream_), "stream synchronize"); }
  cudaStream_t stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
  std::shared_ptr<ProcessGroup> bootstrap_;
  int device_;
  ncclComm_t comm_ = nullptr;
};

}  // namespace

bool nccl_available() { return true; }

std::shared_ptr<ProcessGroup> nccl_group(const std::shared_ptr<ProcessGroup>& bootstrap, int device) {
  if (cuda_device_count() == 0) throw std::runtime_error("nccl_group: no GPU visible");
  if (bootstrap->size() > 1 && bootstrap->backend() != "mpi")
    throw std::runtime_error("nccl_group: a multi-rank NCCL group needs the MPI group to exchange its id");
  return std::make_shared<NcclProcessGroup>(bootstrap, device);
}

#else

bool nccl_available() { return false; }

std::shared_ptr<ProcessGroup> nccl_group(const std::shared_ptr<ProcessGroup>&, int) {
  throw std::runtime_error("nccl_group: this build has no NCCL (needs the CUDA backend and libnccl)");
}

#endif

}  // namespace visplay::dist
