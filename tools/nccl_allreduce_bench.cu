// NCCL all-reduce bandwidth on every visible GPU of one machine (one process, one
// communicator per GPU via ncclCommInitAll), for tools/gpu_check.sh. Prints one line per
// size and a summary line:
//   nccl all-reduce: <n> GPUs, <bytes> B f32, <ms> ms, algbw <x> GB/s, busbw <y> GB/s
// Bus bandwidth is the ring's per-link traffic: algbw * 2 (n - 1) / n (the convention of
// nccl-tests), so it is comparable across GPU counts.
// Build: nvcc -O2 -std=c++17 tools/nccl_allreduce_bench.cu -lnccl -o nccl_allreduce_bench
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK_CUDA(x)                                                                 \
  do {                                                                                \
    cudaError_t e = (x);                                                              \
    if (e != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)
#define CHECK_NCCL(x)                                                                 \
  do {                                                                                \
    ncclResult_t r = (x);                                                             \
    if (r != ncclSuccess) {                                                           \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, ncclGetErrorString(r)); \
      std::exit(1);                                                                   \
    }                                                                                 \
  } while (0)

int main() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;  // no driver or no GPU
  if (n < 2) {
    std::printf("nccl all-reduce: skipped (%d GPU)\n", n);
    return 0;
  }
  std::vector<ncclComm_t> comms(n);
  std::vector<int> devices(n);
  for (int i = 0; i < n; ++i) devices[i] = i;
  CHECK_NCCL(ncclCommInitAll(comms.data(), n, devices.data()));
  std::vector<float*> buf(n);
  std::vector<cudaStream_t> streams(n);
  const size_t largest = size_t(256) << 20;  // bytes
  for (int i = 0; i < n; ++i) {
    CHECK_CUDA(cudaSetDevice(i));
    CHECK_CUDA(cudaMalloc(&buf[i], largest));
    CHECK_CUDA(cudaMemset(buf[i], 0, largest));
    CHECK_CUDA(cudaStreamCreate(&streams[i]));
  }
  auto all_reduce = [&](size_t count) {
    CHECK_NCCL(ncclGroupStart());
    for (int i = 0; i < n; ++i)
      CHECK_NCCL(ncclAllReduce(buf[i], buf[i], count, ncclFloat32, ncclSum, comms[i], streams[i]));
    CHECK_NCCL(ncclGroupEnd());
  };
  auto sync = [&] {
    for (int i = 0; i < n; ++i) {
      CHECK_CUDA(cudaSetDevice(i));
      CHECK_CUDA(cudaStreamSynchronize(streams[i]));
    }
  };
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaSetDevice(0));
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  double best_bus = 0;
  for (size_t bytes = size_t(1) << 20; bytes <= largest; bytes *= 4) {
    const size_t count = bytes / sizeof(float);
    for (int w = 0; w < 3; ++w) all_reduce(count);  // warm-up
    sync();
    const int iters = 20;
    CHECK_CUDA(cudaSetDevice(0));
    CHECK_CUDA(cudaEventRecord(start, streams[0]));
    for (int it = 0; it < iters; ++it) all_reduce(count);
    CHECK_CUDA(cudaSetDevice(0));
    CHECK_CUDA(cudaEventRecord(stop, streams[0]));
    sync();
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    const double seconds = ms / 1e3 / iters;
    const double algbw = bytes / seconds / 1e9;
    const double busbw = algbw * 2.0 * (n - 1) / n;
    if (busbw > best_bus) best_bus = busbw;
    std::printf("nccl all-reduce: %d GPUs, %zu B f32, %.3f ms, algbw %.1f GB/s, busbw %.1f GB/s\n",
                n, bytes, seconds * 1e3, algbw, busbw);
  }
  std::printf("nccl all-reduce bus bandwidth (best): %.1f GB/s over %d GPUs\n", best_bus, n);
  for (int i = 0; i < n; ++i) {
    CHECK_CUDA(cudaSetDevice(i));
    CHECK_CUDA(cudaFree(buf[i]));
    ncclCommDestroy(comms[i]);
  }
  return 0;
}
