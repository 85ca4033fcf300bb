// Scaled dot-product attention on the CPU, tiled with an online softmax: the
// scores exist one (BLOCK_Q, BLOCK_K) tile at a time, never as S x S.
//
// Layouts (contiguous): q [B, Sq, H, D], k and v [B, Sk, Hkv, D] with H a
// multiple of Hkv (grouped-query attention: query head h reads kv head
// h / (H / Hkv)), out [B, Sq, H, D], lse [B, H, Sq].
// causal: query i sits at absolute position i + (Sk - Sq) and sees keys j <= it
// (so a query block appended to a KV cache works unchanged).
// key_mask [B, Sk] (nullable): 0 marks a padding key that no query may see.
// A query that sees no key gets out = 0 and lse = -inf.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

struct AttentionShape {
  int64_t B, Sq, Sk, H, Hkv, D;
  bool causal;
  double scale;  // usually 1/sqrt(D)
};

template <class T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v,
                       const int32_t* key_mask, T* out, T* lse);

// Recomputes the probabilities from lse tile by tile (flash-attention style).
// Two passes, one owning dq rows and one owning dk/dv rows, so there are no
// races and the result does not depend on the thread count. dq, dk, dv are
// overwritten.
template <class T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v,
                        const int32_t* key_mask, const T* out, const T* lse, const T* dout, T* dq,
                        T* dk, T* dv);

// The naive version that materialises S x S scores per head (for tests and
// the memory benchmark only).
template <class T>
void attention_forward_naive(const AttentionShape& s, const T* q, const T* k, const T* v,
                             const int32_t* key_mask, T* out);

// One new query per row against a KV cache (generation's decode step), f32.
// q [B, H, D]; k_cache, v_cache [B, capacity, Hkv, D]; key_mask [B, capacity]
// (0 = padding or unwritten); only the first `length` slots are read. Each
// (row, kv head) scores its written, unmasked slots once per query head of
// its group, softmax in f32 with a double normaliser, out [B, H, D]. A row
// that sees no key gets zeros. Rows never mix, so a row's result does not
// depend on the rest of the batch.
void decode_attention(const float* q, const float* k_cache, const float* v_cache,
                      const int32_t* key_mask, float* out, int64_t B, int64_t H, int64_t Hkv,
                      int64_t D, int64_t capacity, int64_t length, double scale);

// The decode step when rows share a cached prompt prefix (the G samples of one
// prompt): each row's keys are its prefix row's first `prefix_length` slots
// followed by the first `length` slots of its own cache.
//   q [B, H, D]; prefix_k, prefix_v [P, prefix_capacity, Hkv, D] and
//   prefix_mask [P, prefix_capacity] (0 = padding), stored once per prompt;
//   prefix_row [B] in [0, P): the prompt of each row (rows of one prompt need
//   not be adjacent); k_cache, v_cache [B, capacity, Hkv, D] and key_mask
//   [B, capacity]: each row's own (generated) slots; out [B, H, D].
// Rows of one prompt are processed together, so each shared prefix key and
// value row is read from memory once per step and reused from L1 by every
// query of the group. Scores, softmax (one max over both parts, a double
// normaliser summed prefix first) and P.V (prefix rows, then own rows) follow
// decode_attention's order exactly, so the result is bit-identical to
// decode_attention on a cache holding a private copy of the prefix in front
// of the row's own slots. A row that sees no key gets zeros. Outputs are split
// across threads, never sums.
struct PrefixDecodeShape {
  int64_t B, H, Hkv, D;
  int64_t prefixes, prefix_capacity, prefix_length;  // P, slots per prefix row, slots read
  int64_t capacity, length;                          // own slots per row, slots read
  double scale;
};
void decode_attention_shared_prefix(const PrefixDecodeShape& s, const float* q,
                                    const float* prefix_k, const float* prefix_v,
                                    const int32_t* prefix_mask, const int64_t* prefix_row,
                                    const float* k_cache, const float* v_cache,
                                    const int32_t* key_mask, float* out);

}  // namespace visplay::kernels::cpu
