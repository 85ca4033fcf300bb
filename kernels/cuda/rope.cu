// Rotate-half RoPE: one thread per (token, head, pair). The backward is the same
// rotation by the negative angle (sin_sign = -1), which is its transpose.
#include <stdexcept>
#include <string>

#include "kernels/cuda/rope.cuh"
#include "visplay/kernels/rope.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void rope_kernel(const float* x, const int* positions, int tokens, int heads,
                            int head_dim, float theta, float sin_sign, float* y) {
  int half = head_dim / 2;
  long total = static_cast<long>(tokens) * heads * half;
  for (long k = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; k < total;
       k += static_cast<long>(gridDim.x) * blockDim.x) {
    int i = static_cast<int>(k % half);
    long token_head = k / half;
    long token = token_head / heads;
    float inv_freq = powf(theta, -2.0f * i / head_dim);
    float angle = static_cast<float>(positions[token]) * inv_freq;
    float c = cosf(angle), s = sin_sign * sinf(angle);
    const float* xr = x + token_head * head_dim;
    float x1 = xr[i], x2 = xr[i + half];
    float* yr = y + token_head * head_dim;
    yr[i] = x1 * c - x2 * s;  // read both before writing: y may alias x
    yr[i + half] = x2 * c + x1 * s;
  }
}

void rope(const float* x, const int* positions, int tokens, int heads, int head_dim, float theta,
          bool backward, float* y, void* stream) {
  if (tokens < 0 || heads <= 0 || head_dim <= 0 || head_dim % 2 != 0)
    throw std::invalid_argument(
        "rope: bad shape tokens=" + std::to_string(tokens) + " heads=" + std::to_string(heads) +
        " head_dim=" + std::to_string(head_dim) + " (head_dim must be even)");
  long total = static_cast<long>(tokens) * heads * (head_dim / 2);
  if (total == 0) return;
  int blocks = static_cast<int>(total / 256 + 1 < 2048 ? total / 256 + 1 : 2048);
  SIMT_LAUNCH(rope_kernel, blocks, 256, 0, stream)
  (x, positions, tokens, heads, head_dim, theta, backward ? -1.0f : 1.0f, y);
  simt::check_launch("rope");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
