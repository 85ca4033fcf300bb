#include "model/vlm.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <stdexcept>
#include <string>

#include "kernels/cpu/attention.h"

namespace visplay {

namespace {

std::string vit_name(int64_t block, const std::string& suffix) {
  return "vision.blocks." + std::to_string(block) + "." + suffix;
}

[[noreturn]] void input_error(const std::string& what) { throw std::runtime_error("VLM: " + what); }

Tensor as_i64(const Tensor& t) {
  return t.dtype() == DType::i64 ? t.contiguous() : t.to(DType::i64);
}

// Attention of one new query per row over a KV cache, on the host: the
// runtime's attention op, fed the whole cache buffer, would score every slot
// (written or not) and transpose each key tile for a single query. The kernel
// (kernels::cpu::decode_attention) reads only the written, unmasked slots.
// q [B, 1, H, D]; k, v [B, cap, Hkv, D]; key_mask [B, cap] i32; `length`
// slots written. Inference only (no autograd).
Tensor cached_decode_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                               const Tensor& key_mask, int64_t length) {
  Tensor qc = q.contiguous();
  int64_t B = qc.size(0), H = qc.size(2), D = qc.size(3), cap = k.size(1), Hkv = k.size(2);
  Tensor out = Tensor::empty({B, 1, H, D});
  kernels::cpu::decode_attention(qc.data<float>(), k.data<float>(), v.data<float>(),
                                 key_mask.data<int32_t>(), out.data<float>(), B, H, Hkv, D, cap,
                                 length, 1.0 / std::sqrt(static_cast<double>(D)));
  return out;
}

// Each row's prefix slots [0, prefix length) of a shared-prefix tensor
// ([P, prefix capacity, ...]) followed by `own` ([B, n, ...]) along dim 1:
// the private-copy layout, for the general attention op (several new tokens
// per row, or a device the decode kernel does not cover).
Tensor with_prefix_rows(const Tensor& shared, const KVCache& cache, const Tensor& own) {
  std::vector<Tensor> rows;
  for (int64_t r : cache.prefix_row)
    rows.push_back(shared.slice(0, r, r + 1).slice(1, 0, cache.prefix.length));
  return concat({concat(rows, 0), own}, 1);
}

// cache[:, t:t+S] = src for a [B, cap, Hkv, D] cache and src [B, S, Hkv, D]:
// one memcpy per row when both are contiguous f32 on the CPU (every decode
// step of every layer writes here), the general strided copy otherwise.
void write_cache_slots(Tensor& cache, int64_t t, const Tensor& src) {
  const int64_t S = src.size(1);
  if (cache.device() != kCPU || src.device() != kCPU || cache.dtype() != DType::f32 ||
      src.dtype() != DType::f32 || !cache.is_contiguous() || !src.is_contiguous()) {
    cache.slice(1, t, t + S).copy_(src);
    return;
  }
  const int64_t B = src.size(0), cap = cache.size(1), row = src.size(2) * src.size(3);
  const float* from = src.data<float>();
  float* to = cache.data<float>();
  for (int64_t b = 0; b < B; ++b)
    std::memcpy(to + (b * cap + t) * row, from + b * S * row, S * row * sizeof(float));
}

// A cache buffer. Host caches are only ever read at written slots (the
// decode kernels, or the op on the written slice); on a device a single-token
// step hands the whole buffer to the attention op with the unwritten slots
// masked, and a kernel may still multiply a masked slot's zero probability by
// its value, so device buffers start zeroed rather than holding NaN garbage.
Tensor cache_buffer(const Shape& shape, DType dtype, Device device) {
  return device == kCPU ? Tensor::empty(shape, dtype, device) : Tensor::zeros(shape, dtype, device);
}

}  // namespace

std::string decoder_param_name(int64_t layer, const std::string& suffix) {
  return "model.layers." + std::to_string(layer) + "." + suffix;
}

// ---------------------------------------------------------------------------
KVCache KVCache::allocate(const DecoderConfig& c, int64_t batch, int64_t capacity, DType dtype,
                          Device device) {
  KVCache cache;
  const Shape shape = {batch, capacity, c.num_key_value_heads, c.head_dim()};
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    cache.k.push_back(cache_buffer(shape, dtype, device));
    cache.v.push_back(cache_buffer(shape, dtype, device));
  }
  cache.key_mask = Tensor::zeros({batch, capacity}, DType::i32);
  cache.next_position.assign(batch, 0);
  return cache;
}

// Copies the written part of each selected row; slots past `length` stay
// unwritten (masked) until the decoder fills them. Contiguous f32 host caches
// (every compaction of the CPU sampler) go row by row through memcpy; others
// (bf16, a device) through the runtime's strided copy.
KVCache KVCache::select_rows(const std::vector<int64_t>& rows, int64_t new_capacity) const {
  if (new_capacity < length)
    throw std::runtime_error("KVCache::select_rows: capacity " + std::to_string(new_capacity) +
                             " is below the cached length " + std::to_string(length));
  int64_t n = static_cast<int64_t>(rows.size());
  KVCache out;
  out.key_mask = Tensor::zeros({n, new_capacity}, DType::i32);
  out.length = length;
  for (int64_t r : rows)
    if (r < 0 || r >= batch())
      throw std::runtime_error("KVCache::select_rows: row " + std::to_string(r) +
                               " out of range for batch " + std::to_string(batch()));
  for (size_t l = 0; l < k.size(); ++l) {
    int64_t hkv = k[l].size(2), hd = k[l].size(3);
    Tensor nk = cache_buffer({n, new_capacity, hkv, hd}, k[l].dtype(), k[l].device());
    Tensor nv = cache_buffer({n, new_capacity, hkv, hd}, v[l].dtype(), v[l].device());
    const bool host_f32 = k[l].device() == kCPU && v[l].device() == kCPU &&
                          k[l].dtype() == DType::f32 && v[l].dtype() == DType::f32 &&
                          k[l].is_contiguous() && v[l].is_contiguous();
    if (host_f32) {
      size_t row_bytes = static_cast<size_t>(length * hkv * hd) * sizeof(float);
      const float* sk = k[l].data<float>();
      const float* sv = v[l].data<float>();
      int64_t src_stride = capacity() * hkv * hd, dst_stride = new_capacity * hkv * hd;
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(nk.data<float>() + i * dst_stride, sk + rows[i] * src_stride, row_bytes);
        std::memcpy(nv.data<float>() + i * dst_stride, sv + rows[i] * src_stride, row_bytes);
      }
    } else if (length > 0) {
      for (int64_t i = 0; i < n; ++i) {
        nk.slice(0, i, i + 1)
            .slice(1, 0, length)
            .copy_(k[l].slice(0, rows[i], rows[i] + 1).slice(1, 0, length));
        nv.slice(0, i, i + 1)
            .slice(1, 0, length)
            .copy_(v[l].slice(0, rows[i], rows[i] + 1).slice(1, 0, length));
      }
    }
    out.k.push_back(nk);
    out.v.push_back(nv);
  }
  Tensor mask = key_mask.contiguous();
  const int32_t* sm = mask.data<int32_t>();
  int32_t* dm = out.key_mask.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(dm + i * new_capacity, sm + rows[i] * capacity(), length * sizeof(int32_t));
    out.next_position.push_back(next_position[rows[i]]);
  }
  if (has_shared_prefix()) {
    out.prefix = prefix;
    for (int64_t r : rows) out.prefix_row.push_back(prefix_row[r]);
  }
  return out;
}

// The new cache's own slots start empty; its prefix is this cache's tensors
// (shared storage), so nothing of the prompt is copied.
KVCache KVCache::share_prefix(const std::vector<int64_t>& rows, int64_t new_capacity) const {
  if (has_shared_prefix())
    throw std::runtime_error("KVCache::share_prefix: this cache already reads a shared prefix");
  if (rows.empty()) throw std::runtime_error("KVCache::share_prefix: no rows");
  if (new_capacity < 0)
    throw std::runtime_error("KVCache::share_prefix: negative capacity " +
                             std::to_string(new_capacity));
  for (int64_t r : rows)
    if (r < 0 || r >= batch())
      throw std::runtime_error("KVCache::share_prefix: row " + std::to_string(r) +
                               " out of range for batch " + std::to_string(batch()));
  const int64_t n = static_cast<int64_t>(rows.size());
  KVCache out;
  for (size_t l = 0; l < k.size(); ++l) {
    out.k.push_back(
        cache_buffer({n, new_capacity, k[l].size(2), k[l].size(3)}, k[l].dtype(), k[l].device()));
    out.v.push_back(
        cache_buffer({n, new_capacity, v[l].size(2), v[l].size(3)}, v[l].dtype(), v[l].device()));
  }
  out.key_mask = Tensor::zeros({n, new_capacity}, DType::i32);
  for (int64_t r : rows) out.next_position.push_back(next_position[r]);
  out.prefix.k = k;
  out.prefix.v = v;
  out.prefix.key_mask = key_mask;
  out.prefix.length = length;
  out.prefix_row = rows;
  return out;
}

std::string KVCache::misuse(int64_t B, int64_t layers, int64_t S) const {
  if (batch() != B || k.size() != static_cast<size_t>(layers))
    return "KV cache of batch " + std::to_string(batch()) + " used with a batch of " +
           std::to_string(B);
  if (has_shared_prefix() && (prefix_row.size() != static_cast<size_t>(B) ||
                              prefix.k.size() != static_cast<size_t>(layers)))
    return "KV cache's shared prefix has " + std::to_string(prefix_row.size()) + " rows and " +
           std::to_string(prefix.k.size()) + " layers for a batch of " + std::to_string(B);
  for (int64_t r : prefix_row)  // the decode kernel indexes with these
    if (r < 0 || r >= prefix.key_mask.size(0))
      return "KV cache's prefix row " + std::to_string(r) + " is out of range for " +
             std::to_string(prefix.key_mask.size(0)) + " prefix rows";
  if (length + S > capacity())
    return "KV cache is full: " + std::to_string(length) + " + " + std::to_string(S) +
           " tokens exceed its capacity " + std::to_string(capacity());
  return "";
}

// The branches trade generality for speed: the CPU decode kernels for one
// f32 token per row; on a device one token per row goes through the
// shared-prefix decode kernel (head dims up to kDeviceDecodeMaxHeadDim; beyond, the attention op
// over the whole buffer, unwritten slots masked), reading the cache in place;
// otherwise (several tokens, a bf16 host cache) the causal op over the written
// slots. A shared prefix is read in place by the decode kernels (cpu,
// sim, cuda) and otherwise (several tokens per row) laid in front of each row's own slots
// (the private-copy layout).
Tensor KVCache::attend(int64_t l, const Tensor& q, const Tensor& k_new, const Tensor& v_new) {
  const int64_t S = q.size(1), t = length;
  write_cache_slots(k[l], t, k_new);
  write_cache_slots(v[l], t, v_new);
  const bool cpu_f32 = q.dtype() == DType::f32 && q.device() == kCPU &&
                       k[l].dtype() == DType::f32 && k[l].device() == kCPU;
  AttentionOptions opt;
  if (has_shared_prefix()) {
    // One token per row: the shared-prefix decode kernel (cpu f32; sim/cuda for head dims
    // up to kDeviceDecodeMaxHeadDim), which reads each prompt's prefix in place.
    const bool cpu_kernel =
        cpu_f32 && prefix.k[l].dtype() == DType::f32 && prefix.k[l].device() == kCPU;
    const bool device_kernel = q.device() != kCPU && q.size(3) <= kDeviceDecodeMaxHeadDim &&
                               prefix.k[l].dtype() == k[l].dtype();
    if (S == 1 && (cpu_kernel || device_kernel)) {
      return decode_attention_shared_prefix(q, prefix.k[l], prefix.v[l], prefix.key_mask,
                                            prefix.length, prefix_row, k[l], v[l], key_mask, t + 1)
          .to(q.dtype());
    }
    // Each row's prefix in front of its own slots; the new tokens are the
    // last S keys, so the causal mask lines up as in the plain case.
    opt.causal = true;
    opt.key_mask = with_prefix_rows(prefix.key_mask, *this, key_mask.slice(1, 0, t + S));
    return attention(q, with_prefix_rows(prefix.k[l], *this, k[l].slice(1, 0, t + S)),
                     with_prefix_rows(prefix.v[l], *this, v[l].slice(1, 0, t + S)), opt);
  }
  if (S == 1 && cpu_f32) return cached_decode_attention(q, k[l], v[l], key_mask, t + 1);
  // On a device, one token per row through the same decode kernel as a shared prefix (the
  // cache as its own prefix, none of it read as prefix), so a private copy of the prompt gives
  // what the shared prefix gives, bit for bit.
  if (S == 1 && q.device() != kCPU && q.size(3) <= kDeviceDecodeMaxHeadDim) {
    if (static_cast<int64_t>(own_rows.size()) != batch()) {  // once per cache, not per layer
      own_rows.resize(static_cast<size_t>(batch()));
      std::iota(own_rows.begin(), own_rows.end(), int64_t{0});
    }
    return decode_attention_shared_prefix(q, k[l], v[l], key_mask, 0, own_rows, k[l], v[l],
                                          key_mask, t + 1)
        .to(q.dtype());
  }
  if (S == 1 && q.device() != kCPU) {
    opt.causal = false;
    opt.key_mask = key_mask;
    return attention(q, k[l], v[l], opt);
  }
  opt.causal = true;
  opt.key_mask = key_mask.slice(1, 0, t + S);
  return attention(q, k[l].slice(1, 0, t + S), v[l].slice(1, 0, t + S), opt);
}

Tensor positions_from_mask(const Tensor& mask) {
  if (mask.dim() != 2) input_error("attention_mask must be [B, S], got " + shape_str(mask.shape()));
  Tensor m = as_i64(mask);
  int64_t B = m.size(0), S = m.size(1);
  Tensor pos = Tensor::empty({B, S}, DType::i64);
  const int64_t* pm = m.data<int64_t>();
  int64_t* pp = pos.data<int64_t>();
  for (int64_t b = 0; b < B; ++b) {
    int64_t next = 0;
    for (int64_t s = 0; s < S; ++s) pp[b * S + s] = pm[b * S + s] ? next++ : 0;
  }
  return pos;
}

// ---------------------------------------------------------------------------
VLM::VLM(VLMConfig config) : config_(std::move(config)) {
  config_.validate();
  register_parameters();
}

// Insertion order here is the initialisation order and the checkpoint order.
void VLM::register_parameters() {
  const DecoderConfig& d = config_.decoder;
  int64_t D = d.hidden_size, hd = d.head_dim();
  int64_t q_out = d.num_attention_heads * hd, kv_out = d.num_key_value_heads * hd;
  params_.add("model.embed_tokens.weight", {d.vocab_size, D}, Init::normal);
  if (config_.has_vision) {
    const VisionConfig& v = config_.vision;
    int64_t E = v.hidden_size;
    params_.add("vision.patch_embed.weight", {E, v.patch_dim()}, Init::normal);
    params_.add("vision.patch_embed.bias", {E}, Init::zeros);
    params_.add("vision.pos_embed", {v.num_patches(), E}, Init::normal);
    for (int64_t b = 0; b < v.depth; ++b) {
      params_.add(vit_name(b, "norm1.weight"), {E}, Init::ones);
      params_.add(vit_name(b, "norm1.bias"), {E}, Init::zeros);
      for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
        params_.add(vit_name(b, std::string("attn.") + proj + ".weight"), {E, E}, Init::normal);
        params_.add(vit_name(b, std::string("attn.") + proj + ".bias"), {E}, Init::zeros);
      }
      params_.add(vit_name(b, "norm2.weight"), {E}, Init::ones);
      params_.add(vit_name(b, "norm2.bias"), {E}, Init::zeros);
      params_.add(vit_name(b, "mlp.fc1.weight"), {v.mlp_hidden(), E}, Init::normal);
      params_.add(vit_name(b, "mlp.fc1.bias"), {v.mlp_hidden()}, Init::zeros);
      params_.add(vit_name(b, "mlp.fc2.weight"), {E, v.mlp_hidden()}, Init::normal);
      params_.add(vit_name(b, "mlp.fc2.bias"), {E}, Init::zeros);
    }
    params_.add("projector.norm.weight", {E}, Init::ones);
    params_.add("projector.norm.bias", {E}, Init::zeros);
    params_.add("projector.fc1.weight", {v.projector_hidden(), v.merged_dim()}, Init::normal);
    params_.add("projector.fc1.bias", {v.projector_hidden()}, Init::zeros);
    params_.add("projector.fc2.weight", {D, v.projector_hidden()}, Init::normal);
    params_.add("projector.fc2.bias", {D}, Init::zeros);
  }
  for (int64_t l = 0; l < d.num_hidden_layers; ++l) {
    auto name = [l](const char* s) { return decoder_param_name(l, s); };
    params_.add(name("input_layernorm.weight"), {D}, Init::ones);
    params_.add(name("self_attn.q_proj.weight"), {q_out, D}, Init::normal);
    params_.add(name("self_attn.q_proj.bias"), {q_out}, Init::zeros);
    params_.add(name("self_attn.k_proj.weight"), {kv_out, D}, Init::normal);
    params_.add(name("self_attn.k_proj.bias"), {kv_out}, Init::zeros);
    params_.add(name("self_attn.v_proj.weight"), {kv_out, D}, Init::normal);
    params_.add(name("self_attn.v_proj.bias"), {kv_out}, Init::zeros);
    params_.add(name("self_attn.o_proj.weight"), {D, q_out}, Init::normal);
    params_.add(name("post_attention_layernorm.weight"), {D}, Init::ones);
    params_.add(name("mlp.gate_proj.weight"), {d.intermediate_size, D}, Init::normal);
    params_.add(name("mlp.up_proj.weight"), {d.intermediate_size, D}, Init::normal);
    params_.add(name("mlp.down_proj.weight"), {D, d.intermediate_size}, Init::normal);
  }
  params_.add("model.norm.weight", {D}, Init::ones);
  if (!d.tie_word_embeddings) params_.add("lm_head.weight", {d.vocab_size, D}, Init::normal);
}

void VLM::init_weights(uint64_t seed) {
  Rng rng(seed);
  params_.initialize(rng, 0.02);
}

VLM VLM::clone() const {
  VLM copy(config_);
  copy.params_ = params_.clone();
  return copy;
}

const Tensor& VLM::head_weight() const {
  return config_.decoder.tie_word_embeddings ? params_.get("model.embed_tokens.weight")
                                             : params_.get("lm_head.weight");
}

// ---------------------------------------------------------------------------
// ViT: patch embedding + learned position table, then pre-norm blocks of
// bidirectional multi-head attention and a GELU MLP.
Tensor VLM::vision_features(const Tensor& pixels) const {
  if (!config_.has_vision) input_error("this model has no vision tower");
  const VisionConfig& v = config_.vision;
  if (pixels.dim() != 4 || pixels.size(1) != v.num_channels || pixels.size(2) != v.image_size ||
      pixels.size(3) != v.image_size)
    input_error("pixels must be [N, " + std::to_string(v.num_channels) + ", " +
                std::to_string(v.image_size) + ", " + std::to_string(v.image_size) + "], got " +
                shape_str(pixels.shape()));
  const ParamStore& p = params_;
  Tensor x = patch_embed(pixels, p.get("vision.patch_embed.weight"),
                         p.get("vision.patch_embed.bias"), p.get("vision.pos_embed"), v.patch_size);
  int64_t N = x.size(0), P = x.size(1), E = v.hidden_size, heads = v.num_heads;
  AttentionOptions bidirectional;
  bidirectional.causal = false;
  for (int64_t b = 0; b < v.depth; ++b) {
    auto w = [&](const char* s) -> const Tensor& { return p.get(vit_name(b, s)); };
    Tensor h = layernorm(x, w("norm1.weight"), w("norm1.bias"), v.layer_norm_eps);
    Tensor q =
        linear(h, w("attn.q_proj.weight"), w("attn.q_proj.bias")).reshape({N, P, heads, E / heads});
    Tensor k =
        linear(h, w("attn.k_proj.weight"), w("attn.k_proj.bias")).reshape({N, P, heads, E / heads});
    Tensor val =
        linear(h, w("attn.v_proj.weight"), w("attn.v_proj.bias")).reshape({N, P, heads, E / heads});
    Tensor a = attention(q, k, val, bidirectional).reshape({N, P, E});
    x = add(x, linear(a, w("attn.out_proj.weight"), w("attn.out_proj.bias")));
    h = layernorm(x, w("norm2.weight"), w("norm2.bias"), v.layer_norm_eps);
    h = gelu(linear(h, w("mlp.fc1.weight"), w("mlp.fc1.bias")));
    x = add(x, linear(h, w("mlp.fc2.weight"), w("mlp.fc2.bias")));
  }
  return x;
}

// Qwen2-VL patch merger: LayerNorm each patch, concatenate each m x m block
// of neighbouring patches (row-major inside the block), then Linear-GELU-Linear
// to the LM width.
Tensor VLM::project(const Tensor& features) const {
  const VisionConfig& v = config_.vision;
  int64_t E = v.hidden_size, g = v.grid(), m = v.spatial_merge_size;
  if (features.dim() != 3 || features.size(1) != v.num_patches() || features.size(2) != E)
    input_error("projector input must be [N, " + std::to_string(v.num_patches()) + ", " +
                std::to_string(E) + "], got " + shape_str(features.shape()));
  const ParamStore& p = params_;
  int64_t N = features.size(0);
  Tensor x = layernorm(features, p.get("projector.norm.weight"), p.get("projector.norm.bias"),
                       v.layer_norm_eps);
  // [N, g/m, m, g/m, m, E] -> [N, g/m, g/m, m, m, E]
  x = x.reshape({N, g / m, m, g / m, m, E}).transpose(2, 3).contiguous();
  x = x.reshape({N, v.num_visual_tokens(), v.merged_dim()});
  x = gelu(linear(x, p.get("projector.fc1.weight"), p.get("projector.fc1.bias")));
  return linear(x, p.get("projector.fc2.weight"), p.get("projector.fc2.bias"));
}

// ---------------------------------------------------------------------------
// Text embeddings, then every image-pad row swapped for the next visual
// token: both go into one table [B*S + N*T, D] and a row lookup picks each
// output row, so gradients flow to the embedding and the projector alike.
Tensor VLM::embed(const Tensor& input_ids, const Tensor& visual) const {
  if (input_ids.dim() != 2)
    input_error("input_ids must be [B, S], got " + shape_str(input_ids.shape()));
  const Tensor& table = params_.get("model.embed_tokens.weight");
  Tensor ids = as_i64(input_ids);
  int64_t B = ids.size(0), S = ids.size(1), D = config_.decoder.hidden_size;
  int64_t pad = config_.image_pad_token_id;
  const int64_t* pid = ids.data<int64_t>();
  int64_t pads = 0;
  if (pad >= 0)
    for (int64_t i = 0; i < B * S; ++i) pads += pid[i] == pad;
  int64_t available = visual.defined() ? visual.size(0) * visual.size(1) : 0;
  if (pads != available)
    input_error("the batch has " + std::to_string(pads) + " image-pad tokens (id " +
                std::to_string(pad) + ") but " + std::to_string(available) + " visual tokens" +
                (visual.defined() ? " (" + shape_str(visual.shape()) + ")" : std::string()));
  Tensor text = embedding(table, ids);
  if (pads == 0) return text;
  if (visual.dim() != 3 || visual.size(2) != D)
    input_error("visual tokens must be [N, T, " + std::to_string(D) + "], got " +
                shape_str(visual.shape()));
  Tensor rows = Tensor::empty({B, S}, DType::i64);
  int64_t* pr = rows.data<int64_t>();
  int64_t next_visual = B * S;
  for (int64_t i = 0; i < B * S; ++i) pr[i] = pid[i] == pad ? next_visual++ : i;
  Tensor combined = concat({text.reshape({B * S, D}), visual.reshape({available, D})}, 0);
  return embedding(combined, rows);
}

// One decoder layer's attention half: RMSNorm, q/k/v (with bias), RoPE,
// grouped-query attention (through the cache when given), o_proj, residual.
Tensor VLM::attention_block(int64_t l, const Tensor& x, const Tensor& positions,
                            const Tensor& token_mask, KVCache* cache) const {
  const DecoderConfig& d = config_.decoder;
  const ParamStore& p = params_;
  auto w = [&](const char* s) -> const Tensor& { return p.get(decoder_param_name(l, s)); };
  int64_t B = x.size(0), S = x.size(1), H = d.num_attention_heads, Hkv = d.num_key_value_heads;
  int64_t hd = d.head_dim();
  Tensor h = rmsnorm(x, w("input_layernorm.weight"), d.rms_norm_eps);
  Tensor q =
      linear(h, w("self_attn.q_proj.weight"), w("self_attn.q_proj.bias")).reshape({B, S, H, hd});
  Tensor k =
      linear(h, w("self_attn.k_proj.weight"), w("self_attn.k_proj.bias")).reshape({B, S, Hkv, hd});
  Tensor v =
      linear(h, w("self_attn.v_proj.weight"), w("self_attn.v_proj.bias")).reshape({B, S, Hkv, hd});
  q = rope(q, positions, d.rope_theta);
  k = rope(k, positions, d.rope_theta);
  Tensor a;
  if (!cache) {
    AttentionOptions opt;
    opt.causal = true;
    opt.key_mask = token_mask;
    a = attention(q, k, v, opt);
  } else {
    a = cache->attend(l, q, k, v);
  }
  return add(x, linear(a.reshape({B, S, H * hd}), w("self_attn.o_proj.weight")));
}

Tensor VLM::decoder_layer(int64_t l, const Tensor& x, const Tensor& positions,
                          const Tensor& token_mask, KVCache* cache) const {
  const DecoderConfig& d = config_.decoder;
  Tensor x1 = attention_block(l, x, positions, token_mask, cache);
  auto w = [&](const char* s) -> const Tensor& { return params_.get(decoder_param_name(l, s)); };
  Tensor h = rmsnorm(x1, w("post_attention_layernorm.weight"), d.rms_norm_eps);
  Tensor gate = linear(h, w("mlp.gate_proj.weight"));
  Tensor up = linear(h, w("mlp.up_proj.weight"));
  return add(x1, linear(swiglu(gate, up), w("mlp.down_proj.weight")));
}

Tensor VLM::decode(const Tensor& embeds, const Tensor& positions, const Tensor& token_mask,
                   KVCache* cache) const {
  const DecoderConfig& d = config_.decoder;
  if (embeds.dim() != 3 || embeds.size(2) != d.hidden_size)
    input_error("decoder input must be [B, S, " + std::to_string(d.hidden_size) + "], got " +
                shape_str(embeds.shape()));
  int64_t B = embeds.size(0), S = embeds.size(1);
  if (positions.shape() != Shape{B, S} || token_mask.shape() != Shape{B, S})
    input_error("positions " + shape_str(positions.shape()) + " and mask " +
                shape_str(token_mask.shape()) + " must be [" + std::to_string(B) + ", " +
                std::to_string(S) + "]");
  if (cache) {
    if (grad_enabled())
      input_error("the KV cache path is inference only; use it under NoGradGuard");
    std::string misuse = cache->misuse(B, d.num_hidden_layers, S);
    if (!misuse.empty()) input_error(misuse);
    cache->key_mask.slice(1, cache->length, cache->length + S).copy_(token_mask);
  }
  Tensor x = embeds;
  const bool recompute = recompute_layers_ && !cache && grad_enabled();
  for (int64_t l = 0; l < d.num_hidden_layers; ++l) {
    if (!recompute) {
      x = decoder_layer(l, x, positions, token_mask, cache);
      continue;
    }
    // The layer's trainable leaves, so the checkpoint records an edge even for a frozen input.
    std::vector<Tensor> layer_params;
    const std::string prefix = decoder_param_name(l, "");
    for (const std::string& name : params_.names())
      if (name.compare(0, prefix.size(), prefix) == 0 && params_.get(name).requires_grad())
        layer_params.push_back(params_.get(name));
    x = checkpoint(
        [this, l, positions, token_mask](const std::vector<Tensor>& in) {
          return decoder_layer(l, in[0], positions, token_mask, nullptr);
        },
        {x}, layer_params);
  }
  if (cache) cache->length += S;
  return rmsnorm(x, params_.get("model.norm.weight"), d.rms_norm_eps);
}

// ---------------------------------------------------------------------------
Tensor VLM::hidden_states(const VLMInput& input) const {
  const Tensor& ids = input.input_ids;
  if (ids.dim() != 2) input_error("input_ids must be [B, S], got " + shape_str(ids.shape()));
  Tensor mask = input.attention_mask.defined() ? input.attention_mask.to(DType::i32)
                                               : Tensor::full(ids.shape(), 1.0, DType::i32);
  if (mask.shape() != ids.shape())
    input_error("attention_mask " + shape_str(mask.shape()) + " does not match input_ids " +
                shape_str(ids.shape()));
  Tensor visual;
  if (input.pixels.defined()) visual = encode_images(input.pixels);
  return decode(embed(ids, visual), positions_from_mask(mask), mask);
}

Tensor VLM::logits(const VLMInput& input) const {
  return linear(hidden_states(input), head_weight());
}

TokenLogprobs VLM::token_logprobs(const VLMInput& input, const Tensor& targets) const {
  Tensor h = hidden_states(input);
  if (targets.shape() != Shape{h.size(0), h.size(1)})
    input_error("targets " + shape_str(targets.shape()) + " must be [B, S] like input_ids");
  return visplay::token_logprobs(h, head_weight(), targets);
}

}  // namespace visplay
