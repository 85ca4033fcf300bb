#include "kernels/cpu/adamw.h"

#include <cmath>
#include <cstring>

#include "kernels/cpu/parallel.h"

namespace visplay::kernels::cpu {

// The reference form, in double: also the f64 parameters' path.
template <class T>
void adamw_step(T* param, const T* grad, T* m, T* v, int64_t n, double lr, double beta1,
                double beta2, double eps, double weight_decay, int64_t step) {
  double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    double g = grad[i];
    double mi = beta1 * m[i] + (1.0 - beta1) * g;
    double vi = beta2 * v[i] + (1.0 - beta2) * g * g;
    m[i] = static_cast<T>(mi);
    v[i] = static_cast<T>(vi);
    double update = (mi / bc1) / (std::sqrt(vi / bc2) + eps);
    param[i] = static_cast<T>(param[i] - lr * (update + weight_decay * param[i]));
  }
}

// f32 parameters: the moments are stored in f32 anyway, so the update is
// computed in f32 too (its rounding, ~1e-7 of an update of size ~lr, is far
// below the parameter's own f32 rounding). Restrict pointers and
// hoisted constants let the loop vectorise (f32 sqrt/div run twice as wide as
// f64). Bias corrections fold into the step size and eps:
//   (m / bc1) / (sqrt(v / bc2) + eps) = (m * c1) / (sqrt(v) * c2 + eps),
//   c1 = 1 / bc1, c2 = 1 / sqrt(bc2).
template <>
void adamw_step<float>(float* param_in, const float* grad_in, float* m_in, float* v_in, int64_t n,
                       double lr, double beta1, double beta2, double eps, double weight_decay,
                       int64_t step) {
  float* __restrict param = param_in;
  const float* __restrict grad = grad_in;
  float* __restrict m = m_in;
  float* __restrict v = v_in;
  const double bc1 = 1.0 - std::pow(beta1, static_cast<double>(step));
  const double bc2 = 1.0 - std::pow(beta2, static_cast<double>(step));
  const float b1 = static_cast<float>(beta1), one_minus_b1 = static_cast<float>(1.0 - beta1);
  const float b2 = static_cast<float>(beta2), one_minus_b2 = static_cast<float>(1.0 - beta2);
  const float c1 = static_cast<float>(1.0 / bc1), c2 = static_cast<float>(1.0 / std::sqrt(bc2));
  const float lr_f = static_cast<float>(lr), decay = static_cast<float>(lr * weight_decay);
  const float eps_f = static_cast<float>(eps);
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) {
    float g = grad[i];
    float mi = b1 * m[i] + one_minus_b1 * g;
    float vi = b2 * v[i] + one_minus_b2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    float update = (mi * c1) / (std::sqrt(vi) * c2 + eps_f);
    param[i] = param[i] - (lr_f * update + decay * param[i]);
  }
}

uint16_t float_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

// The master update is the f32 step itself (one code path, so f32 and mixed-precision
// training share its rounding); the bf16 copy is a second pass over the fresh master, cheap
// next to the step and keeping the vectorised loop untouched.
void adamw_step_bf16_master(float* master, uint16_t* param_bf16, const float* grad, float* m,
                            float* v, int64_t n, double lr, double beta1, double beta2, double eps,
                            double weight_decay, int64_t step) {
  adamw_step<float>(master, grad, m, v, n, lr, beta1, beta2, eps, weight_decay, step);
#pragma omp parallel for schedule(static) if (n > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) param_bf16[i] = float_to_bf16_bits(master[i]);
}

template void adamw_step<double>(double*, const double*, double*, double*, int64_t, double, double,
                                 double, double, double, int64_t);

}  // namespace visplay::kernels::cpu
