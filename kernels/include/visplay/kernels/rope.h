// Rotary position embedding, rotate-half convention (Qwen2/LLaMA), forward and backward.
// Declared for both builds of kernels/cuda/rope.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_ROPE_H_
#define VISPLAY_KERNELS_ROPE_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/rope.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/rope.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

// x[tokens, heads, head_dim] in place or out of place; positions[tokens]. For i < half:
//   angle = position * theta^(-2i / head_dim)          (computed in f32, as HF does)
//   y[i] = x[i] cos - x[i + half] sin,  y[i + half] = x[i + half] cos + x[i] sin.
// backward = true applies the transpose (the inverse rotation) to a gradient.
void rope(const float* x, const int* positions, int tokens, int heads, int head_dim, float theta,
          bool backward, float* y, void* stream);

#endif
