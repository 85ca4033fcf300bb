#include "runtime/dist/data_parallel.h"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "runtime/cuda_device.h"
#include "runtime/dist/nccl_group.h"
#include "runtime/ops.h"

namespace visplay::dist {

Range shard_range(int64_t n, int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world || n < 0) {
    throw std::invalid_argument("shard_range: rank " + std::to_string(rank) + " of " +
                                std::to_string(world) + ", n " + std::to_string(n));
  }
  const int64_t base = n / world, extra = n % world;
  Range r;
  r.begin = rank * base + std::min<int64_t>(rank, extra);
  r.end = r.begin + base + (rank < extra ? 1 : 0);
  return r;
}

std::vector<int64_t> update_shard_indices(int64_t n, int64_t block, int rank, int world) {
  if (block < 1)
    throw std::invalid_argument("update_shard_indices: block " + std::to_string(block));
  std::vector<int64_t> out;
  for (int64_t first = 0; first < n; first += block) {
    const int64_t len = std::min(block, n - first);
    const Range r = shard_range(len, rank, world);
    for (int64_t i = r.begin; i < r.end; ++i) out.push_back(first + i);
  }
  return out;
}

DataParallel::DataParallel(std::shared_ptr<ProcessGroup> group, int64_t bucket_bytes)
    : cpu_(group ? std::move(group) : single_process_group()), bucket_bytes_(bucket_bytes) {
  if (bucket_bytes_ < 4) throw std::invalid_argument("DataParallel: bucket_bytes < 4");
}

ProcessGroup& DataParallel::group_for(const Device& device) {
  if (device.is_host() || !distributed()) return *cpu_;
  if (!gpu_) {
    gpu_ = nccl_group(cpu_, device.index);
    gpu_device_ = device.index;
  } else if (device.index != gpu_device_) {
    throw std::runtime_error("DataParallel: tensors on " + device.str() +
                             " but this rank's NCCL group is on cuda:" +
                             std::to_string(gpu_device_) + " (one GPU per rank)");
  }
  return *gpu_;
}

void DataParallel::broadcast_parameters(const std::vector<Tensor>& params) {
  if (!distributed()) return;
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    if (p.is_contiguous()) {
      group_for(p.device()).broadcast(p, 0);
    } else {
      Tensor tmp = p.detach().contiguous();
      group_for(p.device()).broadcast(tmp, 0);
      p.copy_(tmp);
    }
  }
}

// Buckets hold consecutive parameters of one device until bucket_bytes is reached (a
// parameter larger than that gets a bucket of its own). Every rank builds the same buckets
// from the same parameter list, so the collectives line up.
void DataParallel::all_reduce_gradients(const std::vector<Tensor>& params) {
  if (!distributed()) return;
  NoGradGuard no_grad;
  // Which parameters have a gradient anywhere.
  std::vector<int32_t> has(params.size());
  for (size_t i = 0; i < params.size(); ++i) has[i] = params[i].grad().defined() ? 1 : 0;
  if (!params.empty()) {
    Tensor flags = Tensor::from_vector(has, {static_cast<int64_t>(has.size())});
    cpu_->all_reduce(flags, ReduceOp::max);
    has = flags.to_vector<int32_t>();
  }
  struct Bucket {
    Device device;
    std::vector<size_t> members;
    int64_t numel = 0;
    Tensor flat;
  };
  std::vector<Bucket> buckets;
  std::map<std::pair<int, int>, size_t> open;  // device -> index of its open bucket
  const int64_t bucket_numel = std::max<int64_t>(1, bucket_bytes_ / 4);
  for (size_t i = 0; i < params.size(); ++i) {
    if (!has[i]) continue;
    const Device d = params[i].device();
    const auto key = std::make_pair(static_cast<int>(d.type), d.index);
    auto it = open.find(key);
    if (it == open.end() || buckets[it->second].numel + params[i].numel() > bucket_numel) {
      buckets.push_back({d, {}, 0, Tensor()});
      open[key] = buckets.size() - 1;
    }
    Bucket& b = buckets[open[key]];
    b.members.push_back(i);
    b.numel += params[i].numel();
  }
  // Pack and queue every bucket, then wait once per group and unpack.
  std::vector<ProcessGroup*> used;
  for (Bucket& b : buckets) {
    b.flat = Tensor::zeros({b.numel}, DType::f32, b.device);
    int64_t at = 0;
    for (size_t i : b.members) {
      const int64_t n = params[i].numel();
      Tensor g = params[i].grad();
      if (g.defined()) b.flat.slice(0, at, at + n).copy_(g.reshape({n}));
      at += n;
    }
    ProcessGroup& group = group_for(b.device);
    group.all_reduce_async(b.flat, ReduceOp::sum);
    if (std::find(used.begin(), used.end(), &group) == used.end()) used.push_back(&group);
  }
  for (ProcessGroup* g : used) g->wait();
  for (Bucket& b : buckets) {
    int64_t at = 0;
    for (size_t i : b.members) {
      const Tensor& p = params[i];
      const int64_t n = p.numel();
      Tensor summed = b.flat.slice(0, at, at + n).reshape(p.shape());
      Tensor g = p.grad();
      if (g.defined() && g.is_contiguous() && g.dtype() == DType::f32) {
        g.copy_(summed);
      } else {
        p.set_grad(summed.to(leaf_grad_dtype(p.dtype())).contiguous().clone());
      }
      at += n;
    }
  }
}

std::vector<double> DataParallel::sum(std::vector<double> values) {
  if (!distributed() || values.empty()) return values;
  Tensor t = Tensor::from_vector(values, {static_cast<int64_t>(values.size())}, DType::f64);
  cpu_->all_reduce(t, ReduceOp::sum);
  return t.to_vector<double>();
}

double DataParallel::max(double value) {
  if (!distributed()) return value;
  Tensor t = Tensor::from_vector(std::vector<double>{value}, {1}, DType::f64);
  cpu_->all_reduce(t, ReduceOp::max);
  return t.to_vector<double>()[0];
}

double DataParallel::min(double value) {
  if (!distributed()) return value;
  Tensor t = Tensor::from_vector(std::vector<double>{value}, {1}, DType::f64);
  cpu_->all_reduce(t, ReduceOp::min);
  return t.to_vector<double>()[0];
}

// Lengths first, then the bytes of every string padded to the longest (as i32, the byte
// type every backend moves).
std::vector<std::string> DataParallel::all_gather_strings(const std::string& mine) {
  if (!distributed()) return {mine};
  const int W = size();
  Tensor len = Tensor::from_vector(std::vector<int64_t>{static_cast<int64_t>(mine.size())}, {1});
  std::vector<int64_t> lengths = cpu_->all_gather(len).to_vector<int64_t>();
  const int64_t longest = std::max<int64_t>(1, *std::max_element(lengths.begin(), lengths.end()));
  std::vector<int32_t> bytes(static_cast<size_t>(longest), 0);
  for (size_t i = 0; i < mine.size(); ++i) bytes[i] = static_cast<unsigned char>(mine[i]);
  std::vector<int32_t> all =
      cpu_->all_gather(Tensor::from_vector(bytes, {longest})).to_vector<int32_t>();
  std::vector<std::string> out(static_cast<size_t>(W));
  for (int r = 0; r < W; ++r) {
    out[r].resize(static_cast<size_t>(lengths[r]));
    for (int64_t i = 0; i < lengths[r]; ++i) out[r][i] = static_cast<char>(all[r * longest + i]);
  }
  return out;
}

int64_t DataParallel::offset_of(int64_t count, int64_t* total) {
  if (!distributed()) {
    if (total) *total = count;
    return 0;
  }
  std::vector<int64_t> counts =
      cpu_->all_gather(Tensor::from_vector(std::vector<int64_t>{count}, {1})).to_vector<int64_t>();
  int64_t offset = 0, all = 0;
  for (int r = 0; r < size(); ++r) {
    if (r < rank()) offset += counts[r];
    all += counts[r];
  }
  if (total) *total = all;
  return offset;
}

std::shared_ptr<DataParallel> world_data_parallel() {
  static std::shared_ptr<DataParallel> dp = std::make_shared<DataParallel>(world_group());
  return dp;
}

int select_local_gpu(const ProcessGroup& group) {
  const int count = cuda_device_count();
  if (count <= 0) return -1;
  const int device = group.local_rank() % count;
  cuda_set_device(device);
  return device;
}

}  // namespace visplay::dist
