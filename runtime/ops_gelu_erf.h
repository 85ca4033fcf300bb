// The exact (erf) GELU, x * Phi(x), as torch.nn.GELU() computes it: the
// Qwen2.5-VL patch merger uses it (the runtime's gelu() is the tanh form).
// cpu only (f32, f64; bf16 is computed in f32 and rounded), differentiable.
#pragma once
#include "runtime/tensor.h"

namespace visplay {

Tensor gelu_erf(const Tensor& x);

}  // namespace visplay
