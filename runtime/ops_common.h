// Internal helpers shared by the op implementations (not part of the API).
#pragma once
#include <string>
#include <vector>

#include "runtime/ops.h"
#include "visplay/kernels/elementwise.h"

namespace visplay::detail {

// Calls f(T{}) with T = float for f32 and double for f64.
template <class F>
void dispatch_float(const char* op, DType t, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    default: op_error(op, std::string("unsupported dtype ") + dtype_name(t));
  }
}

// cpu tensors run the kernels in kernels/cpu; sim and cuda tensors run the
// kernels in kernels/cuda (through the SIMT emulator on sim). An op without a
// device kernel says so.
inline void require_cpu(const char* op, const Tensor& t) {
  if (t.device() != kCPU)
    op_error(op, "no kernel for device " + t.device().str() + " (input " + t.str() + ")");
}

inline bool on_device(const Tensor& t) { return t.device().type != DeviceType::cpu; }

// Device kernels take f32; bf16 is converted by the caller, f64 is cpu-only.
inline void require_device_f32(const char* op, const Tensor& t) {
  if (t.dtype() != DType::f32)
    op_error(op, std::string("device kernels take f32, got ") + dtype_name(t.dtype()) + " " +
                     shape_str(t.shape()) + " on " + t.device().str());
}

// Index tensors (i32 or i64) as a contiguous i64 tensor.
inline Tensor as_index(const char* op, const Tensor& ids) {
  if (ids.dtype() != DType::i32 && ids.dtype() != DType::i64)
    op_error(op, std::string("index tensor must be i32 or i64, got ") + dtype_name(ids.dtype()) +
                     " " + shape_str(ids.shape()));
  return ids.to(DType::i64).contiguous();
}

inline bool any_bf16(std::initializer_list<const Tensor*> ts) {
  for (const Tensor* t : ts)
    if (t->defined() && t->dtype() == DType::bf16) return true;
  return false;
}

inline Tensor f32(const Tensor& t) { return t.defined() ? t.to(DType::f32) : t; }

// A pointwise op on a sim/cuda device (f32), with its backward (ops_elementwise.cpp).
Tensor device_unary(const char* name, kernels::UnaryOp code, float p, const Tensor& a);

}  // namespace visplay::detail

// Calls visplay::kernels::sim::fn(args...) or visplay::kernels::cuda::fn(args...)
// for the device `dev`; the stream argument is the caller's (null: default).
#ifdef VISPLAY_HAVE_CUDA
#define VISPLAY_DEVICE_KERNEL(dev, fn, ...)                                                 \
  do {                                                                                      \
    if ((dev).type == ::visplay::DeviceType::sim)                                           \
      ::visplay::kernels::sim::fn(__VA_ARGS__);                                             \
    else                                                                                    \
      ::visplay::kernels::cuda::fn(__VA_ARGS__);                                            \
  } while (0)
#else
#define VISPLAY_DEVICE_KERNEL(dev, fn, ...)                                                 \
  do {                                                                                      \
    if ((dev).type != ::visplay::DeviceType::sim)                                           \
      ::visplay::op_error(#fn, "this build has no CUDA backend (device " + (dev).str() + ")"); \
    ::visplay::kernels::sim::fn(__VA_ARGS__);                                               \
  } while (0)
#endif
