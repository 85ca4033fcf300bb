#include "runtime/ops_gelu_erf.h"

#include <cmath>

#include "runtime/ops_common.h"

namespace visplay {

// y = x * Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2; dy/dx = Phi(x) + x * phi(x).
// On cpu computed in double per element so f32 results are correctly rounded; on
// sim/cuda the f32 kernel UnaryOp::gelu_erf (erff, a few ulp).
Tensor gelu_erf(const Tensor& x) {
  const char* op = "gelu_erf";
  check_floating(op, x);
  if (x.dtype() == DType::bf16) return gelu_erf(x.to(DType::f32)).to(DType::bf16);
  if (detail::on_device(x)) return detail::device_unary(op, kernels::UnaryOp::gelu_erf, 0.0f, x);
  detail::require_cpu(op, x);
  Tensor xc = x.contiguous();
  Tensor out = Tensor::empty(xc.shape(), xc.dtype(), xc.device());
  detail::dispatch_float(op, xc.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* px = xc.data<T>();
    T* py = out.data<T>();
    for (int64_t i = 0; i < xc.numel(); ++i) {
      double v = px[i];
      py[i] = static_cast<T>(0.5 * v * (1.0 + std::erf(v * M_SQRT1_2)));
    }
  });
  Tensor xs = xc.detach();
  return record_op(out, op, {xc}, [xs, op](const Tensor& g) {
    Tensor gc = g.contiguous();
    Tensor dx = Tensor::empty(xs.shape(), xs.dtype(), xs.device());
    detail::dispatch_float(op, xs.dtype(), [&](auto t) {
      using T = decltype(t);
      const T* px = xs.data<T>();
      const T* pg = gc.data<T>();
      T* pd = dx.data<T>();
      for (int64_t i = 0; i < xs.numel(); ++i) {
        double v = px[i];
        double cdf = 0.5 * (1.0 + std::erf(v * M_SQRT1_2));
        double pdf = std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
        pd[i] = static_cast<T>(pg[i] * (cdf + v * pdf));
      }
    });
    return std::vector<Tensor>{dx};
  });
}

}  // namespace visplay
