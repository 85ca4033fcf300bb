// Fused multi-tensor AdamW: one launch updates many parameter tensors.
// Declared for both builds of kernels/cuda/adamw.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_ADAMW_H_
#define VISPLAY_KERNELS_ADAMW_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/adamw.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/adamw.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

struct AdamWTensor {
  float* param;
  const float* grad;
  float* m;  // first moment
  float* v;  // second moment
  long size;
};

struct AdamWOptions {
  float lr = 1e-5f, beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f, weight_decay = 0.01f;
  int step = 1;             // 1-based, for bias correction
  float grad_scale = 1.0f;  // multiplies every gradient (gradient clipping)
};

// For each tensor: g = grad * grad_scale; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// param -= lr * (m / (1 - b1^step) / (sqrt(v / (1 - b2^step)) + eps) + weight_decay * param).
// `tensors` is a host array; the pointers inside it are device (or, on sim, host) memory.
void adamw_multi(const AdamWTensor* tensors, int num_tensors, const AdamWOptions& options,
                 void* stream);

#endif
