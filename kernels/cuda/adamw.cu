// Fused multi-tensor AdamW: blockIdx.y picks the tensor, blocks stride over its
// elements; one launch per 32 tensors instead of one (or four) per tensor.
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/adamw.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void adamw_kernel(AdamWBatch batch, float lr, float beta1, float beta2, float eps,
                             float weight_decay, float bias_correction1, float bias_correction2,
                             float grad_scale) {
  const AdamWTensor& t = batch.tensors[blockIdx.y];
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < t.size;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    float g = t.grad[i] * grad_scale;
    float m = beta1 * t.m[i] + (1.0f - beta1) * g;
    float v = beta2 * t.v[i] + (1.0f - beta2) * g * g;
    t.m[i] = m;
    t.v[i] = v;
    float update = (m / bias_correction1) / (sqrtf(v / bias_correction2) + eps);
    t.param[i] -= lr * (update + weight_decay * t.param[i]);
  }
}

void adamw_multi(const AdamWTensor* tensors, int num_tensors, const AdamWOptions& o, void* stream) {
  if (num_tensors < 0 || o.step < 1)
    throw std::invalid_argument("adamw_multi: need num_tensors >= 0 and step >= 1, got step " +
                                std::to_string(o.step));
  float bias_correction1 = static_cast<float>(1.0 - std::pow(double(o.beta1), o.step));
  float bias_correction2 = static_cast<float>(1.0 - std::pow(double(o.beta2), o.step));
  for (int first = 0; first < num_tensors; first += kAdamWBatch) {
    int count = num_tensors - first < kAdamWBatch ? num_tensors - first : kAdamWBatch;
    AdamWBatch batch{};
    long largest = 0;
    for (int i = 0; i < count; ++i) {
      const AdamWTensor& t = tensors[first + i];
      if (t.size < 0 || (t.size > 0 && (!t.param || !t.grad || !t.m || !t.v)))
        throw std::invalid_argument("adamw_multi: tensor " + std::to_string(first + i) +
                                    " has a null pointer or a negative size");
      batch.tensors[i] = t;
      largest = t.size > largest ? t.size : largest;
    }
    if (largest == 0) continue;
    int blocks = static_cast<int>(largest / 256 + 1 < 512 ? largest / 256 + 1 : 512);
    SIMT_LAUNCH(adamw_kernel, dim3(blocks, count), 256, 0, stream)
    (batch, o.lr, o.beta1, o.beta2, o.eps, o.weight_decay, bias_correction1, bias_correction2,
     o.grad_scale);
    simt::check_launch("adamw_multi");
  }
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
