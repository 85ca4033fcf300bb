// Elementwise, reduction and row-softmax kernels: the small ops a model's
// forward and backward are glued with. f32, plain pointers and a stream.
// Declared for both builds of kernels/cuda/elementwise.cu (visplay::kernels::cuda
// on the GPU, visplay::kernels::sim in the host emulator).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_ELEMENTWISE_H_
#define VISPLAY_KERNELS_ELEMENTWISE_H_
#include <cstdint>
namespace visplay::kernels {
// Up to 6 dims; strides in elements, 0 along broadcast dims.
constexpr int kMaxDims = 6;
struct StridedShape {
  int ndim = 0;
  int64_t size[kMaxDims] = {};
  int64_t stride_a[kMaxDims] = {};
  int64_t stride_b[kMaxDims] = {};
};
enum class BinaryOp : int { add = 0, sub = 1, mul = 2 };
// gelu is the tanh form; gelu_erf the exact x * Phi(x) (the Qwen2.5-VL patch merger's).
enum class UnaryOp : int {
  scale = 0,
  add_scalar = 1,
  exp = 2,
  log = 3,
  gelu = 4,
  silu = 5,
  gelu_erf = 6
};
}  // namespace visplay::kernels
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/elementwise.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/elementwise.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

// out (contiguous, shape.size) = a op b, operands read through their strides.
void binary(BinaryOp op, const float* a, const float* b, float* out, const StridedShape& shape,
            void* stream);
// out = f(x) with parameter p (the factor of scale, the addend of add_scalar).
void unary_forward(UnaryOp op, const float* x, float* out, int64_t n, float p, void* stream);
// dx = dy * f'(x) (y = f(x) is passed for ops whose derivative is cheaper from it).
void unary_backward(UnaryOp op, const float* dy, const float* x, const float* y, float* dx,
                    int64_t n, float p, void* stream);
// out[o, i] = sum_r x[o, r, i] for x viewed as [outer, n, inner]; one thread per output
// summing in r order, so the result is deterministic.
void sum_dim(const float* x, float* out, int64_t outer, int64_t n, int64_t inner, void* stream);
// out[0] = sum of x[0..n): one block, fixed tree order.
void sum_all(const float* x, float* out, int64_t n, void* stream);
// Row softmax / log-softmax over the last dim (rows x n), and their backward passes.
void softmax_forward(const float* x, float* y, int64_t rows, int64_t n, bool log, void* stream);
void softmax_backward(const float* dy, const float* y, float* dx, int64_t rows, int64_t n, bool log,
                      void* stream);
// out[o, i, c] = x[o, index[o, i, c], c] with x [outer, n, inner], index [outer, m, inner].
void gather_forward(const float* x, const int64_t* index, float* out, int64_t outer, int64_t n,
                    int64_t m, int64_t inner, void* stream);
// dx (overwritten) = scatter-add of dy by index; each thread owns one (o, c) column
// and adds in i order: deterministic, no atomics.
void gather_backward(const float* dy, const int64_t* index, float* dx, int64_t outer, int64_t n,
                     int64_t m, int64_t inner, void* stream);
// patches[B * N, C * P * P] from images [B, C, H, W]: P x P patches in row-major
// order, each flattened as (c, ky, kx) (the conv weight layout). H, W multiples of P.
void unfold_patches(const float* images, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P,
                    float* patches, void* stream);
// out[t, :] = table[ids[t], :] (the embedding lookup; ids checked by the caller).
void embedding_forward(const float* table, const int64_t* ids, int64_t tokens, int64_t dim, float* out,
                       void* stream);

#endif
