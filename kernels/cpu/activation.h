// Pointwise activations and the row softmax, forward and backward.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
template <class T> void gelu_forward(const T* x, T* y, int64_t n);
template <class T> void gelu_backward(const T* dy, const T* x, T* dx, int64_t n);
// SiLU: x * sigmoid(x)
template <class T> void silu_forward(const T* x, T* y, int64_t n);
template <class T> void silu_backward(const T* dy, const T* x, T* dx, int64_t n);
// SwiGLU: y = silu(gate) * up
template <class T> void swiglu_forward(const T* gate, const T* up, T* y, int64_t n);
template <class T>
void swiglu_backward(const T* dy, const T* gate, const T* up, T* dgate, T* dup, int64_t n);
// Softmax over rows of length n (max-subtracted).
template <class T> void softmax_forward(const T* x, T* y, int64_t rows, int64_t n);
// dx = y * (dy - sum(dy * y))
template <class T> void softmax_backward(const T* dy, const T* y, T* dx, int64_t rows, int64_t n);

}  // namespace visplay::kernels::cpu
