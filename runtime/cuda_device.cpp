#include "runtime/cuda_device.h"

#include <mutex>
#include <stdexcept>
#include <string>

#include "runtime/allocator.h"

#ifdef VISPLAY_HAVE_CUDA
#include <cuda_runtime.h>
#endif

namespace visplay {

#ifdef VISPLAY_HAVE_CUDA
namespace {
void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}
void* cuda_alloc(size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, bytes), "cudaMalloc");
  return p;
}
void cuda_free(void* p) { cudaFree(p); }
void to_host(void* dst, const void* src, size_t n) { check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "cudaMemcpy D2H"); }
void from_host(void* dst, const void* src, size_t n) { check(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "cudaMemcpy H2D"); }
void on_device(void* dst, const void* src, size_t n) { check(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), "cudaMemcpy D2D"); }
}  // namespace

int cuda_device_count() {
  static std::once_flag once;
  static int count = 0;
  std::call_once(once, [] {
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      count = 0;
    }
    if (count > 0) register_device_memory(DeviceType::cuda, {cuda_alloc, cuda_free, to_host, from_host, on_device});
  });
  return count;
}

void cuda_set_device(int index) {
  int n = cuda_device_count();
  if (index < 0 || index >= n)
    throw std::invalid_argument("cuda device " + std::to_string(index) + " does not exist (" + std::to_string(n) +
                                " visible)");
  check(cudaSetDevice(index), "cudaSetDevice");
}

void cuda_synchronize() {
  if (cuda_device_count() > 0) check(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

#else

int cuda_device_count() { return 0; }
void cuda_set_device(int index) {
  throw std::invalid_argument("cuda device " + std::to_string(index) + " requested, but this build has no CUDA backend");
}
void cuda_synchronize() {}

#endif

}  // namespace visplay
