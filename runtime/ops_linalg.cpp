// matmul and linear on OpenBLAS. Operands that are transposed views of a
// contiguous tensor go to BLAS with a transpose flag instead of a copy.
#include "kernels/cpu/gemm.h"
#include "runtime/ops_common.h"
#include "visplay/kernels/gemm.h"

namespace visplay {
using namespace detail;
namespace kc = kernels::cpu;

namespace {

// A matrix operand [batch..., rows, cols] as BLAS sees it: a base pointer,
// whether it is stored transposed, and its leading dimension.
struct GemmOperand {
  Tensor storage;  // keeps the memory alive
  bool trans = false;
  int64_t ld = 0;
  int64_t batch_stride = 0;
};

GemmOperand as_gemm_operand(const Tensor& t) {
  int64_t nd = t.dim();
  int64_t rows = t.shape()[nd - 2], cols = t.shape()[nd - 1];
  if (t.is_contiguous()) return {t, false, cols, rows * cols};
  Tensor tt = t.transpose(-1, -2).detach();
  if (tt.is_contiguous()) return {tt, true, rows, rows * cols};
  Tensor c = t.detach().contiguous();
  return {c, false, cols, rows * cols};
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  const char* op = "matmul";
  check_same_device(op, a, b);
  check_floating(op, a);
  check_floating(op, b);
  if (any_bf16({&a, &b})) return matmul(f32(a), f32(b)).to(DType::bf16);
  check_same_dtype(op, a, b);
  if (a.dim() < 2 || b.dim() < 2)
    op_error(op, "needs at least 2-d operands, got " + shape_str(a.shape()) + " @ " + shape_str(b.shape()));
  int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  if (b.size(-2) != K)
    op_error(op, "inner dimensions differ: " + shape_str(a.shape()) + " @ " + shape_str(b.shape()));
  Shape batch_a(a.shape().begin(), a.shape().end() - 2);
  Shape batch_b(b.shape().begin(), b.shape().end() - 2);
  bool shared_b = b.dim() == 2;
  if (!shared_b && batch_a != batch_b)
    op_error(op, "batch dimensions differ: " + shape_str(a.shape()) + " @ " + shape_str(b.shape()));
  int64_t batch = shape_numel(batch_a);
  Shape out_shape = batch_a;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, a.dtype(), a.device());

  GemmOperand oa = as_gemm_operand(a), ob = as_gemm_operand(b);
  if (on_device(a)) {
    require_device_f32(op, a);
    const float* pa = static_cast<const float*>(oa.storage.raw_data());
    const float* pb = static_cast<const float*>(ob.storage.raw_data());
    float* pc = out.data<float>();
    for (int64_t i = 0; i < batch; ++i)
      VISPLAY_DEVICE_KERNEL(a.device(), gemm_f32, oa.trans, ob.trans, static_cast<int>(M), static_cast<int>(N),
                            static_cast<int>(K), 1.0f, pa + i * oa.batch_stride, static_cast<int>(oa.ld),
                            pb + (shared_b ? 0 : i * ob.batch_stride), static_cast<int>(ob.ld), 0.0f,
                            pc + i * M * N, static_cast<int>(N), nullptr);
  } else dispatch_float(op, a.dtype(), [&](auto t) {
    using T = decltype(t);
    const T* pa = static_cast<const T*>(oa.storage.raw_data());
    const T* pb = static_cast<const T*>(ob.storage.raw_data());
    T* pc = out.data<T>();
    if (shared_b && !oa.trans) {
      // One GEMM over all batch rows: [batch*M, K] @ [K, N].
      kc::gemm<T>(false, ob.trans, batch * M, N, K, T(1), pa, K, pb, ob.ld, T(0), pc, N);
    } else {
      for (int64_t i = 0; i < batch; ++i)
        kc::gemm<T>(oa.trans, ob.trans, M, N, K, T(1), pa + i * oa.batch_stride, oa.ld,
                    pb + (shared_b ? 0 : i * ob.batch_stride), ob.ld, T(0), pc + i * M * N, N);
    }
  });
  return record_op(out, op, {a, b}, [a, b, shared_b, K, N](const Tensor& g) {
    Tensor ga, gb;
    Tensor ad = a.detach(), bd = b.detach();
    if (a.requires_grad()) ga = matmul(g, bd.transpose(-1, -2));
    if (b.requires_grad()) {
      if (shared_b)
        gb = matmul(ad.reshape({-1, K}).transpose(0, 1), g.reshape({-1, N}));
      else
        gb = matmul(ad.transpose(-1, -2), g);
    }
    return std::vector<Tensor>{ga, gb};
  });
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  const char* op = "linear";
  check_same_device(op, x, w);
  check_floating(op, x);
  check_floating(op, w);
  if (any_bf16({&x, &w, &bias})) return linear(f32(x), f32(w), f32(bias)).to(DType::bf16);
  check_same_dtype(op, x, w);
  if (w.dim() != 2 || x.dim() < 1 || x.size(-1) != w.size(1))
    op_error(op, "input " + shape_str(x.shape()) + " does not match weight " + shape_str(w.shape()) +
                     " (expected [..., in] and [out, in])");
  int64_t in = w.size(1), out_features = w.size(0);
  if (bias.defined()) {
    check_same_dtype(op, x, bias);
    if (bias.dim() != 1 || bias.size(0) != out_features)
      op_error(op, "bias " + shape_str(bias.shape()) + " does not match weight " + shape_str(w.shape()));
  }
  if (on_device(x)) {
    // Composed from device ops: x W^T on the GEMM kernel (W^T is a view, passed
    // as a transpose flag), then the bias through the broadcasting add.
    Shape out_shape = x.shape();
    out_shape.back() = out_features;
    Tensor y = matmul(x.reshape({-1, in}), w.transpose(0, 1));
    if (bias.defined()) y = add(y, bias);
    return y.reshape(out_shape);
  }
  Tensor xc = x.contiguous(), wc = w.contiguous();
  Tensor bc = bias.defined() ? bias.contiguous() : bias;
  int64_t rows = xc.numel() / in;
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor out = Tensor::empty(out_shape, x.dtype(), x.device());
  dispatch_float(op, x.dtype(), [&](auto t) {
    using T = decltype(t);
    T* po = out.data<T>();
    if (bc.defined())  // the bias is added in the GEMM's epilogue (no fill of the output)
      kc::gemm_bias<T>(false, true, rows, out_features, in, xc.data<T>(), in, wc.data<T>(), in,
                       bc.data<T>(), po, out_features);
    else
      kc::gemm<T>(false, true, rows, out_features, in, T(1), xc.data<T>(), in, wc.data<T>(), in,
                  T(0), po, out_features);
  });
  Tensor xs = xc.detach(), ws = wc.detach();
  bool need_x = xc.requires_grad(), need_w = wc.requires_grad(), need_b = bc.requires_grad();
  return record_op(out, op, {xc, wc, bc}, [=](const Tensor& g) {
    Tensor gc = g.contiguous().reshape({rows, out_features});
    Tensor gx, gw, gb;
    if (need_x) gx = matmul(gc, ws).reshape(xs.shape());
    if (need_w) gw = matmul(gc.transpose(0, 1), xs.reshape({rows, in}));
    if (need_b) gb = sum(gc, 0, false);
    return std::vector<Tensor>{gx, gw, gb};
  });
}

}  // namespace visplay
