// Elementwise ops, reductions and row softmax. Grid-stride loops for the
// pointwise kernels; one block per row for softmax (block_sum/block_max from
// common.cuh); one thread per output for the reductions so every sum runs in
// a fixed order.
#include "kernels/cuda/elementwise.cuh"

#include <stdexcept>
#include <string>

namespace visplay::kernels::VISPLAY_KERNELS_NS {

namespace {
constexpr int kThreads = 256;

int grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<int>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

__device__ __forceinline__ float gelu_tanh(float x) {
  const float k = 0.7978845608028654f;
  return 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x)));
}
__device__ __forceinline__ float gelu_tanh_grad(float x) {
  const float k = 0.7978845608028654f;
  float t = tanhf(k * (x + 0.044715f * x * x * x));
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k * (1.0f + 3.0f * 0.044715f * x * x);
}
// The exact GELU x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2, and its derivative
// Phi(x) + x * phi(x), in f32 with erff (2 ulp on the device).
__device__ __forceinline__ float gelu_erf_value(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}
__device__ __forceinline__ float gelu_erf_grad(float x) {
  float cdf = 0.5f * (1.0f + erff(x * 0.7071067811865476f));
  float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
  return cdf + x * pdf;
}
__device__ __forceinline__ float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }
}  // namespace

__global__ void binary_kernel(BinaryOp op, const float* a, const float* b, float* out,
                              StridedShape shape, int64_t total) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t rem = i, oa = 0, ob = 0;
    for (int d = shape.ndim - 1; d >= 0; --d) {
      int64_t idx = rem % shape.size[d];
      rem /= shape.size[d];
      oa += idx * shape.stride_a[d];
      ob += idx * shape.stride_b[d];
    }
    float x = a[oa], y = b[ob];
    out[i] = op == BinaryOp::add ? x + y : op == BinaryOp::sub ? x - y : x * y;
  }
}

__global__ void unary_forward_kernel(UnaryOp op, const float* x, float* out, int64_t n, float p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = x[i], r = 0.0f;
    switch (op) {
      case UnaryOp::scale: r = v * p; break;
      case UnaryOp::add_scalar: r = v + p; break;
      case UnaryOp::exp: r = expf(v); break;
      case UnaryOp::log: r = logf(v); break;
      case UnaryOp::gelu: r = gelu_tanh(v); break;
      case UnaryOp::silu: r = v * sigmoidf(v); break;
      case UnaryOp::gelu_erf: r = gelu_erf_value(v); break;
    }
    out[i] = r;
  }
}

__global__ void unary_backward_kernel(UnaryOp op, const float* dy, const float* x, const float* y,
                                      float* dx, int64_t n, float p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = x[i], d = 0.0f;
    switch (op) {
      case UnaryOp::scale: d = p; break;
      case UnaryOp::add_scalar: d = 1.0f; break;
      case UnaryOp::exp: d = y[i]; break;
      case UnaryOp::log: d = 1.0f / v; break;
      case UnaryOp::gelu: d = gelu_tanh_grad(v); break;
      case UnaryOp::gelu_erf: d = gelu_erf_grad(v); break;
      case UnaryOp::silu: {
        float s = sigmoidf(v);
        d = s * (1.0f + v * (1.0f - s));
        break;
      }
    }
    dx[i] = dy[i] * d;
  }
}

__global__ void sum_dim_kernel(const float* x, float* out, int64_t outer, int64_t n, int64_t inner) {
  int64_t total = outer * inner;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o = i / inner, c = i % inner;
    const float* p = x + o * n * inner + c;
    float acc = 0.0f;
    for (int64_t r = 0; r < n; ++r) acc += p[r * inner];
    out[i] = acc;
  }
}

__global__ void sum_all_kernel(const float* x, float* out, int64_t n) {
  __shared__ float scratch[32];
  float acc = 0.0f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += x[i];
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) out[0] = acc;
}

// One block per row: max, sum of exponentials, then write.
__global__ void softmax_forward_kernel(const float* x, float* y, int64_t n, bool log) {
  __shared__ float scratch[32];
  const float* xr = x + blockIdx.x * n;
  float* yr = y + blockIdx.x * n;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, xr[j]);
  m = block_max(m, scratch);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += expf(xr[j] - m);
  s = block_sum(s, scratch);
  float lse = m + logf(s);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    yr[j] = log ? xr[j] - lse : expf(xr[j] - lse);
}

// softmax: dx = y (dy - sum(dy y)); log-softmax: dx = dy - exp(y) sum(dy)
__global__ void softmax_backward_kernel(const float* dy, const float* y, float* dx, int64_t n,
                                        bool log) {
  __shared__ float scratch[32];
  const float* dyr = dy + blockIdx.x * n;
  const float* yr = y + blockIdx.x * n;
  float* dxr = dx + blockIdx.x * n;
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) s += log ? dyr[j] : dyr[j] * yr[j];
  s = block_sum(s, scratch);
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x)
    dxr[j] = log ? dyr[j] - expf(yr[j]) * s : yr[j] * (dyr[j] - s);
}

__global__ void gather_forward_kernel(const float* x, const int64_t* index, float* out,
                                      int64_t outer, int64_t n, int64_t m, int64_t inner) {
  int64_t total = outer * m * inner;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o = i / (m * inner), c = i % inner;
    out[i] = x[(o * n + index[i]) * inner + c];
  }
}

__global__ void gather_backward_kernel(const float* dy, const int64_t* index, float* dx,
                                       int64_t outer, int64_t n, int64_t m, int64_t inner) {
  int64_t columns = outer * inner;
  for (int64_t col = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; col < columns;
       col += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t o = col / inner, c = col % inner;
    for (int64_t k = 0; k < n; ++k) dx[(o * n + k) * inner + c] = 0.0f;
    for (int64_t i = 0; i < m; ++i) {
      int64_t at = (o * m + i) * inner + c;
      dx[(o * n + index[at]) * inner + c] += dy[at];
    }
  }
}

// One thread per patch element: index = ((b * N + n) * C + c) * P * P + ky * P + kx.
__global__ void unfold_patches_kernel(const float* images, int64_t B, int64_t C, int64_t H, int64_t W,
                                      int64_t P, float* patches) {
  int64_t px = W / P, N = (H / P) * px, K = C * P * P, total = B * N * K;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t k = i % K, bn = i / K, b = bn / N, n = bn % N;
    int64_t c = k / (P * P), ky = k / P % P, kx = k % P;
    int64_t y = (n / px) * P + ky, x = (n % px) * P + kx;
    patches[i] = images[((b * C + c) * H + y) * W + x];
  }
}

__global__ void embedding_forward_kernel(const float* table, const int64_t* ids, int64_t total,
                                         int64_t dim, float* out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = table[ids[i / dim] * dim + i % dim];
}

// ---------------------------------------------------------------------------
// launchers

void binary(BinaryOp op, const float* a, const float* b, float* out, const StridedShape& shape,
            void* stream) {
  if (shape.ndim < 0 || shape.ndim > kMaxDims)
    throw std::invalid_argument("binary: " + std::to_string(shape.ndim) + " dims (max " +
                                std::to_string(kMaxDims) + ")");
  int64_t total = 1;
  for (int d = 0; d < shape.ndim; ++d) total *= shape.size[d];
  if (total == 0) return;
  SIMT_LAUNCH(binary_kernel, grid_for(total), kThreads, 0, stream)(op, a, b, out, shape, total);
  simt::check_launch("binary");
}

void unary_forward(UnaryOp op, const float* x, float* out, int64_t n, float p, void* stream) {
  if (n == 0) return;
  SIMT_LAUNCH(unary_forward_kernel, grid_for(n), kThreads, 0, stream)(op, x, out, n, p);
  simt::check_launch("unary_forward");
}

void unary_backward(UnaryOp op, const float* dy, const float* x, const float* y, float* dx,
                    int64_t n, float p, void* stream) {
  if (n == 0) return;
  SIMT_LAUNCH(unary_backward_kernel, grid_for(n), kThreads, 0, stream)(op, dy, x, y, dx, n, p);
  simt::check_launch("unary_backward");
}

void sum_dim(const float* x, float* out, int64_t outer, int64_t n, int64_t inner, void* stream) {
  if (outer * inner == 0) return;
  SIMT_LAUNCH(sum_dim_kernel, grid_for(outer * inner), kThreads, 0, stream)(x, out, outer, n, inner);
  simt::check_launch("sum_dim");
}

void sum_all(const float* x, float* out, int64_t n, void* stream) {
  SIMT_LAUNCH(sum_all_kernel, 1, kThreads, 0, stream)(x, out, n);
  simt::check_launch("sum_all");
}

void softmax_forward(const float* x, float* y, int64_t rows, int64_t n, bool log, void* stream) {
  if (rows == 0) return;
  if (rows > 2147483647) throw std::invalid_argument("softmax_forward: too many rows");
  SIMT_LAUNCH(softmax_forward_kernel, static_cast<unsigned>(rows), 128, 0, stream)(x, y, n, log);
  simt::check_launch("softmax_forward");
}

void softmax_backward(const float* dy, const float* y, float* dx, int64_t rows, int64_t n, bool log,
                      void* stream) {
  if (rows == 0) return;
  if (rows > 2147483647) throw std::invalid_argument("softmax_backward: too many rows");
  SIMT_LAUNCH(softmax_backward_kernel, static_cast<unsigned>(rows), 128, 0, stream)(dy, y, dx, n, log);
  simt::check_launch("softmax_backward");
}

void gather_forward(const float* x, const int64_t* index, float* out, int64_t outer, int64_t n,
                    int64_t m, int64_t inner, void* stream) {
  int64_t total = outer * m * inner;
  if (total == 0) return;
  SIMT_LAUNCH(gather_forward_kernel, grid_for(total), kThreads, 0, stream)(x, index, out, outer, n, m, inner);
  simt::check_launch("gather_forward");
}

void gather_backward(const float* dy, const int64_t* index, float* dx, int64_t outer, int64_t n,
                     int64_t m, int64_t inner, void* stream) {
  if (outer * inner == 0) return;
  SIMT_LAUNCH(gather_backward_kernel, grid_for(outer * inner), kThreads, 0, stream)(dy, index, dx, outer, n,
                                                                                    m, inner);
  simt::check_launch("gather_backward");
}

void unfold_patches(const float* images, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P,
                    float* patches, void* stream) {
  if (P <= 0 || H % P != 0 || W % P != 0)
    throw std::invalid_argument("unfold_patches: " + std::to_string(H) + "x" + std::to_string(W) +
                                " is not a whole number of " + std::to_string(P) + "-pixel patches");
  int64_t total = B * C * H * W;
  if (total == 0) return;
  SIMT_LAUNCH(unfold_patches_kernel, grid_for(total), kThreads, 0, stream)(images, B, C, H, W, P, patches);
  simt::check_launch("unfold_patches");
}

void embedding_forward(const float* table, const int64_t* ids, int64_t tokens, int64_t dim, float* out,
                       void* stream) {
  int64_t total = tokens * dim;
  if (total == 0) return;
  SIMT_LAUNCH(embedding_forward_kernel, grid_for(total), kThreads, 0, stream)(table, ids, total, dim, out);
  simt::check_launch("embedding_forward");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
