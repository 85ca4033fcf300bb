// ViT kernels. Patch embedding: one block per (patch, image) stages the normalised patch
// (C * P * P values) in dynamic shared memory, then each thread produces embedding
// channels as dot(weight row, patch) + bias + position. The unfolded patch matrix never
// exists in global memory.
#include <stdexcept>
#include <string>

#include "kernels/cuda/vision.cuh"
#include "visplay/kernels/vision.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void patch_embed_kernel(const float* image_f32, const uint8_t* image_u8,
                                   const float* mean, const float* std, int channels, int height,
                                   int width, int patch, const float* weight, const float* bias,
                                   const float* pos, int embed, float* out) {
  SIMT_DYNAMIC_SHARED(float, pixels);  // [channels][patch][patch]
  int patches_x = width / patch, num_patches = (height / patch) * patches_x;
  int p = blockIdx.x, image = blockIdx.y;
  int y0 = (p / patches_x) * patch, x0 = (p % patches_x) * patch;
  int patch_size = channels * patch * patch;
  for (int e = threadIdx.x; e < patch_size; e += blockDim.x) {
    int c = e / (patch * patch), ky = e / patch % patch, kx = e % patch;
    int y = y0 + ky, x = x0 + kx;
    if (image_u8) {
      long at = ((static_cast<long>(image) * height + y) * width + x) * channels + c;
      pixels[e] = (image_u8[at] * (1.0f / 255.0f) - mean[c]) / std[c];
    } else {
      pixels[e] = image_f32[((static_cast<long>(image) * channels + c) * height + y) * width + x];
    }
  }
  __syncthreads();
  float* out_row = out + (static_cast<long>(image) * num_patches + p) * embed;
  for (int d = threadIdx.x; d < embed; d += blockDim.x) {
    const float* w = weight + static_cast<long>(d) * patch_size;
    float acc = 0.0f;
    for (int e = 0; e < patch_size; ++e) acc = fmaf(w[e], pixels[e], acc);
    out_row[d] = acc + bias[d] + (pos ? pos[static_cast<long>(p) * embed + d] : 0.0f);
  }
}

__global__ void bias_gelu_forward_kernel(const float* x, const float* bias, long total, int dim,
                                         float* y) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    y[i] = gelu_tanh_vision(x[i] + (bias ? bias[i % dim] : 0.0f));
}

__global__ void bias_gelu_backward_kernel(const float* x, const float* bias, const float* dy,
                                          long total, int dim, float* dx) {
  for (long i = blockIdx.x * static_cast<long>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<long>(gridDim.x) * blockDim.x)
    dx[i] = dy[i] * gelu_tanh_vision_grad(x[i] + (bias ? bias[i % dim] : 0.0f));
}

// One thread per column, rows summed in order: deterministic.
__global__ void column_sum_kernel(const float* x, int rows, int dim, float* sums) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= dim) return;
  float acc = 0.0f;
  for (long r = 0; r < rows; ++r) acc += x[r * dim + col];
  sums[col] = acc;
}

void patch_embed_forward(const float* image_f32, const uint8_t* image_u8, const float* mean,
                         const float* std, int batch, int channels, int height, int width,
                         int patch, const float* weight, const float* bias, const float* pos,
                         int embed, float* out, void* stream) {
  if (batch < 0 || channels <= 0 || patch <= 0 || embed <= 0 || height <= 0 || width <= 0 ||
      height % patch != 0 || width % patch != 0)
    throw std::invalid_argument(
        "patch_embed_forward: image " + std::to_string(height) + "x" + std::to_string(width) + "x" +
        std::to_string(channels) + " is not a whole number of " + std::to_string(patch) + "x" +
        std::to_string(patch) + " patches (embed " + std::to_string(embed) + ")");
  if ((image_f32 == nullptr) == (image_u8 == nullptr))
    throw std::invalid_argument("patch_embed_forward: give exactly one of image_f32 and image_u8");
  if (image_u8 && (!mean || !std))
    throw std::invalid_argument("patch_embed_forward: a uint8 image needs mean and std");
  if (batch == 0) return;
  int num_patches = (height / patch) * (width / patch);
  size_t smem = sizeof(float) * static_cast<size_t>(channels) * patch * patch;
  SIMT_LAUNCH(patch_embed_kernel, dim3(num_patches, batch), 128, smem, stream)
  (image_f32, image_u8, mean, std, channels, height, width, patch, weight, bias, pos, embed, out);
  simt::check_launch("patch_embed_forward");
}

static int gelu_blocks(long n) { return static_cast<int>(n / 256 + 1 < 2048 ? n / 256 + 1 : 2048); }

void bias_gelu_forward(const float* x, const float* bias, int rows, int dim, float* y,
                       void* stream) {
  if (rows < 0 || dim <= 0)
    throw std::invalid_argument("bias_gelu_forward: bad shape " + std::to_string(rows) + "x" +
                                std::to_string(dim));
  long total = static_cast<long>(rows) * dim;
  if (total == 0) return;
  SIMT_LAUNCH(bias_gelu_forward_kernel, gelu_blocks(total), 256, 0, stream)(x, bias, total, dim, y);
  simt::check_launch("bias_gelu_forward");
}

void bias_gelu_backward(const float* x, const float* bias, const float* dy, int rows, int dim,
                        float* dx, float* dbias, void* stream) {
  if (rows < 0 || dim <= 0)
    throw std::invalid_argument("bias_gelu_backward: bad shape " + std::to_string(rows) + "x" +
                                std::to_string(dim));
  long total = static_cast<long>(rows) * dim;
  if (total > 0) {
    SIMT_LAUNCH(bias_gelu_backward_kernel, gelu_blocks(total), 256, 0, stream)
    (x, bias, dy, total, dim, dx);
    simt::check_launch("bias_gelu_backward");
  }
  if (dbias) {
    SIMT_LAUNCH(column_sum_kernel, ceil_div(dim, 128), 128, 0, stream)(dx, rows, dim, dbias);
    simt::check_launch("bias_gelu_backward dbias");
  }
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
