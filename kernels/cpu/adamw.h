// One AdamW step on a flat parameter array (decoupled weight decay):
//   m = b1 m + (1-b1) g ; v = b2 v + (1-b2) g^2
//   p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + wd * p)
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

template <class T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1,
                double beta2, double eps, double weight_decay, int64_t step);

// f32 computes the update in f32 (vectorised); f64 computes in f64.
template <>
void adamw_step<float>(float* param, const float* grad, float* m, float* v, int64_t n, double lr,
                       double beta1, double beta2, double eps, double weight_decay, int64_t step);

// Mixed precision: the f32 step above on the f32 master copy `master`, then the bf16
// parameter the model computes with gets the rounded master (round-to-nearest-even, NaN kept
// a quiet NaN; raw bf16 bits). The reference of the device kernel's param_bf16 output
// (visplay/kernels/adamw.h), which computes the same f32 expressions in the same order.
void adamw_step_bf16_master(float* master, uint16_t* param_bf16, const float* grad, float* m,
                            float* v, int64_t n, double lr, double beta1, double beta2, double eps,
                            double weight_decay, int64_t step);

// Round-to-nearest-even f32 -> bf16 bits, as __float2bfloat16_rn.
uint16_t float_to_bf16_bits(float f);

}  // namespace visplay::kernels::cpu
