// simt.h: the only file that differs between the two builds of kernels/cuda/*.cu.
//
// Under nvcc (__CUDACC__) it includes the CUDA headers and defines the few portable
// wrappers the kernels use (launch macro, dynamic shared memory, the mma.sync wrapper,
// launch error check). With a host compiler it emulates the CUDA execution model:
// every CUDA thread is a fiber (ucontext), the fibers of a block run on one OS thread
// and switch at barriers and warp collectives, blocks run in parallel (OpenMP) in a
// seeded order, and fibers parked at a barrier are released in a seeded shuffled order
// so that a missing __syncthreads() shows up as a wrong result. See docs/simt.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#ifdef __CUDACC__
// ===================================================================================
// nvcc: the real thing.
// ===================================================================================
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#define SIMT_LAUNCH(kernel, grid, block, smem, stream) \
  kernel<<<(grid), (block), (smem), static_cast<cudaStream_t>(stream)>>>

// One raw extern array per translation unit, reinterpreted per kernel, so kernels of
// one file may use different element types for their dynamic shared memory.
#define SIMT_DYNAMIC_SHARED(type, name)                               \
  extern __shared__ __align__(16) unsigned char simt_dynamic_smem_[]; \
  type* name = reinterpret_cast<type*>(simt_dynamic_smem_)

namespace simt {
// Throws with the kernel's name when the last launch failed (bad config, no device).
inline void check_launch(const char* what) {
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) +
                             ": CUDA launch failed: " + cudaGetErrorString(err));
}
}  // namespace simt

// D = A * B + C for one 16x16 (row) by 16x8 (col) bf16 tile, f32 accumulate, one warp.
// Fragment layouts: PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type".
__device__ __forceinline__ void mma_m16n8k16_bf16(float d[4], const uint32_t a[4],
                                                  const uint32_t b[2], const float c[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]),
        "f"(c[2]), "f"(c[3]));
}

// Float atomic max through a CAS loop (CUDA has no float atomicMax).
__device__ __forceinline__ float simt_atomic_max_float(float* address, float value) {
  int* word = reinterpret_cast<int*>(address);
  int old = *word;
  while (__int_as_float(old) < value) {
    int assumed = old;
    old = atomicCAS(word, assumed, __float_as_int(value));
    if (old == assumed) break;
  }
  return __int_as_float(old);
}

#else
// ===================================================================================
// Host emulation.
// ===================================================================================
#include <atomic>
#include <cmath>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Every fiber of a block runs on one OS thread, so a thread_local static is shared by
// the block and private to it (blocks on other OS threads have their own copy).
#define __shared__ static thread_local

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct float2 {
  float x, y;
};
struct float4 {
  float x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

// The built-in variables: set by the scheduler before it resumes a fiber.
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
constexpr int warpSize = 32;

namespace simt {

// Emulator settings, process-wide. The seed fixes the block order and every release
// order at barriers; parallel runs blocks on OpenMP threads.
void set_seed(uint64_t seed);
uint64_t seed();
void set_parallel(bool parallel);

namespace detail {
// Kinds of warp collective; lanes that meet at one must agree on kind and mask.
enum class WarpOp : int { kSync, kShuffle, kVote, kMma };
void sync_block();
// Deposits this lane's words, parks until every lane of `mask` arrived, and returns a
// pointer to this lane's result words (valid until the lane's next collective).
const uint32_t* warp_collective(WarpOp op, uint32_t mask, const uint32_t* words, int num_words);
unsigned char* dynamic_shared();
int lane_id();
void run_grid(dim3 grid, dim3 block, size_t dynamic_smem, void (*body)(const void*),
              const void* ctx, const char* name);
}  // namespace detail

inline void check_launch(const char*) {}

// SIMT_LAUNCH(k, grid, block, smem, stream)(args...) on the host: converts the
// arguments to the kernel's parameter types and runs the grid (synchronously).
template <class... Params>
struct Launch {
  void (*kernel)(Params...);
  dim3 grid, block;
  size_t smem;
  const char* name;
  template <class... Args>
  void operator()(Args&&... args) const {
    static_assert(sizeof...(Args) == sizeof...(Params), "kernel argument count mismatch");
    struct Ctx {
      void (*kernel)(Params...);
      std::tuple<Params...> params;
    } ctx{kernel, std::tuple<Params...>(std::forward<Args>(args)...)};
    auto body = [](const void* p) {
      const Ctx* c = static_cast<const Ctx*>(p);
      std::apply(c->kernel, c->params);
    };
    detail::run_grid(grid, block, smem, body, &ctx, name);
  }
};
inline dim3 to_dim3(dim3 d) { return d; }
inline dim3 to_dim3(unsigned x) { return dim3(x); }
inline dim3 to_dim3(int x) { return dim3(static_cast<unsigned>(x)); }
inline dim3 to_dim3(long x) { return dim3(static_cast<unsigned>(x)); }
inline dim3 to_dim3(unsigned long x) { return dim3(static_cast<unsigned>(x)); }
template <class... Params>
Launch<Params...> launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                         const char* name) {
  return Launch<Params...>{kernel, grid, block, smem, name};
}
}  // namespace simt

#define SIMT_LAUNCH(kernel, grid, block, smem, stream)                                   \
  ((void)(stream), ::simt::launch(kernel, ::simt::to_dim3(grid), ::simt::to_dim3(block), \
                                  static_cast<size_t>(smem), #kernel))

// A per-block buffer, filled with a NaN pattern (0x7fff7fff: NaN as f32 and as two
// bf16) at block start, so reading before writing shows in the results.
#define SIMT_DYNAMIC_SHARED(type, name) \
  type* name = reinterpret_cast<type*>(::simt::detail::dynamic_shared())

// ---- barriers --------------------------------------------------------------------
inline void __syncthreads() { simt::detail::sync_block(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  simt::detail::warp_collective(simt::detail::WarpOp::kSync, mask, nullptr, 0);
}
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---- warp shuffles -----------------------------------------------------------------
// A lane that reads a lane outside the segment gets its own value (as on the GPU); a
// lane that reads a lane which is not a thread of the block gets the NaN pattern.
namespace simt::detail {
template <class T>
T shuffle_from(unsigned mask, T value, int src_lane) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "shuffles move 32- or 64-bit values");
  uint32_t words[3] = {0, 0, static_cast<uint32_t>(src_lane)};
  std::memcpy(words, &value, sizeof(T));
  const uint32_t* out = warp_collective(WarpOp::kShuffle, mask, words, 3);
  T result;
  std::memcpy(&result, out, sizeof(T));
  return result;
}
}  // namespace simt::detail

template <class T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = warpSize) {
  int lane = simt::detail::lane_id();
  int base = lane & ~(width - 1);
  return simt::detail::shuffle_from(mask, value, base + (src_lane & (width - 1)));
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = warpSize) {
  int lane = simt::detail::lane_id();
  int base = lane & ~(width - 1);
  int src = lane ^ lane_mask;
  if (src < base || src >= base + width) src = lane;
  return simt::detail::shuffle_from(mask, value, src);
}
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
  int lane = simt::detail::lane_id();
  int base = lane & ~(width - 1);
  int src = lane + static_cast<int>(delta);
  if (src >= base + width) src = lane;
  return simt::detail::shuffle_from(mask, value, src);
}
template <class T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = warpSize) {
  int lane = simt::detail::lane_id();
  int base = lane & ~(width - 1);
  int src = lane - static_cast<int>(delta);
  if (src < base) src = lane;
  return simt::detail::shuffle_from(mask, value, src);
}

// ---- warp votes --------------------------------------------------------------------
inline unsigned __ballot_sync(unsigned mask, int predicate) {
  uint32_t word = predicate ? 1u : 0u;
  return simt::detail::warp_collective(simt::detail::WarpOp::kVote, mask, &word, 1)[0];
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) {
  uint32_t word = predicate ? 1u : 0u;
  const uint32_t* out = simt::detail::warp_collective(simt::detail::WarpOp::kVote, mask, &word, 1);
  return out[0] == out[1];
}

// ---- atomics (std::atomic_ref on the address) ----------------------------------------
template <class T>
T simt_atomic_add(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
inline int atomicAdd(int* a, int v) { return simt_atomic_add(a, v); }
inline unsigned atomicAdd(unsigned* a, unsigned v) { return simt_atomic_add(a, v); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  return simt_atomic_add(a, v);
}
inline int atomicCAS(int* a, int compare, int value) {
  std::atomic_ref<int>(*a).compare_exchange_strong(compare, value);
  return compare;
}
inline unsigned atomicCAS(unsigned* a, unsigned compare, unsigned value) {
  std::atomic_ref<unsigned>(*a).compare_exchange_strong(compare, value);
  return compare;
}
inline unsigned long long atomicCAS(unsigned long long* a, unsigned long long compare,
                                    unsigned long long value) {
  std::atomic_ref<unsigned long long>(*a).compare_exchange_strong(compare, value);
  return compare;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline unsigned __float_as_uint(float f) {
  unsigned i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
// Float add through a CAS loop, the way the GPU did it before native float atomics.
inline float atomicAdd(float* address, float value) {
  int* word = reinterpret_cast<int*>(address);
  int old = std::atomic_ref<int>(*word).load();
  while (true) {
    int assumed = old;
    old = atomicCAS(word, assumed, __float_as_int(__int_as_float(assumed) + value));
    if (old == assumed) return __int_as_float(old);
  }
}
inline double atomicAdd(double* a, double v) { return simt_atomic_add(a, v); }
inline int atomicMax(int* a, int v) {
  int old = std::atomic_ref<int>(*a).load();
  while (old < v && !std::atomic_ref<int>(*a).compare_exchange_weak(old, v)) {
  }
  return old;
}
inline unsigned atomicMax(unsigned* a, unsigned v) {
  unsigned old = std::atomic_ref<unsigned>(*a).load();
  while (old < v && !std::atomic_ref<unsigned>(*a).compare_exchange_weak(old, v)) {
  }
  return old;
}
inline float simt_atomic_max_float(float* address, float value) {
  int* word = reinterpret_cast<int*>(address);
  int old = std::atomic_ref<int>(*word).load();
  while (__int_as_float(old) < value) {
    int assumed = old;
    old = atomicCAS(word, assumed, __float_as_int(value));
    if (old == assumed) break;
  }
  return __int_as_float(old);
}

// ---- intrinsics ----------------------------------------------------------------------
// Host functions of the same name; the GPU's fast-math versions differ in the last bits.
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// ---- bf16 ------------------------------------------------------------------------------
struct __nv_bfloat16 {
  unsigned short __x;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
// Round to nearest even, NaN stays a (quiet) NaN: the device's __float2bfloat16.
inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<unsigned short>((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {static_cast<unsigned short>(u >> 16)};
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline float __bfloat162float(__nv_bfloat16 h) {
  return __uint_as_float(static_cast<uint32_t>(h.__x) << 16);
}
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return {u}; }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return {__float2bfloat16(lo), __float2bfloat16(hi)};
}
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 lo, __nv_bfloat16 hi) { return {lo, hi}; }
inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
inline float2 __bfloat1622float2(__nv_bfloat162 v) {
  return {__bfloat162float(v.x), __bfloat162float(v.y)};
}

// ---- tensor cores ----------------------------------------------------------------------
// The warp collective behind mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32: every lane
// deposits its A (4 regs), B (2 regs) and C (4 floats) fragments; the emulator rebuilds
// the tiles from the PTX ISA's layout and hands each lane its four D values.
inline void mma_m16n8k16_bf16(float d[4], const uint32_t a[4], const uint32_t b[2],
                              const float c[4]) {
  uint32_t words[10] = {a[0],
                        a[1],
                        a[2],
                        a[3],
                        b[0],
                        b[1],
                        __float_as_uint(c[0]),
                        __float_as_uint(c[1]),
                        __float_as_uint(c[2]),
                        __float_as_uint(c[3])};
  const uint32_t* out =
      simt::detail::warp_collective(simt::detail::WarpOp::kMma, 0xffffffffu, words, 10);
  for (int i = 0; i < 4; ++i) d[i] = __uint_as_float(out[i]);
}

#endif  // __CUDACC__
