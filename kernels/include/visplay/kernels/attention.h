// Flash attention forward and backward on tensor cores (mma.sync m16n8k16 bf16): tiles in
// shared memory, online softmax, never a q_len x kv_len matrix in global memory.
// Declared for both builds of kernels/cuda/attention.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_ATTENTION_H_
#define VISPLAY_KERNELS_ATTENTION_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/attention.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/attention.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

struct AttentionShape {
  int batch = 1, q_len = 1, kv_len = 1;
  int q_heads = 1, kv_heads = 1;  // GQA: q_heads a multiple of kv_heads
  int head_dim = 64;              // 64, 80 (Qwen2.5-VL ViT) or 128
  bool causal = false;            // query i sees keys j <= i + (kv_len - q_len)
  float scale = 0.125f;           // usually 1 / sqrt(head_dim)
  // [batch] device array or nullptr: keys j < key_starts[b] are padding (left-padded
  // batches, as the model builds them). Combines with key_lengths (right padding).
  const int* key_starts = nullptr;
};

// q[batch, q_len, q_heads, head_dim], k and v [batch, kv_len, kv_heads, head_dim], bf16
// (raw bits). key_lengths[batch] (or nullptr): keys j >= key_lengths[b] are padding.
// Writes out[batch, q_len, q_heads, head_dim] (f32) and lse[batch, q_heads, q_len], the
// log-sum-exp of each row's scaled scores (-inf, with out = 0, for a row with no key).
void flash_attention_forward(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                             const int* key_lengths, const AttentionShape& shape, float* out,
                             float* lse, void* stream);

// From dout (f32, shaped like out) and the forward's out and lse: dq (like q), dk and dv
// (like k), all f32 and overwritten. delta[batch * q_heads * q_len] is scratch the
// caller provides (rowsum(dout * out)). Deterministic: no atomics (dq and dk/dv come
// from two kernels that each recompute the probabilities).
void flash_attention_backward(const uint16_t* q, const uint16_t* k, const uint16_t* v,
                              const int* key_lengths, const AttentionShape& shape, const float* out,
                              const float* dout, const float* lse, float* delta, float* dq,
                              float* dk, float* dv, void* stream);

#endif
