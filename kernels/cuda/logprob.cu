// Fused log-prob. Forward: a block owns 16 tokens and walks the whole vocabulary in
// chunks of 128; thread j keeps an online-softmax state (max, sum, logit-weighted sum)
// over the entries j, j+128, ... and the states are merged once at the end, so the
// vocabulary loop has no barrier. Backward: the logits are recomputed chunk by chunk;
// d z = dlogprob (onehot - p) - dentropy p (z - E[z]). dhidden is owned per token block,
// dweight per vocabulary block; each accumulates in place in a fixed order (no atomics).
#include <stdexcept>
#include <string>

#include "kernels/cuda/logprob.cuh"
#include "visplay/kernels/logprob.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void logprob_forward_kernel(const float* hidden, const float* weight, const int* targets,
                                       int tokens, int dim, int vocab, float* logprob,
                                       float* entropy, float* lse) {
  __shared__ SoftmaxState partial[kLogprobTokens][kLogprobChunk / 32];
  int token0 = blockIdx.x * kLogprobTokens;
  int count = tokens - token0 < kLogprobTokens ? tokens - token0 : kLogprobTokens;
  SoftmaxState state[kLogprobTokens];
  for (int t = 0; t < kLogprobTokens; ++t) state[t] = {-INFINITY, 0.0f, 0.0f};
  const float* block_hidden = hidden + static_cast<long>(token0) * dim;
  for (int v = threadIdx.x; v < vocab; v += kLogprobChunk) {
    float z[kLogprobTokens];
    token_logits(block_hidden, weight + static_cast<long>(v) * dim, count, dim, z);
    for (int t = 0; t < count; ++t) state[t] = softmax_merge(state[t], {z[t], 1.0f, z[t]});
  }
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int t = 0; t < kLogprobTokens; ++t) {
    for (int offset = 16; offset > 0; offset >>= 1) {
      SoftmaxState other = {__shfl_xor_sync(kFullMask, state[t].m, offset),
                            __shfl_xor_sync(kFullMask, state[t].s, offset),
                            __shfl_xor_sync(kFullMask, state[t].w, offset)};
      state[t] = softmax_merge(state[t], other);
    }
    if (lane == 0) partial[t][warp] = state[t];
  }
  __syncthreads();
  if (static_cast<int>(threadIdx.x) < count) {
    int t = threadIdx.x, token = token0 + t;
    SoftmaxState total = partial[t][0];
    for (int w = 1; w < kLogprobChunk / 32; ++w) total = softmax_merge(total, partial[t][w]);
    float log_sum = total.m + __logf(total.s);
    lse[token] = log_sum;
    if (entropy) entropy[token] = log_sum - total.w / total.s;
    int target = targets[token];
    if (target < 0) {
      logprob[token] = 0.0f;
    } else if (target >= vocab) {
      logprob[token] = NAN;
    } else {
      float z = dot_row(hidden + static_cast<long>(token) * dim,
                        weight + static_cast<long>(target) * dim, dim);
      logprob[token] = fminf(z - log_sum, 0.0f);  // rounding must not make it positive
    }
  }
}

// Tensor-core forward: 4 warps x 16 tokens per block. For each tile of 64 vocabulary
// rows, the logits S = H W^T (64 x 64) are accumulated over slices of 64 hidden dims
// staged in shared memory (the fragment layout is the one flash attention uses); each
// lane then folds its 16 logits per row into its online-softmax state and picks up the
// target's logit if it falls in its columns. The four lanes of a row merge at the end.
__global__ void logprob_forward_bf16_kernel(const unsigned short* hidden,
                                            const unsigned short* weight, const int* targets,
                                            int tokens, int dim, int vocab, float* logprob,
                                            float* entropy, float* lse) {
  __shared__ unsigned short h_tile[kLogprobMmaRows][kLogprobMmaK + 8];
  __shared__ unsigned short w_tile[kLogprobMmaCols][kLogprobMmaK + 8];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  int block_row0 = blockIdx.x * kLogprobMmaRows, row0 = block_row0 + warp * 16;
  int target[2];
  SoftmaxState state[2];
  float target_logit[2] = {-INFINITY, -INFINITY};
  for (int r = 0; r < 2; ++r) {
    int row = row0 + g + r * 8;
    target[r] = row < tokens ? targets[row] : -1;
    state[r] = {-INFINITY, 0.0f, 0.0f};
  }
  auto pack = [](unsigned short lo, unsigned short hi) {
    return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
  };
  for (int v0 = 0; v0 < vocab; v0 += kLogprobMmaCols) {
    float acc[8][4];
    for (int n = 0; n < 8; ++n)
      for (int i = 0; i < 4; ++i) acc[n][i] = 0.0f;
    for (int k0 = 0; k0 < dim; k0 += kLogprobMmaK) {
      __syncthreads();  // the previous slices are consumed
      for (int e = threadIdx.x; e < kLogprobMmaRows * kLogprobMmaK; e += blockDim.x) {
        int r = e / kLogprobMmaK, c = e % kLogprobMmaK;
        bool in_dim = k0 + c < dim;
        h_tile[r][c] = in_dim && block_row0 + r < tokens
                           ? hidden[static_cast<long>(block_row0 + r) * dim + k0 + c]
                           : 0;
        w_tile[r][c] =
            in_dim && v0 + r < vocab ? weight[static_cast<long>(v0 + r) * dim + k0 + c] : 0;
      }
      __syncthreads();
      int steps = (dim - k0 < kLogprobMmaK ? dim - k0 : kLogprobMmaK) / 16;
      for (int kk = 0; kk < steps; ++kk) {
        int c = kk * 16 + 2 * t;
        const unsigned short* top = h_tile[warp * 16 + g];
        const unsigned short* bottom = h_tile[warp * 16 + g + 8];
        uint32_t a[4] = {pack(top[c], top[c + 1]), pack(bottom[c], bottom[c + 1]),
                         pack(top[c + 8], top[c + 9]), pack(bottom[c + 8], bottom[c + 9])};
        for (int n = 0; n < 8; ++n) {
          const unsigned short* w = w_tile[n * 8 + g];
          uint32_t b[2] = {pack(w[c], w[c + 1]), pack(w[c + 8], w[c + 9])};
          mma_m16n8k16_bf16(acc[n], a, b, acc[n]);
        }
      }
    }
    for (int r = 0; r < 2; ++r) {
      float tile_max = -INFINITY;
      for (int n = 0; n < 8; ++n)
        for (int j = 0; j < 2; ++j) {
          int v = v0 + n * 8 + 2 * t + j;
          if (v < vocab) tile_max = fmaxf(tile_max, acc[n][2 * r + j]);
          if (v == target[r]) target_logit[r] = acc[n][2 * r + j];
        }
      if (tile_max == -INFINITY) continue;  // no column of this lane in the vocabulary
      float m_new = fmaxf(state[r].m, tile_max);
      float correction = __expf(state[r].m - m_new);
      float s = state[r].s * correction, w = state[r].w * correction;
      for (int n = 0; n < 8; ++n)
        for (int j = 0; j < 2; ++j) {
          int v = v0 + n * 8 + 2 * t + j;
          if (v >= vocab) continue;
          float z = acc[n][2 * r + j], e = __expf(z - m_new);
          s += e;
          w += e * z;
        }
      state[r] = {m_new, s, w};
    }
  }
  for (int r = 0; r < 2; ++r) {
    for (int offset = 1; offset < 4; offset <<= 1) {
      SoftmaxState other = {__shfl_xor_sync(kFullMask, state[r].m, offset),
                            __shfl_xor_sync(kFullMask, state[r].s, offset),
                            __shfl_xor_sync(kFullMask, state[r].w, offset)};
      state[r] = softmax_merge(state[r], other);
      target_logit[r] = fmaxf(target_logit[r], __shfl_xor_sync(kFullMask, target_logit[r], offset));
    }
    int row = row0 + g + r * 8;
    if (t == 0 && row < tokens) {
      float log_sum = state[r].m + __logf(state[r].s);
      lse[row] = log_sum;
      if (entropy) entropy[row] = log_sum - state[r].w / state[r].s;
      if (target[r] < 0)
        logprob[row] = 0.0f;
      else if (target[r] >= vocab)
        logprob[row] = NAN;
      else
        logprob[row] = fminf(target_logit[r] - log_sum, 0.0f);
    }
  }
}

// d loss / d z for one (token, vocabulary entry).
__device__ __forceinline__ float logprob_dz(float z, int v, int target, float lse_t,
                                            float entropy_t, float dlogprob_t, float dentropy_t) {
  float p = __expf(z - lse_t);
  float d = target >= 0 ? dlogprob_t * ((v == target ? 1.0f : 0.0f) - p) : 0.0f;
  if (dentropy_t != 0.0f) d -= dentropy_t * p * (z - (lse_t - entropy_t));
  return d;
}

__global__ void logprob_backward_hidden_kernel(const float* hidden, const float* weight,
                                               const int* targets, int tokens, int dim, int vocab,
                                               const float* lse, const float* entropy,
                                               const float* dlogprob, const float* dentropy,
                                               float* dhidden) {
  __shared__ float dz[kLogprobTokens][kLogprobChunk];
  int token0 = blockIdx.x * kLogprobTokens;
  int count = tokens - token0 < kLogprobTokens ? tokens - token0 : kLogprobTokens;
  for (int e = threadIdx.x; e < count * dim; e += blockDim.x)
    dhidden[static_cast<long>(token0) * dim + e] = 0.0f;
  for (int v0 = 0; v0 < vocab; v0 += kLogprobChunk) {
    int v = v0 + threadIdx.x;
    float z[kLogprobTokens];
    if (v < vocab)
      token_logits(hidden + static_cast<long>(token0) * dim, weight + static_cast<long>(v) * dim,
                   count, dim, z);
    for (int t = 0; t < count; ++t) {
      int token = token0 + t;
      dz[t][threadIdx.x] = v < vocab ? logprob_dz(z[t], v, targets[token], lse[token],
                                                  entropy ? entropy[token] : 0.0f, dlogprob[token],
                                                  dentropy ? dentropy[token] : 0.0f)
                                     : 0.0f;
    }
    __syncthreads();
    int rows = vocab - v0 < kLogprobChunk ? vocab - v0 : kLogprobChunk;
    for (int e = threadIdx.x; e < count * dim; e += blockDim.x) {
      int t = e / dim, d = e % dim;
      float acc = 0.0f;
      for (int j = 0; j < rows; ++j)
        acc = fmaf(dz[t][j], weight[static_cast<long>(v0 + j) * dim + d], acc);
      dhidden[static_cast<long>(token0 + t) * dim + d] += acc;
    }
    __syncthreads();
  }
}

__global__ void logprob_backward_weight_kernel(const float* hidden, const float* weight,
                                               const int* targets, int tokens, int dim, int vocab,
                                               const float* lse, const float* entropy,
                                               const float* dlogprob, const float* dentropy,
                                               float* dweight) {
  __shared__ float dz[kLogprobTokens][kLogprobChunk];
  int v0 = blockIdx.x * kLogprobChunk;
  int rows = vocab - v0 < kLogprobChunk ? vocab - v0 : kLogprobChunk;
  for (int e = threadIdx.x; e < rows * dim; e += blockDim.x)
    dweight[static_cast<long>(v0) * dim + e] = 0.0f;
  int v = v0 + threadIdx.x;
  for (int token0 = 0; token0 < tokens; token0 += kLogprobTokens) {
    int count = tokens - token0 < kLogprobTokens ? tokens - token0 : kLogprobTokens;
    float z[kLogprobTokens];
    if (v < vocab)
      token_logits(hidden + static_cast<long>(token0) * dim, weight + static_cast<long>(v) * dim,
                   count, dim, z);
    for (int t = 0; t < count; ++t) {
      int token = token0 + t;
      dz[t][threadIdx.x] = v < vocab ? logprob_dz(z[t], v, targets[token], lse[token],
                                                  entropy ? entropy[token] : 0.0f, dlogprob[token],
                                                  dentropy ? dentropy[token] : 0.0f)
                                     : 0.0f;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < rows * dim; e += blockDim.x) {
      int j = e / dim, d = e % dim;
      float acc = 0.0f;
      for (int t = 0; t < count; ++t)
        acc = fmaf(dz[t][j], hidden[static_cast<long>(token0 + t) * dim + d], acc);
      dweight[static_cast<long>(v0 + j) * dim + d] += acc;
    }
    __syncthreads();
  }
}

static void check_logprob_shape(const char* what, int tokens, int dim, int vocab) {
  if (tokens < 0 || dim <= 0 || vocab <= 0)
    throw std::invalid_argument(std::string(what) + ": bad shape tokens=" + std::to_string(tokens) +
                                " dim=" + std::to_string(dim) + " vocab=" + std::to_string(vocab));
}

void logprob_forward(const float* hidden, const float* weight, const int* targets, int tokens,
                     int dim, int vocab, float* logprob, float* entropy, float* lse, void* stream) {
  check_logprob_shape("logprob_forward", tokens, dim, vocab);
  if (tokens == 0) return;
  SIMT_LAUNCH(logprob_forward_kernel, ceil_div(tokens, kLogprobTokens), kLogprobChunk, 0, stream)
  (hidden, weight, targets, tokens, dim, vocab, logprob, entropy, lse);
  simt::check_launch("logprob_forward");
}

void logprob_forward_bf16(const uint16_t* hidden, const uint16_t* weight, const int* targets,
                          int tokens, int dim, int vocab, float* logprob, float* entropy,
                          float* lse, void* stream) {
  check_logprob_shape("logprob_forward_bf16", tokens, dim, vocab);
  if (dim % 16 != 0)
    throw std::invalid_argument("logprob_forward_bf16: dim " + std::to_string(dim) +
                                " is not a multiple of 16");
  if (tokens == 0) return;
  SIMT_LAUNCH(logprob_forward_bf16_kernel, ceil_div(tokens, kLogprobMmaRows), 128, 0, stream)
  (hidden, weight, targets, tokens, dim, vocab, logprob, entropy, lse);
  simt::check_launch("logprob_forward_bf16");
}

void logprob_backward(const float* hidden, const float* weight, const int* targets, int tokens,
                      int dim, int vocab, const float* lse, const float* entropy,
                      const float* dlogprob, const float* dentropy, float* dhidden, float* dweight,
                      void* stream) {
  check_logprob_shape("logprob_backward", tokens, dim, vocab);
  if (dentropy && !entropy)
    throw std::invalid_argument("logprob_backward: dentropy needs the forward's entropy");
  if (tokens > 0) {
    SIMT_LAUNCH(logprob_backward_hidden_kernel, ceil_div(tokens, kLogprobTokens), kLogprobChunk, 0,
                stream)
    (hidden, weight, targets, tokens, dim, vocab, lse, entropy, dlogprob, dentropy, dhidden);
    simt::check_launch("logprob_backward dhidden");
  }
  SIMT_LAUNCH(logprob_backward_weight_kernel, ceil_div(vocab, kLogprobChunk), kLogprobChunk, 0,
              stream)
  (hidden, weight, targets, tokens, dim, vocab, lse, entropy, dlogprob, dentropy, dweight);
  simt::check_launch("logprob_backward dweight");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
