#include "kernels/cpu/adamw.h"
#include "kernels/cpu/parallel.h"

#include <cmath>

namespace visplay::kernels::cpu {

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

template void adamw_step<float>(float*, const float*, float*, float*, int64_t, double, double,
                                double, double, double, int64_t);
template void adamw_step<double>(double*, const double*, double*, double*, int64_t, double, double,
                                 double, double, double, int64_t);

}  // namespace visplay::kernels::cpu
