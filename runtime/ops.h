// The differentiable ops. Each op checks its inputs (shape, dtype, device; the
// error names the op and the shapes), computes the forward with a kernel from
// kernels/, and records its backward rule, which is written next to the
// forward in the op's .cpp file.
//
// Floating ops accept f32, f64 and bf16; bf16 is computed in f32 and rounded
// on store. Index inputs (ids, targets, positions) are i32 or i64.
#pragma once
#include <vector>

#include "runtime/tensor.h"

namespace visplay {

// ---- elementwise, with numpy-style broadcasting (e.g. [B, S, N] + [N]) ----
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor scale(const Tensor& a, double s);
Tensor add_scalar(const Tensor& a, double s);
Tensor exp(const Tensor& a);
Tensor log(const Tensor& a);
Tensor neg(const Tensor& a);
inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator*(const Tensor& a, double s) { return scale(a, s); }

// Sums g down to `shape` over the dims that broadcasting expanded.
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

// ---- reductions ----
Tensor sum(const Tensor& a);  // all elements -> shape []
Tensor sum(const Tensor& a, int64_t dim, bool keepdim = false);
Tensor mean(const Tensor& a);
Tensor mean(const Tensor& a, int64_t dim, bool keepdim = false);

// ---- linear algebra ----
// a [..., M, K] @ b [..., K, N] (batch dims equal) or b [K, N] (shared).
// Transposed views are passed to BLAS without a copy.
Tensor matmul(const Tensor& a, const Tensor& b);
// x [..., in] @ w[out, in]^T + bias[out] (bias may be undefined).
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());

// ---- neural-network ops ----
Tensor embedding(const Tensor& weight, const Tensor& ids);  // [V, D], [...] -> [..., D]
Tensor rmsnorm(const Tensor& x, const Tensor& w, double eps);
Tensor layernorm(const Tensor& x, const Tensor& w, const Tensor& b, double eps);
// x [B, S, H, D], positions [B, S] or [S] (shared by the batch).
Tensor rope(const Tensor& x, const Tensor& positions, double base);
Tensor softmax(const Tensor& x);      // over the last dim
Tensor log_softmax(const Tensor& x);  // over the last dim
Tensor gelu(const Tensor& x);         // tanh approximation
Tensor silu(const Tensor& x);
Tensor swiglu(const Tensor& gate, const Tensor& up);  // silu(gate) * up

struct AttentionOptions {
  bool causal = true;
  double scale = 0;  // 0 means 1/sqrt(D)
  Tensor key_mask;   // [B, Sk] i32, 0 = padding key; may be undefined
};
// q [B, Sq, H, D], k, v [B, Sk, Hkv, D] -> [B, Sq, H, D]. See kernels/cpu/attention.h.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v,
                 const AttentionOptions& opt = {});

// The decode step (one query per row) over a KV cache whose rows read a shared prompt
// prefix (inference only, no autograd): q [B, 1, H, D]; prefix_k, prefix_v [P, prefix
// capacity, Hkv, D] and prefix_mask [P, prefix capacity] i32; prefix_row[b] in [0, P): the
// prompt of row b; k_cache, v_cache [B, capacity, Hkv, D] and key_mask [B, capacity] i32.
// Row b's keys: its prompt's first prefix_length slots, then its own first `length` slots.
// Returns [B, 1, H, D] f32 (zeros for a row with no visible key). On the cpu (f32 caches)
// kernels/cpu's decode_attention_shared_prefix; on sim/cuda (f32 or bf16 caches, masks on
// the host or the device) the kernel of kernels/cuda/attention.cu: each prompt's prefix is
// stored and read once for all its rows, never copied per row.
// Head dims up to kDeviceDecodeMaxHeadDim on sim/cuda (larger ones are an error there).
constexpr int64_t kDeviceDecodeMaxHeadDim = 128;
Tensor decode_attention_shared_prefix(const Tensor& q, const Tensor& prefix_k,
                                      const Tensor& prefix_v, const Tensor& prefix_mask,
                                      int64_t prefix_length, const std::vector<int64_t>& prefix_row,
                                      const Tensor& k_cache, const Tensor& v_cache,
                                      const Tensor& key_mask, int64_t length);

// Mean cross-entropy of logits [N, V] against targets [N]; rows whose target
// is ignore_index do not count.
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, int64_t ignore_index = -100);

// ---- shape ops ----
Tensor concat(const std::vector<Tensor>& parts, int64_t dim);
// out[..., i] = x[..., index[..., i]] along `dim` (torch.gather semantics).
Tensor gather(const Tensor& x, int64_t dim, const Tensor& index);

}  // namespace visplay

namespace visplay {

// The fused LM-head log-prob: for hidden [..., D], head weight [V, D] and
// targets [...], returns log softmax(hidden @ W^T)[target] per token, and the
// entropy of that distribution (no gradient), without ever holding the full
// [tokens, V] logits: the vocabulary is processed `chunk` columns at a time
// with an online log-sum-exp, and the backward recomputes each chunk.
struct TokenLogprobs {
  Tensor logprobs;  // [...], differentiable w.r.t. hidden and head weight
  Tensor entropy;   // [...], a metric
};
TokenLogprobs token_logprobs(const Tensor& hidden, const Tensor& head_weight, const Tensor& targets,
                             int64_t chunk = 4096);

}  // namespace visplay

#include "kernels/cpu/grpo.h"

namespace visplay {

// GRPO advantages per group of G rollouts: rewards [groups, G] (f32) -> [groups, G].
Tensor group_advantages(const Tensor& rewards, const kernels::cpu::AdvantageOptions& opt = {});

// The GRPO loss (see kernels/cpu/grpo.h) over tokens [N, L]: logp is
// differentiable; old_logp, ref_logp, advantages (per token) and mask are
// constants. Returns the scalar loss; stats receive the token-mean parts.
Tensor grpo_loss(const Tensor& logp, const Tensor& old_logp, const Tensor& ref_logp,
                 const Tensor& advantages, const Tensor& mask,
                 const kernels::cpu::GrpoLossOptions& opt,
                 kernels::cpu::GrpoLossStats* stats = nullptr);

}  // namespace visplay

namespace visplay {

// ViT patch embedding, fused: images [B, C, H, W] (f32, already normalised),
// weight [E, C*P*P] (or a conv weight [E, C, P, P]), bias [E] or undefined,
// pos [N, E] or undefined -> [B, N, E] with N = (H/P)(W/P) patches in row-major order.
// Gradients flow to weight, bias and pos (not to the images).
Tensor patch_embed(const Tensor& images, const Tensor& weight, const Tensor& bias,
                   const Tensor& pos, int64_t patch);

}  // namespace visplay
