// Flash attention forward and backward on tensor cores (mma.sync m16n8k16 bf16): tiles in
// shared memory, online softmax, never a q_len x kv_len matrix in global memory. And the
// decode step over a KV cache whose rows share a stored prompt prefix (CUDA cores, f32).
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

// The decode step (one new query per row) when the rows of a prompt (its G samples) read one
// stored copy of the prompt's K/V: kernels/cpu/attention.h's decode_attention_shared_prefix
// on a device. Each row's keys are its prompt's first prefix_length slots followed by the
// first `length` slots of its own cache.
// The largest head dim it takes (each lane of a warp holds head_dim / 32 of a query's dims).
constexpr int kDecodePrefixMaxHeadDim = 128;
struct PrefixDecodeShape {
  int batch = 0, q_heads = 1, kv_heads = 1;
  int head_dim = 64;                                         // 1..kDecodePrefixMaxHeadDim
  int prefixes = 0, prefix_capacity = 0, prefix_length = 0;  // P, slots per prompt, slots read
  int capacity = 0, length = 0;                              // own slots per row, slots read
  int max_rows = 0;  // rows of the prompt with the most rows (sizes the grid)
  float scale = 0.125f;
  bool kv_bf16 = false;  // the caches hold bf16 (raw bits) instead of f32
};
// q [batch, q_heads, head_dim] f32; prefix_k, prefix_v [P, prefix_capacity, kv_heads,
// head_dim] and prefix_mask [P, prefix_capacity] (0 = padding); k_cache, v_cache [batch,
// capacity, kv_heads, head_dim] and key_mask [batch, capacity] (0 = padding or unwritten).
// The rows of prompt p are members[member_first[p] .. member_first[p + 1]) (member_first has
// P + 1 entries, members `batch`; the caller groups the rows, each row once). Writes out
// [batch, q_heads, head_dim] f32; a row that sees no key gets zeros. Softmax in f32 (online,
// per tile of 32 keys): equal to the CPU kernel to f32 rounding, not bit for bit. The keys
// are tiled by their index in the row's private-copy layout, so a shared prefix gives bit for
// bit what prefix_length 0 with the prompt in each row's own slots gives (the device decode
// step of an unshared cache).
void decode_attention_shared_prefix(const PrefixDecodeShape& shape, const float* q,
                                    const void* prefix_k, const void* prefix_v,
                                    const int* prefix_mask, const int* members,
                                    const int* member_first, const void* k_cache,
                                    const void* v_cache, const int* key_mask, float* out,
                                    void* stream);

#endif
