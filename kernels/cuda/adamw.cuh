// Multi-tensor AdamW kernel (launcher: visplay/kernels/adamw.h).
#pragma once

#include "kernels/cuda/common.cuh"
#include "visplay/kernels/adamw.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

// Up to kAdamWBatch tensors travel by value in the kernel's parameters (well under the
// 4 KB parameter limit), so no device-side pointer table is needed.
constexpr int kAdamWBatch = 32;
struct AdamWBatch {
  AdamWTensor tensors[kAdamWBatch];
};

// The step's constants, folded in double on the host as kernels/cpu/adamw.cpp does.
struct AdamWConstants {
  float beta1, one_minus_beta1, beta2, one_minus_beta2;
  float inv_bias_correction1, inv_sqrt_bias_correction2;  // 1 / (1 - b1^t), 1 / sqrt(1 - b2^t)
  float lr, lr_times_decay, eps, grad_scale;
};

__global__ void adamw_kernel(AdamWBatch batch, AdamWConstants c);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
