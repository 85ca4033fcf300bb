// SwiGLU: y = silu(gate) * up, elementwise, forward and backward.
// Declared for both builds of kernels/cuda/swiglu.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_SWIGLU_H_
#define VISPLAY_KERNELS_SWIGLU_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/swiglu.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/swiglu.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

void swiglu_forward(const float* gate, const float* up, long n, float* y, void* stream);
// dgate = dy * up * silu'(gate), dup = dy * silu(gate).
void swiglu_backward(const float* gate, const float* up, const float* dy, long n, float* dgate,
                     float* dup, void* stream);

#endif
