// Internal helpers shared by the op implementations (not part of the API).
#pragma once
#include <string>
#include <vector>

#include "runtime/ops.h"

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

// The kernels run on host memory; cuda and sim dispatch live with the CUDA
// backend (kernels/cuda). Until an op has a device kernel it says so.
inline void require_cpu(const char* op, const Tensor& t) {
  if (t.device() != kCPU)
    op_error(op, "no kernel for device " + t.device().str() + " (input " + t.str() + ")");
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

}  // namespace visplay::detail
