// Flash attention (FlashAttention-2 style) on mma.sync m16n8k16 bf16 tensor cores.
//
// A block has 4 warps; each warp owns 16 rows (queries in the forward and dq kernels,
// keys in the dk/dv kernel) and keeps their A fragments in registers. The other side
// streams through shared memory in tiles of 64 rows. Score tiles S = A B^T come out of
// the mma in the accumulator layout, which for two adjacent 8-column tiles is exactly
// the A-operand layout of the next mma (rows g, g+8; columns 2t, 2t+1, 2t+8, 2t+9), so
// P (or dS) feeds the second product from registers, rounded to bf16.
// The forward keeps a running max and sum per row (online softmax) and saves
// lse = max + log(sum). The backward recomputes P = exp(S - lse) twice, once in a kernel
// owning queries (dq) and once in one owning keys (dk, dv), instead of atomics.
// Head dims 64, 80 (the Qwen2.5-VL ViT: 1280 / 16 heads) and 128 are instantiated; the
// templates need only D % 16 == 0 (D / 16 mma k-steps, D / 8 output column tiles).
#include <stdexcept>
#include <string>

#include "kernels/cuda/attention.cuh"
#include "visplay/kernels/attention.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

// A fragments of 16 rows x D of a row-major bf16 matrix (rows past `rows` are zero).
template <int D>
__device__ __forceinline__ void load_a_fragments(uint32_t frag[D / 16][4],
                                                 const unsigned short* base, long row_stride,
                                                 int row0, int rows) {
  int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (int kk = 0; kk < D / 16; ++kk)
    for (int r = 0; r < 4; ++r) {
      int row = row0 + g + (r & 1) * 8, col = kk * 16 + 2 * t + (r >> 1) * 8;
      const unsigned short* p = base + row * row_stride + col;
      frag[kk][r] = row < rows ? pack_bf16(p[0], p[1]) : 0u;
    }
}

// The same from an f32 matrix, rounded to bf16.
template <int D>
__device__ __forceinline__ void load_a_fragments_f32(uint32_t frag[D / 16][4], const float* base,
                                                     long row_stride, int row0, int rows) {
  int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (int kk = 0; kk < D / 16; ++kk)
    for (int r = 0; r < 4; ++r) {
      int row = row0 + g + (r & 1) * 8, col = kk * 16 + 2 * t + (r >> 1) * 8;
      const float* p = base + row * row_stride + col;
      frag[kk][r] = row < rows ? pack_floats_bf16(p[0], p[1]) : 0u;
    }
}

// tile[r][c] = rows [row0, row0 + 64) of a bf16 (or f32, rounded) matrix; zero past `rows`.
template <int D, class T>
__device__ __forceinline__ void load_tile(unsigned short (*tile)[D + kAttnPad], const T* base,
                                          long row_stride, int row0, int rows) {
  for (int e = threadIdx.x; e < kAttnCols * D; e += blockDim.x) {
    int r = e / D, c = e % D;
    unsigned short value = 0;
    if (row0 + r < rows) {
      if constexpr (sizeof(T) == 2)
        value = base[(row0 + r) * row_stride + c];
      else
        value = to_bf16_bits(base[(row0 + r) * row_stride + c]);
    }
    tile[r][c] = value;
  }
}

// s[n] = A (16 x D, fragments) times tile^T: 8 column tiles of 8 rows of `tile`. B[k][n]
// = tile[n][k], so each B register is two neighbours of one tile row.
template <int D>
__device__ __forceinline__ void score_tile(float s[8][4], const uint32_t a[D / 16][4],
                                           const unsigned short (*tile)[D + kAttnPad]) {
  int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (int n = 0; n < 8; ++n) {
    for (int i = 0; i < 4; ++i) s[n][i] = 0.0f;
    const unsigned short* row = tile[n * 8 + g];
    for (int kk = 0; kk < D / 16; ++kk) {
      uint32_t b[2] = {pack_bf16(row[kk * 16 + 2 * t], row[kk * 16 + 2 * t + 1]),
                       pack_bf16(row[kk * 16 + 2 * t + 8], row[kk * 16 + 2 * t + 9])};
      mma_m16n8k16_bf16(s[n], a[kk], b, s[n]);
    }
  }
}

// acc (16 x D) += P (16 x 64, accumulator layout) times tile (64 x D). B[k][n] =
// tile[k][n]: each B register is two rows of one tile column.
template <int D>
__device__ __forceinline__ void accumulate_product(float acc[D / 8][4], const float p[8][4],
                                                   const unsigned short (*tile)[D + kAttnPad]) {
  int lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  for (int kk = 0; kk < 4; ++kk) {
    uint32_t a[4] = {pack_floats_bf16(p[2 * kk][0], p[2 * kk][1]),
                     pack_floats_bf16(p[2 * kk][2], p[2 * kk][3]),
                     pack_floats_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                     pack_floats_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3])};
    int k0 = kk * 16 + 2 * t;
    for (int n = 0; n < D / 8; ++n) {
      int col = n * 8 + g;
      uint32_t b[2] = {pack_bf16(tile[k0][col], tile[k0 + 1][col]),
                       pack_bf16(tile[k0 + 8][col], tile[k0 + 9][col])};
      mma_m16n8k16_bf16(acc[n], a, b, acc[n]);
    }
  }
}

// The first non-padding key of batch b (left padding).
__device__ __forceinline__ int visible_key_start(const AttentionArgs& a, int b) {
  int n = a.key_starts ? a.key_starts[b] : 0;
  return n < 0 ? 0 : (n < a.kv_len ? n : a.kv_len);
}

__device__ __forceinline__ int visible_key_count(const AttentionArgs& a, int b) {
  int n = a.key_lengths ? a.key_lengths[b] : a.kv_len;
  return n < a.kv_len ? (n > 0 ? n : 0) : a.kv_len;
}

template <int D>
__global__ void flash_forward_kernel(AttentionArgs a, float* out, float* lse) {
  static_assert(D % 16 == 0, "head_dim must be a multiple of the mma k-step (16)");
  __shared__ unsigned short k_tile[kAttnCols][D + kAttnPad];
  __shared__ unsigned short v_tile[kAttnCols][D + kAttnPad];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  int b = blockIdx.z, h = blockIdx.y, kvh = h / (a.q_heads / a.kv_heads);
  int block_row0 = blockIdx.x * kAttnRows, row0 = block_row0 + warp * 16;
  int key_len = visible_key_count(a, b), key_start = visible_key_start(a, b);
  long q_stride = static_cast<long>(a.q_heads) * D, kv_stride = static_cast<long>(a.kv_heads) * D;
  const unsigned short* q = a.q + static_cast<long>(b) * a.q_len * q_stride + h * D;
  const unsigned short* k = a.k + static_cast<long>(b) * a.kv_len * kv_stride + kvh * D;
  const unsigned short* v = a.v + static_cast<long>(b) * a.kv_len * kv_stride + kvh * D;

  uint32_t qf[D / 16][4];
  load_a_fragments<D>(qf, q, q_stride, row0, a.q_len);
  float o[D / 8][4];
  for (int n = 0; n < D / 8; ++n)
    for (int i = 0; i < 4; ++i) o[n][i] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};  // rows g and g + 8
  // Tiles past the last key any row of this block can see are skipped (same for all warps).
  int key_end = key_len;
  if (a.causal) {
    int last_visible = block_row0 + kAttnRows - 1 + (a.kv_len - a.q_len);
    if (last_visible + 1 < key_end) key_end = last_visible + 1;
  }
  for (int k0 = 0; k0 < key_end; k0 += kAttnCols) {
    __syncthreads();  // the previous tiles are consumed
    load_tile<D>(k_tile, k, kv_stride, k0, a.kv_len);
    load_tile<D>(v_tile, v, kv_stride, k0, a.kv_len);
    __syncthreads();
    float s[8][4];
    score_tile<D>(s, qf, k_tile);
    for (int n = 0; n < 8; ++n)
      for (int i = 0; i < 4; ++i) {
        int row = row0 + g + (i / 2) * 8, key = k0 + n * 8 + 2 * t + (i % 2);
        s[n][i] = attention_visible(a, key_start, key_len, row, key) ? s[n][i] * a.scale : -INFINITY;
      }
    for (int r = 0; r < 2; ++r) {
      float tile_max = -INFINITY;
      for (int n = 0; n < 8; ++n) tile_max = fmaxf(tile_max, fmaxf(s[n][2 * r], s[n][2 * r + 1]));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(kFullMask, tile_max, 2));
      float m_new = fmaxf(m[r], tile_max);
      float correction = m_new == -INFINITY ? 1.0f : __expf(m[r] - m_new);
      float sum = 0.0f;
      for (int n = 0; n < 8; ++n)
        for (int j = 0; j < 2; ++j) {
          float p = m_new == -INFINITY ? 0.0f : __expf(s[n][2 * r + j] - m_new);
          s[n][2 * r + j] = p;
          sum += p;
        }
      sum += __shfl_xor_sync(kFullMask, sum, 1);
      sum += __shfl_xor_sync(kFullMask, sum, 2);
      l[r] = l[r] * correction + sum;
      m[r] = m_new;
      for (int n = 0; n < D / 8; ++n) {
        o[n][2 * r] *= correction;
        o[n][2 * r + 1] *= correction;
      }
    }
    accumulate_product<D>(o, s, v_tile);
  }
  for (int n = 0; n < D / 8; ++n)
    for (int i = 0; i < 4; ++i) {
      int r = i / 2, row = row0 + g + r * 8, col = n * 8 + 2 * t + (i % 2);
      if (row < a.q_len)
        out[(static_cast<long>(b) * a.q_len + row) * q_stride + h * D + col] =
            l[r] > 0.0f ? o[n][i] / l[r] : 0.0f;
    }
  if (t == 0)
    for (int r = 0; r < 2; ++r) {
      int row = row0 + g + r * 8;
      if (row < a.q_len)
        lse[(static_cast<long>(b) * a.q_heads + h) * a.q_len + row] =
            l[r] > 0.0f ? m[r] + __logf(l[r]) : -INFINITY;
    }
}

// delta = rowsum(dout * out), one warp per (batch, query, head) row; stored [b, h, i].
__global__ void flash_delta_kernel(const float* out, const float* dout, int rows, int q_len,
                                   int q_heads, int head_dim, float* delta) {
  int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x % 32;
  if (row >= rows) return;  // whole warps
  const float* o = out + static_cast<long>(row) * head_dim;
  const float* d = dout + static_cast<long>(row) * head_dim;
  float acc = 0.0f;
  for (int c = lane; c < head_dim; c += 32) acc += o[c] * d[c];
  acc = warp_sum(acc);
  int h = row % q_heads, i = row / q_heads % q_len, b = row / q_heads / q_len;
  if (lane == 0) delta[(static_cast<long>(b) * q_heads + h) * q_len + i] = acc;
}

template <int D>
__global__ void flash_backward_dq_kernel(AttentionArgs a, const float* dout, const float* lse,
                                         const float* delta, float* dq) {
  __shared__ unsigned short k_tile[kAttnCols][D + kAttnPad];
  __shared__ unsigned short v_tile[kAttnCols][D + kAttnPad];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  int b = blockIdx.z, h = blockIdx.y, kvh = h / (a.q_heads / a.kv_heads);
  int block_row0 = blockIdx.x * kAttnRows, row0 = block_row0 + warp * 16;
  int key_len = visible_key_count(a, b), key_start = visible_key_start(a, b);
  long q_stride = static_cast<long>(a.q_heads) * D, kv_stride = static_cast<long>(a.kv_heads) * D;
  long q_offset = static_cast<long>(b) * a.q_len * q_stride + h * D;
  const unsigned short* k = a.k + static_cast<long>(b) * a.kv_len * kv_stride + kvh * D;
  const unsigned short* v = a.v + static_cast<long>(b) * a.kv_len * kv_stride + kvh * D;

  uint32_t qf[D / 16][4], dof[D / 16][4];
  load_a_fragments<D>(qf, a.q + q_offset, q_stride, row0, a.q_len);
  load_a_fragments_f32<D>(dof, dout + q_offset, q_stride, row0, a.q_len);
  float row_lse[2], row_delta[2];
  for (int r = 0; r < 2; ++r) {
    int row = row0 + g + r * 8;
    long at = (static_cast<long>(b) * a.q_heads + h) * a.q_len + row;
    row_lse[r] = row < a.q_len ? lse[at] : -INFINITY;
    row_delta[r] = row < a.q_len ? delta[at] : 0.0f;
  }
  float acc[D / 8][4];
  for (int n = 0; n < D / 8; ++n)
    for (int i = 0; i < 4; ++i) acc[n][i] = 0.0f;
  int key_end = key_len;
  if (a.causal) {
    int last_visible = block_row0 + kAttnRows - 1 + (a.kv_len - a.q_len);
    if (last_visible + 1 < key_end) key_end = last_visible + 1;
  }
  for (int k0 = 0; k0 < key_end; k0 += kAttnCols) {
    __syncthreads();
    load_tile<D>(k_tile, k, kv_stride, k0, a.kv_len);
    load_tile<D>(v_tile, v, kv_stride, k0, a.kv_len);
    __syncthreads();
    float s[8][4], dp[8][4];
    score_tile<D>(s, qf, k_tile);
    score_tile<D>(dp, dof, v_tile);
    for (int n = 0; n < 8; ++n)
      for (int i = 0; i < 4; ++i) {
        int r = i / 2, row = row0 + g + r * 8, key = k0 + n * 8 + 2 * t + (i % 2);
        bool live = attention_visible(a, key_start, key_len, row, key) && row_lse[r] != -INFINITY;
        float p = live ? __expf(s[n][i] * a.scale - row_lse[r]) : 0.0f;
        s[n][i] = p * (dp[n][i] - row_delta[r]);  // dS
      }
    accumulate_product<D>(acc, s, k_tile);
  }
  for (int n = 0; n < D / 8; ++n)
    for (int i = 0; i < 4; ++i) {
      int row = row0 + g + (i / 2) * 8, col = n * 8 + 2 * t + (i % 2);
      if (row < a.q_len) dq[q_offset + row * q_stride + col] = acc[n][i] * a.scale;
    }
}

template <int D>
__global__ void flash_backward_dkdv_kernel(AttentionArgs a, const float* dout, const float* lse,
                                           const float* delta, float* dk, float* dv) {
  __shared__ unsigned short q_tile[kAttnCols][D + kAttnPad];
  __shared__ unsigned short do_tile[kAttnCols][D + kAttnPad];
  __shared__ float lse_tile[kAttnCols];
  __shared__ float delta_tile[kAttnCols];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  int b = blockIdx.z, kvh = blockIdx.y;
  int block_key0 = blockIdx.x * kAttnRows, key0 = block_key0 + warp * 16;
  int key_len = visible_key_count(a, b), key_start = visible_key_start(a, b);
  long q_stride = static_cast<long>(a.q_heads) * D, kv_stride = static_cast<long>(a.kv_heads) * D;
  long kv_offset = static_cast<long>(b) * a.kv_len * kv_stride + kvh * D;

  uint32_t kf[D / 16][4], vf[D / 16][4];
  load_a_fragments<D>(kf, a.k + kv_offset, kv_stride, key0, a.kv_len);
  load_a_fragments<D>(vf, a.v + kv_offset, kv_stride, key0, a.kv_len);
  float dk_acc[D / 8][4], dv_acc[D / 8][4];
  for (int n = 0; n < D / 8; ++n)
    for (int i = 0; i < 4; ++i) dk_acc[n][i] = dv_acc[n][i] = 0.0f;
  // Causal: queries before block_key0 - (kv_len - q_len) see none of this block's keys.
  int q_begin = 0;
  if (a.causal) {
    int first = block_key0 - (a.kv_len - a.q_len);
    q_begin = first > 0 ? first / kAttnCols * kAttnCols : 0;
  }
  // Only padding keys in this block: their gradients are zero.
  if (block_key0 >= key_len || block_key0 + kAttnRows <= key_start) q_begin = a.q_len;
  int group = a.q_heads / a.kv_heads;
  for (int h = kvh * group; h < (kvh + 1) * group; ++h) {
    long q_offset = static_cast<long>(b) * a.q_len * q_stride + h * D;
    const float* head_lse = lse + (static_cast<long>(b) * a.q_heads + h) * a.q_len;
    const float* head_delta = delta + (static_cast<long>(b) * a.q_heads + h) * a.q_len;
    for (int q0 = q_begin; q0 < a.q_len; q0 += kAttnCols) {
      __syncthreads();
      load_tile<D>(q_tile, a.q + q_offset, q_stride, q0, a.q_len);
      load_tile<D>(do_tile, dout + q_offset, q_stride, q0, a.q_len);
      for (int i = threadIdx.x; i < kAttnCols; i += blockDim.x) {
        lse_tile[i] = q0 + i < a.q_len ? head_lse[q0 + i] : -INFINITY;
        delta_tile[i] = q0 + i < a.q_len ? head_delta[q0 + i] : 0.0f;
      }
      __syncthreads();
      float s[8][4], dp[8][4];  // transposed: rows are keys, columns queries
      score_tile<D>(s, kf, q_tile);
      score_tile<D>(dp, vf, do_tile);
      for (int n = 0; n < 8; ++n)
        for (int i = 0; i < 4; ++i) {
          int key = key0 + g + (i / 2) * 8, col = n * 8 + 2 * t + (i % 2), query = q0 + col;
          bool live = attention_visible(a, key_start, key_len, query, key) && lse_tile[col] != -INFINITY;
          float p = live ? __expf(s[n][i] * a.scale - lse_tile[col]) : 0.0f;
          s[n][i] = p;
          dp[n][i] = p * (dp[n][i] - delta_tile[col]);  // dS^T
        }
      accumulate_product<D>(dv_acc, s, do_tile);
      accumulate_product<D>(dk_acc, dp, q_tile);
    }
  }
  for (int n = 0; n < D / 8; ++n)
    for (int i = 0; i < 4; ++i) {
      int key = key0 + g + (i / 2) * 8, col = n * 8 + 2 * t + (i % 2);
      if (key < a.kv_len) {
        dk[kv_offset + key * kv_stride + col] = dk_acc[n][i] * a.scale;
        dv[kv_offset + key * kv_stride + col] = dv_acc[n][i];
      }
    }
}

// ---------------------------------------------------------------------------------------
// Decode over a shared prompt prefix (one new query per row).
//
// Block (query chunk c, kv head hk, prompt p), 8 warps: warp w owns query c * 8 + w of the
// prompt's (rows x query heads of hk), i.e. member m = query / group and head
// hk * group + query % group; its head dims sit in registers, d = lane + 32 i.
// A row's keys are numbered as in a private copy: prefix slots 0 .. Lp-1, then its own
// slots as Lp, Lp + 1, ... The keys go by in tiles of 32 of that numbering; in each tile
//   prefix keys: staged by the whole block in shared memory (as f32; key rows padded by one
//     float against bank conflicts), so a prefix row is read from global memory once per
//     block (8 queries) instead of once per query, and never copied per sample;
//   own keys: read by the warp straight from its row's cache (no other query reads them);
// lane j scores key j of the tile (a sequential f32 dot over d) and the tile folds into one
// online softmax per query (running max m, sum l; acc rescaled by exp(m_old - m_new)).
// out = acc / l, zeros when no key is visible. Tiles, dots and folds depend only on the
// numbering, so a shared prefix gives bit for bit what a private copy gives
// (prefix_length 0, the prompt in the row's own slots). The products that differ between
// the two parts' code (the dot, the value accumulation) are explicit fmaf: a compiler's
// contraction choice (nvcc's default, gcc's for C++) could otherwise differ between them.

__device__ __forceinline__ float decode_load(const float* p, long i) { return p[i]; }
__device__ __forceinline__ float decode_load(const unsigned short* p, long i) {
  return __uint_as_float(static_cast<unsigned>(p[i]) << 16);
}

template <class T>
__global__ void decode_shared_prefix_kernel(PrefixDecodeArgs a, float* out) {
  const int D = a.head_dim, k_row = D + 1;
  SIMT_DYNAMIC_SHARED(float, smem);
  float* q_s = smem;                       // [kDecodeWarps][D]: each warp's query
  float* k_s = q_s + kDecodeWarps * D;     // [kDecodeKeys][D + 1]: prefix keys of the tile
  float* v_s = k_s + kDecodeKeys * k_row;  // [kDecodeKeys][D]: prefix values of the tile
  __shared__ int mask_s[kDecodeKeys];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int p = blockIdx.z, hk = blockIdx.y, group = a.q_heads / a.kv_heads;
  const int first = a.member_first[p], rows = a.member_first[p + 1] - first;
  const int query = blockIdx.x * kDecodeWarps + warp;
  const bool active = query < rows * group;  // the same for the whole warp
  const int b = active ? a.members[first + query / group] : 0;
  const int h = hk * group + query % group;
  const int Lp = a.prefix_length, total = a.prefix_length + a.length;
  const long kv_stride = static_cast<long>(a.kv_heads) * D;
  const T* prefix_k = static_cast<const T*>(a.prefix_k);
  const T* prefix_v = static_cast<const T*>(a.prefix_v);
  const T* k_cache = static_cast<const T*>(a.k_cache);
  const T* v_cache = static_cast<const T*>(a.v_cache);
  const long prefix0 = static_cast<long>(p) * a.prefix_capacity * kv_stride + hk * D;
  const long own0 = static_cast<long>(b) * a.capacity * kv_stride + hk * D;  // own slot 0
  const int* own_mask = a.key_mask + static_cast<long>(b) * a.capacity;
  if (active)
    for (int d = lane; d < D; d += 32)
      q_s[warp * D + d] = a.q[(static_cast<long>(b) * a.q_heads + h) * D + d];
  __syncwarp();
  const float* qv = q_s + warp * D;
  float acc[kDecodeLaneDims] = {0.0f, 0.0f, 0.0f, 0.0f};
  float m = -INFINITY, l = 0.0f;

  for (int t0 = 0; t0 < total; t0 += kDecodeKeys) {
    const int keys = total - t0 < kDecodeKeys ? total - t0 : kDecodeKeys;
    // Stage the tile's prefix keys (the whole block: Lp is the same for every warp).
    if (t0 < Lp) {
      const int staged = Lp - t0 < kDecodeKeys ? Lp - t0 : kDecodeKeys;
      __syncthreads();  // the previous tile is no longer read
      for (int e = threadIdx.x; e < staged * D; e += blockDim.x) {
        const int r = e / D, c = e % D;
        const long at = prefix0 + (t0 + r) * kv_stride + c;
        k_s[r * k_row + c] = decode_load(prefix_k, at);
        v_s[r * D + c] = decode_load(prefix_v, at);
      }
      if (static_cast<int>(threadIdx.x) < staged)
        mask_s[threadIdx.x] =
            a.prefix_mask[static_cast<long>(p) * a.prefix_capacity + t0 + threadIdx.x];
      __syncthreads();
    }
    if (!active) continue;
    // Lane j scores key t0 + j.
    const int key = t0 + lane;
    float s = -INFINITY;
    if (lane < keys) {
      float dot = 0.0f;
      if (key < Lp) {
        if (mask_s[lane]) {
          for (int d = 0; d < D; ++d) dot = fmaf(qv[d], k_s[lane * k_row + d], dot);
          s = dot * a.scale;
        }
      } else if (own_mask[key - Lp]) {
        const long at = own0 + (key - Lp) * kv_stride;
        for (int d = 0; d < D; ++d) dot = fmaf(qv[d], decode_load(k_cache, at + d), dot);
        s = dot * a.scale;
      }
    }
    // Fold the tile into the running softmax (warp-uniform branches).
    const float tile_max = warp_max(s);
    if (tile_max == -INFINITY) continue;
    const float m_new = fmaxf(m, tile_max);
    const float alpha = m == -INFINITY ? 0.0f : expf(m - m_new);
    const float e = s == -INFINITY ? 0.0f : expf(s - m_new);
    l = l * alpha + warp_sum(e);
    for (int i = 0; i < kDecodeLaneDims; ++i) acc[i] *= alpha;
    for (int j = 0; j < keys; ++j) {
      const float pj = __shfl_sync(kFullMask, e, j);
      if (pj == 0.0f) continue;  // a masked key: its value is never read
      const int kj = t0 + j;
      for (int i = 0; i < kDecodeLaneDims; ++i) {
        const int d = lane + 32 * i;
        if (d >= D) continue;
        const float value =
            kj < Lp ? v_s[j * D + d] : decode_load(v_cache, own0 + (kj - Lp) * kv_stride + d);
        acc[i] = fmaf(pj, value, acc[i]);
      }
    }
    m = m_new;
  }
  if (!active) return;
  float* o = out + (static_cast<long>(b) * a.q_heads + h) * D;
  for (int i = 0; i < kDecodeLaneDims; ++i) {
    const int d = lane + 32 * i;
    if (d < D) o[d] = l > 0.0f ? acc[i] / l : 0.0f;
  }
}

static AttentionArgs attention_args(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                                    const int* key_lengths, const AttentionShape& s,
                                    const char* what) {
  bool ok = s.batch >= 0 && s.q_len >= 0 && s.kv_len >= 0 && s.q_heads > 0 && s.kv_heads > 0 &&
            s.q_heads % s.kv_heads == 0 &&
            (s.head_dim == 64 || s.head_dim == 80 || s.head_dim == 128);
  if (!ok)
    throw std::invalid_argument(
        std::string(what) + ": unsupported shape batch=" + std::to_string(s.batch) +
        " q_len=" + std::to_string(s.q_len) + " kv_len=" + std::to_string(s.kv_len) +
        " q_heads=" + std::to_string(s.q_heads) + " kv_heads=" + std::to_string(s.kv_heads) +
        " head_dim=" + std::to_string(s.head_dim) +
        " (head_dim 64, 80 or 128, q_heads a multiple of kv_heads)");
  return AttentionArgs{q,        k,         v,          key_lengths, s.batch,     s.q_len,
                       s.kv_len, s.q_heads, s.kv_heads, s.causal,    s.scale, s.key_starts};
}

void flash_attention_forward(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                             const int* key_lengths, const AttentionShape& shape, float* out,
                             float* lse, void* stream) {
  AttentionArgs args = attention_args(q, k, v, key_lengths, shape, "flash_attention_forward");
  if (shape.batch == 0 || shape.q_len == 0) return;
  dim3 grid(ceil_div(shape.q_len, kAttnRows), shape.q_heads, shape.batch);
  auto* kernel = shape.head_dim == 64   ? flash_forward_kernel<64>
                 : shape.head_dim == 80 ? flash_forward_kernel<80>
                                        : flash_forward_kernel<128>;
  SIMT_LAUNCH(kernel, grid, 128, 0, stream)(args, out, lse);
  simt::check_launch("flash_attention_forward");
}

void flash_attention_backward(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                              const int* key_lengths, const AttentionShape& shape, const float* out,
                              const float* dout, const float* lse, float* delta, float* dq,
                              float* dk, float* dv, void* stream) {
  AttentionArgs args = attention_args(q, k, v, key_lengths, shape, "flash_attention_backward");
  if (shape.batch == 0) return;
  int rows = shape.batch * shape.q_len * shape.q_heads;
  if (rows > 0) {
    SIMT_LAUNCH(flash_delta_kernel, ceil_div(rows, 4), 128, 0, stream)
    (out, dout, rows, shape.q_len, shape.q_heads, shape.head_dim, delta);
    simt::check_launch("flash_attention_backward delta");
    dim3 grid(ceil_div(shape.q_len, kAttnRows), shape.q_heads, shape.batch);
    auto* dq_kernel = shape.head_dim == 64   ? flash_backward_dq_kernel<64>
                      : shape.head_dim == 80 ? flash_backward_dq_kernel<80>
                                             : flash_backward_dq_kernel<128>;
    SIMT_LAUNCH(dq_kernel, grid, 128, 0, stream)(args, dout, lse, delta, dq);
    simt::check_launch("flash_attention_backward dq");
  }
  if (shape.kv_len > 0) {
    dim3 grid(ceil_div(shape.kv_len, kAttnRows), shape.kv_heads, shape.batch);
    auto* dkdv_kernel = shape.head_dim == 64   ? flash_backward_dkdv_kernel<64>
                        : shape.head_dim == 80 ? flash_backward_dkdv_kernel<80>
                                               : flash_backward_dkdv_kernel<128>;
    SIMT_LAUNCH(dkdv_kernel, grid, 128, 0, stream)(args, dout, lse, delta, dk, dv);
    simt::check_launch("flash_attention_backward dk dv");
  }
}

void decode_attention_shared_prefix(const PrefixDecodeShape& s, const float* q,
                                    const void* prefix_k, const void* prefix_v,
                                    const int* prefix_mask, const int* members,
                                    const int* member_first, const void* k_cache,
                                    const void* v_cache, const int* key_mask, float* out,
                                    void* stream) {
  const bool ok = s.batch >= 0 && s.q_heads > 0 && s.kv_heads > 0 && s.q_heads % s.kv_heads == 0 &&
                  s.head_dim > 0 && s.head_dim <= kDecodePrefixMaxHeadDim && s.prefixes >= 0 &&
                  s.prefix_length >= 0 && s.prefix_length <= s.prefix_capacity && s.length >= 0 &&
                  s.length <= s.capacity && s.max_rows >= 0 && s.max_rows <= s.batch &&
                  (s.batch == 0 || s.prefixes > 0);
  if (!ok)
    throw std::invalid_argument(
        "decode_attention_shared_prefix: unsupported shape batch=" + std::to_string(s.batch) +
        " q_heads=" + std::to_string(s.q_heads) + " kv_heads=" + std::to_string(s.kv_heads) +
        " head_dim=" + std::to_string(s.head_dim) + " prefixes=" + std::to_string(s.prefixes) +
        " prefix_length=" + std::to_string(s.prefix_length) + "/" +
        std::to_string(s.prefix_capacity) + " length=" + std::to_string(s.length) + "/" +
        std::to_string(s.capacity) + " max_rows=" + std::to_string(s.max_rows) +
        " (head_dim <= " + std::to_string(32 * kDecodeLaneDims) +
        ", q_heads a multiple of kv_heads, lengths within capacities)");
  if (s.batch == 0 || s.max_rows == 0) return;
  PrefixDecodeArgs args{
      q,          prefix_k, prefix_v,  prefix_mask, members,    member_first,      k_cache,
      v_cache,    key_mask, s.q_heads, s.kv_heads,  s.head_dim, s.prefix_capacity, s.prefix_length,
      s.capacity, s.length, s.scale};
  const int group = s.q_heads / s.kv_heads;
  dim3 grid(ceil_div(s.max_rows * group, kDecodeWarps), s.kv_heads, s.prefixes);
  const size_t smem = sizeof(float) * (static_cast<size_t>(kDecodeWarps) * s.head_dim +
                                       static_cast<size_t>(kDecodeKeys) * (s.head_dim + 1) +
                                       static_cast<size_t>(kDecodeKeys) * s.head_dim);
  auto* kernel =
      s.kv_bf16 ? decode_shared_prefix_kernel<unsigned short> : decode_shared_prefix_kernel<float>;
  SIMT_LAUNCH(kernel, grid, kDecodeWarps * 32, smem, stream)(args, out);
  simt::check_launch("decode_attention_shared_prefix");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
