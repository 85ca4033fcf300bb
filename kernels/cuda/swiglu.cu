// SwiGLU, elementwise with grid-stride loops.
#include <stdexcept>
#include <string>

#include "kernels/cuda/swiglu.cuh"
#include "visplay/kernels/swiglu.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void swiglu_forward_kernel(const float* gate, const float* up, long n, float* y) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    y[i] = gate[i] * sigmoidf(gate[i]) * up[i];
}

// silu'(g) = s (1 + g (1 - s)), s = sigmoid(g).
__global__ void swiglu_backward_kernel(const float* gate, const float* up, const float* dy, long n,
                                       float* dgate, float* dup) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    float g = gate[i], s = sigmoidf(g), u = up[i], d = dy[i];
    dgate[i] = d * u * s * (1.0f + g * (1.0f - s));
    dup[i] = d * g * s;
  }
}

static int elementwise_blocks(long n) {
  return static_cast<int>(n / 256 + 1 < 2048 ? n / 256 + 1 : 2048);
}

void swiglu_forward(const float* gate, const float* up, long n, float* y, void* stream) {
  if (n < 0) throw std::invalid_argument("swiglu_forward: n = " + std::to_string(n));
  if (n == 0) return;
  SIMT_LAUNCH(swiglu_forward_kernel, elementwise_blocks(n), 256, 0, stream)(gate, up, n, y);
  simt::check_launch("swiglu_forward");
}

void swiglu_backward(const float* gate, const float* up, const float* dy, long n, float* dgate,
                     float* dup, void* stream) {
  if (n < 0) throw std::invalid_argument("swiglu_backward: n = " + std::to_string(n));
  if (n == 0) return;
  SIMT_LAUNCH(swiglu_backward_kernel, elementwise_blocks(n), 256, 0, stream)
  (gate, up, dy, n, dgate, dup);
  simt::check_launch("swiglu_backward");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
