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

}  // namespace visplay::kernels::cpu
