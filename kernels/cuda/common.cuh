// Helpers shared by every kernel family: the backend namespace, warp and block
// reductions, ceil_div. Written once for both builds (nvcc and the simt emulator).
#pragma once

#include "kernels/simt/simt.h"

// The launchers of one build live in visplay::kernels::cuda (nvcc) or
// visplay::kernels::sim (host emulator); the build defines the name, this is the default.
#ifndef VISPLAY_KERNELS_NS
#ifdef __CUDACC__
#define VISPLAY_KERNELS_NS cuda
#else
#define VISPLAY_KERNELS_NS sim
#endif
#endif

namespace visplay::kernels::VISPLAY_KERNELS_NS {

constexpr unsigned kFullMask = 0xffffffffu;

__host__ __device__ inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, offset));
  return v;
}

// Sum over a 1-D block whose size is a multiple of 32 (at most 1024); every thread gets
// the total. `scratch` holds 32 floats of shared memory; the leading barrier lets one
// call follow another with the same scratch.
__device__ inline float block_sum(float v, float* scratch) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : 0.0f;
  return warp_sum(v);
}

__device__ inline float block_max(float v, float* scratch) {
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : -INFINITY;
  return warp_max(v);
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
