// Flash attention kernels (launchers: visplay/kernels/attention.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

constexpr int kAttnRows = 64;  // query (or key) rows per block: 4 warps x 16
constexpr int kAttnCols = 64;  // keys (or queries) per shared-memory tile
constexpr int kAttnPad = 8;    // row padding of the shared tiles (bank conflicts)

// Arguments shared by the attention kernels.
struct AttentionArgs {
  const unsigned short* q;
  const unsigned short* k;
  const unsigned short* v;
  const int* key_lengths;
  int batch, q_len, kv_len, q_heads, kv_heads;
  bool causal;
  float scale;
  const int* key_starts;  // nullptr: no left padding
};

__device__ __forceinline__ uint32_t pack_bf16(unsigned short lo, unsigned short hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}
__device__ __forceinline__ unsigned short to_bf16_bits(float x) {
  return __bfloat16_as_ushort(__float2bfloat16(x));
}
__device__ __forceinline__ uint32_t pack_floats_bf16(float lo, float hi) {
  return pack_bf16(to_bf16_bits(lo), to_bf16_bits(hi));
}

// Whether query `row` may attend key `key` of batch b.
__device__ __forceinline__ bool attention_visible(const AttentionArgs& a, int key_start, int key_len,
                                                  int row, int key) {
  return key >= key_start && key < key_len && row < a.q_len &&
         (!a.causal || key <= row + (a.kv_len - a.q_len));
}

template <int D>
__global__ void flash_forward_kernel(AttentionArgs args, float* out, float* lse);
__global__ void flash_delta_kernel(const float* out, const float* dout, int rows, int q_len,
                                   int q_heads, int head_dim, float* delta);
template <int D>
__global__ void flash_backward_dq_kernel(AttentionArgs args, const float* dout, const float* lse,
                                         const float* delta, float* dq);
template <int D>
__global__ void flash_backward_dkdv_kernel(AttentionArgs args, const float* dout, const float* lse,
                                           const float* delta, float* dk, float* dv);

// Shared-prefix decode: queries (warps) per block, keys per shared tile, head dims a lane
// holds (head_dim <= 32 x kDecodeLaneDims).
constexpr int kDecodeWarps = 8;
constexpr int kDecodeKeys = 32;
constexpr int kDecodeLaneDims = 4;

struct PrefixDecodeArgs {
  const float* q;
  const void* prefix_k;
  const void* prefix_v;
  const int* prefix_mask;
  const int* members;
  const int* member_first;
  const void* k_cache;
  const void* v_cache;
  const int* key_mask;
  int q_heads, kv_heads, head_dim;
  int prefix_capacity, prefix_length, capacity, length;
  float scale;
};

template <class T>
__global__ void decode_shared_prefix_kernel(PrefixDecodeArgs a, float* out);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
