// The vision-language model: a ViT encoder, a Qwen2-VL style projector
// (2x2 patch merger) and a Qwen2 decoder. The prompt carries one image-pad
// token per visual token; their embeddings are replaced by the projector's
// outputs. A text-only config (has_vision = false) is a plain Qwen2 LM.
//
// Parameter names: the decoder uses Hugging Face Qwen2 names
// (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ...,
// model.norm.weight, lm_head.weight); the vision tower lives under "vision."
// and the projector under "projector." (see register_parameters in vlm.cpp).
//
// Batches are left padded: attention_mask marks real tokens with 1; each
// sequence's positions count its real tokens only (position = index among
// real tokens), and padding keys are masked out of attention.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/params.h"
#include "runtime/ops.h"
#include "runtime/tensor.h"

namespace visplay {

// One batch for the full (training / scoring) forward.
struct VLMInput {
  Tensor input_ids;       // [B, S] i32 or i64, left padded
  Tensor attention_mask;  // [B, S] integer, 1 = real token, 0 = padding; undefined = all real
  // [N, 3, H, W] f32 normalised images, one per run of image-pad tokens, in
  // the order the runs appear (batch row by row). Undefined for text only.
  Tensor pixels;
};

// Per-layer key/value cache for incremental decoding, used by the demo VLM and
// by Qwen2.5-VL (model/qwen25vl.h). Rows share one write index (left padding
// keeps them aligned); each row has its own next position (for Qwen2.5-VL the
// text position after the image, all three M-RoPE components alike).
// k and v live on the model's device in its dtype; key_mask stays on the host
// (the CPU decode kernels read it there; the device attention reads its runs).
//
// Optionally the rows read a shared prefix first (share_prefix): the prompt's
// cached slots are stored once, in `prefix`, and row r attends to prefix row
// prefix_row[r]'s first prefix_length slots, then to its own `length` slots.
// The G samples of one prompt then hold and read only their own tokens.
struct KVCache {
  std::vector<Tensor> k, v;            // per layer [B, capacity, Hkv, head_dim], keys after RoPE
  Tensor key_mask;                     // [B, capacity] i32: 1 where a real token was written
  std::vector<int64_t> next_position;  // per row: the position of its next real token
  int64_t length = 0;                  // own slots written so far (same for every row)

  // The shared prefix (empty prefix_row: none). `prefix` holds its tensors by
  // reference (a Tensor copy shares storage) and is only read.
  struct SharedPrefix {
    std::vector<Tensor> k, v;  // per layer [P, prefix capacity, Hkv, head_dim]
    Tensor key_mask;           // [P, prefix capacity] i32
    int64_t length = 0;        // slots every row reads
  };
  SharedPrefix prefix;
  std::vector<int64_t> prefix_row;  // per row: its row of the shared prefix
  // 0, 1, ..., batch - 1: the rows a device decode step of an unshared cache reads as its own
  // "prefix" (built on first use).
  std::vector<int64_t> own_rows;

  int64_t batch() const { return key_mask.defined() ? key_mask.size(0) : 0; }
  int64_t capacity() const { return key_mask.defined() ? key_mask.size(1) : 0; }
  bool has_shared_prefix() const { return !prefix_row.empty(); }
  // Slots a row attends to: the shared prefix's and its own.
  int64_t total_length() const { return (has_shared_prefix() ? prefix.length : 0) + length; }
  static KVCache allocate(const DecoderConfig& config, int64_t batch, int64_t capacity,
                          DType dtype = DType::f32, Device device = kCPU);
  // A new cache whose row r is a copy of row rows[r] of this one (rows may
  // repeat), with room for `capacity` slots (>= length). A shared prefix
  // stays shared (each new row keeps its source row's prefix row).
  KVCache select_rows(const std::vector<int64_t>& rows, int64_t capacity) const;
  // A new cache whose row r reads this cache's row rows[r] as its shared
  // prefix (by reference, no copy; rows may repeat: the n samples of a
  // prompt), with room for `capacity` own slots, none written. This cache
  // must not itself have a shared prefix, and its first `length` slots must
  // not change while the new one is in use.
  KVCache share_prefix(const std::vector<int64_t>& rows, int64_t capacity) const;

  // Why this cache cannot take `new_tokens` more tokens of a `batch`-row input
  // through a decoder of `layers` layers; empty when it can.
  std::string misuse(int64_t batch, int64_t layers, int64_t new_tokens) const;
  // One layer's attention through the cache: writes k, v [B, S, Hkv, D] (keys
  // after RoPE) at slot `length` of layer `layer` and returns the attention of
  // q [B, S, H, D] over every slot the rows read (the shared prefix, then
  // their own; causal for the new ones) [B, S, H, D]. The caller has already
  // set key_mask for the new slots and advances `length` after the last
  // layer. Inference only. CPU f32 single-token steps use the decode kernels
  // (kernels/cpu/attention.h), sim/cuda ones (head dim <= kDeviceDecodeMaxHeadDim) the device
  // shared-prefix decode kernel (runtime decode_attention_shared_prefix); both
  // read only the written slots and the prefix in place.
  Tensor attend(int64_t layer, const Tensor& q, const Tensor& k, const Tensor& v);
};

// Positions for a left-padded batch: index among the real tokens of each row
// (0 for padding). mask [B, S] integer -> [B, S] i64.
Tensor positions_from_mask(const Tensor& mask);

class VLM {
 public:
  // Registers every parameter (uninitialised); call init_weights or load.
  explicit VLM(VLMConfig config);

  const VLMConfig& config() const { return config_; }
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  // Normal(0, 0.02) weights, norm scales 1, biases 0, from a seeded Rng.
  void init_weights(uint64_t seed);
  // A deep copy with its own weights (copying a VLM object shares them), e.g.
  // the frozen reference policy for the KL term.
  VLM clone() const;

  // ---- vision ----
  // pixels [N, 3, H, W] -> ViT patch features [N, patches, vision width].
  Tensor vision_features(const Tensor& pixels) const;
  // Patch features -> visual tokens [N, visual tokens, LM hidden].
  Tensor project(const Tensor& features) const;
  Tensor encode_images(const Tensor& pixels) const { return project(vision_features(pixels)); }

  // ---- decoder ----
  // Token embeddings with the image-pad rows replaced by `visual` [N, T, D]
  // (undefined when the batch has no images). Checks the pad count.
  Tensor embed(const Tensor& input_ids, const Tensor& visual) const;
  // The decoder stack on input embeddings [B, S, D] with positions [B, S] and
  // token_mask [B, S] (1 = real). Returns final-normed hidden states [B, S, D].
  // With a cache, the new keys/values are appended at cache->length (no
  // autograd through the cache: use it under NoGradGuard).
  Tensor decode(const Tensor& embeds, const Tensor& positions, const Tensor& token_mask,
                KVCache* cache = nullptr) const;
  // The LM head weight [V, D] (the embedding when tied).
  const Tensor& head_weight() const;
  // Activation recomputation: when on, decode without a cache in grad mode runs each decoder
  // layer through runtime checkpoint() (only layer inputs kept until backward, which
  // recomputes the layer). Gradients are bit-identical on cpu.
  void set_recompute_layers(bool on) { recompute_layers_ = on; }
  bool recompute_layers() const { return recompute_layers_; }

  // ---- full forwards ----
  Tensor hidden_states(const VLMInput& input) const;  // [B, S, D]
  Tensor logits(const VLMInput& input) const;         // [B, S, V]: for tests and small vocabularies
  // log p(targets[b, s] | tokens <= s) through the fused LM-head op, never
  // materialising the logits. targets [B, S] (any valid id where unused).
  TokenLogprobs token_logprobs(const VLMInput& input, const Tensor& targets) const;

 private:
  void register_parameters();
  Tensor attention_block(int64_t layer, const Tensor& x, const Tensor& positions,
                         const Tensor& token_mask, KVCache* cache) const;
  // attention_block, then the MLP half (RMSNorm, SwiGLU, residual).
  Tensor decoder_layer(int64_t layer, const Tensor& x, const Tensor& positions,
                       const Tensor& token_mask, KVCache* cache) const;

  VLMConfig config_;
  ParamStore params_;
  bool recompute_layers_ = false;
};

// Hugging Face name of decoder layer `layer`'s parameter `suffix`, e.g.
// decoder_param_name(3, "self_attn.q_proj.weight").
std::string decoder_param_name(int64_t layer, const std::string& suffix);

// The patch embedding is the fused runtime op patch_embed (runtime/ops.h).

}  // namespace visplay
