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

__global__ void adamw_kernel(AdamWBatch batch, float lr, float beta1, float beta2, float eps,
                             float weight_decay, float bias_correction1, float bias_correction2,
                             float grad_scale);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
