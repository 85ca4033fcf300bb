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
  float* param;  // f32 parameter, or the f32 master copy of a bf16 parameter
  const float* grad;
  float* m;  // first moment
  float* v;  // second moment
  long size;
  // Mixed precision: when set, the updated `param` is also stored here rounded to bf16
  // (round-to-nearest-even, raw bits), the copy the model computes with.
  uint16_t* param_bf16 = nullptr;
};

// Hyper-parameters in double, as the cpu kernel takes them, so both fold the same constants.
struct AdamWOptions {
  double lr = 1e-5, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.01;
  int step = 1;             // 1-based, for bias correction
  float grad_scale = 1.0f;  // multiplies every gradient (gradient clipping)
};

// For each tensor: g = grad * grad_scale; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// param -= lr * (m / (1 - b1^step) / (sqrt(v / (1 - b2^step)) + eps) + weight_decay * param),
// evaluated in f32 in exactly the order of kernels/cpu/adamw.h's f32 adamw_step (constants
// folded in double on the host), so the sim build equals the cpu kernel bit for bit;
// then param_bf16 = bf16(param) where param_bf16 is set.
// `tensors` is a host array; the pointers inside it are device (or, on sim, host) memory.
void adamw_multi(const AdamWTensor* tensors, int num_tensors, const AdamWOptions& options,
                 void* stream);

#endif
