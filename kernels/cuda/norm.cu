// RMSNorm and LayerNorm over the last dimension: one block per row for the forward and
// for dx (two block reductions each), and one thread per column for the parameter
// gradients, which sums over rows in a fixed order instead of using float atomics.
#include <stdexcept>
#include <string>

#include "kernels/cuda/norm.cuh"
#include "visplay/kernels/norm.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

constexpr int kNormThreads = 128;

__global__ void norm_forward_kernel(const float* x, const float* weight, const float* bias, int dim,
                                    float eps, float* y, float* mean, float* rstd) {
  __shared__ float scratch[32];
  long row = blockIdx.x;
  const float* xr = x + row * dim;
  float* yr = y + row * dim;
  float mu = 0.0f;
  if (mean) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) s += xr[i];
    mu = block_sum(s, scratch) / dim;
  }
  float ss = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ss += (xr[i] - mu) * (xr[i] - mu);
  float r = rsqrtf(block_sum(ss, scratch) / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x)
    yr[i] = (xr[i] - mu) * r * weight[i] + (bias ? bias[i] : 0.0f);
  if (threadIdx.x == 0) {
    rstd[row] = r;
    if (mean) mean[row] = mu;
  }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * weight; RMSNorm drops
// the mean(g) term (no centring).
__global__ void norm_backward_dx_kernel(const float* x, const float* weight, const float* mean,
                                        const float* rstd, const float* dy, int dim, float* dx) {
  __shared__ float scratch[32];
  long row = blockIdx.x;
  const float* xr = x + row * dim;
  const float* dyr = dy + row * dim;
  float mu = mean ? mean[row] : 0.0f, r = rstd[row];
  float g_sum = 0.0f, gx_sum = 0.0f;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float g = dyr[i] * weight[i];
    g_sum += g;
    gx_sum += g * (xr[i] - mu) * r;
  }
  float g_mean = mean ? block_sum(g_sum, scratch) / dim : 0.0f;
  float gx_mean = block_sum(gx_sum, scratch) / dim;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    float xhat = (xr[i] - mu) * r;
    dx[row * dim + i] = r * (dyr[i] * weight[i] - g_mean - xhat * gx_mean);
  }
}

__global__ void norm_backward_params_kernel(const float* x, const float* mean, const float* rstd,
                                            const float* dy, int rows, int dim, float* dweight,
                                            float* dbias) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= dim) return;
  float dw = 0.0f, db = 0.0f;
  for (long row = 0; row < rows; ++row) {
    float xhat = (x[row * dim + col] - (mean ? mean[row] : 0.0f)) * rstd[row];
    dw += dy[row * dim + col] * xhat;
    db += dy[row * dim + col];
  }
  dweight[col] = dw;
  if (dbias) dbias[col] = db;
}

static void check_norm_shape(const char* what, int rows, int dim) {
  if (rows < 0 || dim <= 0)
    throw std::invalid_argument(std::string(what) + ": bad shape rows=" + std::to_string(rows) +
                                " dim=" + std::to_string(dim));
}

void rmsnorm_forward(const float* x, const float* weight, int rows, int dim, float eps, float* y,
                     float* rstd, void* stream) {
  check_norm_shape("rmsnorm_forward", rows, dim);
  if (rows == 0) return;
  SIMT_LAUNCH(norm_forward_kernel, rows, kNormThreads, 0, stream)
  (x, weight, nullptr, dim, eps, y, nullptr, rstd);
  simt::check_launch("rmsnorm_forward");
}

void rmsnorm_backward(const float* x, const float* weight, const float* rstd, const float* dy,
                      int rows, int dim, float* dx, float* dweight, void* stream) {
  check_norm_shape("rmsnorm_backward", rows, dim);
  if (rows > 0) {
    SIMT_LAUNCH(norm_backward_dx_kernel, rows, kNormThreads, 0, stream)
    (x, weight, nullptr, rstd, dy, dim, dx);
    simt::check_launch("rmsnorm_backward dx");
  }
  SIMT_LAUNCH(norm_backward_params_kernel, ceil_div(dim, 128), 128, 0, stream)
  (x, nullptr, rstd, dy, rows, dim, dweight, nullptr);
  simt::check_launch("rmsnorm_backward dweight");
}

void layernorm_forward(const float* x, const float* weight, const float* bias, int rows, int dim,
                       float eps, float* y, float* mean, float* rstd, void* stream) {
  check_norm_shape("layernorm_forward", rows, dim);
  if (rows == 0) return;
  SIMT_LAUNCH(norm_forward_kernel, rows, kNormThreads, 0, stream)
  (x, weight, bias, dim, eps, y, mean, rstd);
  simt::check_launch("layernorm_forward");
}

void layernorm_backward(const float* x, const float* weight, const float* mean, const float* rstd,
                        const float* dy, int rows, int dim, float* dx, float* dweight, float* dbias,
                        void* stream) {
  check_norm_shape("layernorm_backward", rows, dim);
  if (rows > 0) {
    SIMT_LAUNCH(norm_backward_dx_kernel, rows, kNormThreads, 0, stream)
    (x, weight, mean, rstd, dy, dim, dx);
    simt::check_launch("layernorm_backward dx");
  }
  SIMT_LAUNCH(norm_backward_params_kernel, ceil_div(dim, 128), 128, 0, stream)
  (x, mean, rstd, dy, rows, dim, dweight, dbias);
  simt::check_launch("layernorm_backward dweight");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
