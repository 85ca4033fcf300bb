// Fused multi-tensor AdamW: blockIdx.y picks the tensor, blocks stride over its
// elements; one launch per 32 tensors instead of one (or four) per tensor.
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/cuda/adamw.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void adamw_kernel(AdamWBatch batch, AdamWConstants c) {
  const AdamWTensor& t = batch.tensors[blockIdx.y];
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < t.size;
       i += static_cast<long>(gridDim.x) * blockDim.x) {
    float g = t.grad[i] * c.grad_scale;
    float m = c.beta1 * t.m[i] + c.one_minus_beta1 * g;
    float v = c.beta2 * t.v[i] + c.one_minus_beta2 * (g * g);
    t.m[i] = m;
    t.v[i] = v;
    float update = (m * c.inv_bias_correction1) / (sqrtf(v) * c.inv_sqrt_bias_correction2 + c.eps);
    float p = t.param[i];
    p = p - (c.lr * update + c.lr_times_decay * p);
    t.param[i] = p;
    if (t.param_bf16) t.param_bf16[i] = __bfloat16_as_ushort(__float2bfloat16_rn(p));
  }
}

void adamw_multi(const AdamWTensor* tensors, int num_tensors, const AdamWOptions& o, void* stream) {
  if (num_tensors < 0 || o.step < 1)
    throw std::invalid_argument("adamw_multi: need num_tensors >= 0 and step >= 1, got step " +
                                std::to_string(o.step));
  // Constants as kernels/cpu/adamw.cpp's f32 step folds them (from the double values).
  const double beta1 = o.beta1, beta2 = o.beta2;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(o.step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(o.step));
  AdamWConstants c;
  c.beta1 = static_cast<float>(beta1);
  c.one_minus_beta1 = static_cast<float>(1.0 - beta1);
  c.beta2 = static_cast<float>(beta2);
  c.one_minus_beta2 = static_cast<float>(1.0 - beta2);
  c.inv_bias_correction1 = static_cast<float>(1.0 / bc1);
  c.inv_sqrt_bias_correction2 = static_cast<float>(1.0 / std::sqrt(bc2));
  c.lr = static_cast<float>(o.lr);
  c.lr_times_decay = static_cast<float>(o.lr * o.weight_decay);
  c.eps = static_cast<float>(o.eps);
  c.grad_scale = o.grad_scale;
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
    (batch, c);
    simt::check_launch("adamw_multi");
  }
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
