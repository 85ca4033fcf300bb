// The exact (erf) GELU, x * Phi(x), as torch.nn.GELU() computes it: the
// Qwen2.5-VL patch merger uses it (the runtime's gelu() is the tanh form).
// cpu (f32, f64) and sim/cuda (f32: UnaryOp::gelu_erf); bf16 is computed in f32 and
// rounded. Differentiable.
#pragma once
#include "runtime/tensor.h"

namespace visplay {

Tensor gelu_erf(const Tensor& x);

}  // namespace visplay
