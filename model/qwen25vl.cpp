// Qwen2.5-VL: config, the vision tower, M-RoPE positions, the decoder. See
// qwen25vl.h for the architecture; loading/saving is in qwen25vl_io.cpp and
// image preprocessing + the chat template in qwen25vl_preprocess.cpp.
#include "model/qwen25vl.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <stdexcept>

#include "model/sampler.h"
#include "model/vlm.h"
#include "runtime/ops.h"
#include "runtime/ops_gelu_erf.h"
#include "runtime/random.h"

namespace visplay {
namespace {

using json = nlohmann::json;

[[noreturn]] void config_error(const std::string& where, const std::string& what) {
  throw std::runtime_error(where + ": " + what);
}

// Looks a field up in `primary`, then `fallback` (the top level of config.json).
const json* find_field(const json& primary, const json& fallback, const char* name) {
  if (primary.is_object() && primary.contains(name) && !primary[name].is_null())
    return &primary[name];
  if (fallback.is_object() && fallback.contains(name) && !fallback[name].is_null())
    return &fallback[name];
  return nullptr;
}

int64_t get_int(const json& p, const json& f, const char* name, int64_t dflt,
                const std::string& where, bool required = false) {
  const json* v = find_field(p, f, name);
  if (!v) {
    if (required) config_error(where, std::string("missing field '") + name + "'");
    return dflt;
  }
  if (v->is_array() && !v->empty()) v = &(*v)[0];  // eos_token_id may be a list
  if (!v->is_number_integer())
    config_error(where, std::string("field '") + name + "' must be an integer");
  return v->get<int64_t>();
}

double get_double(const json& p, const json& f, const char* name, double dflt,
                  const std::string& where) {
  const json* v = find_field(p, f, name);
  if (!v) return dflt;
  if (!v->is_number()) config_error(where, std::string("field '") + name + "' must be a number");
  return v->get<double>();
}

std::vector<int64_t> get_int_list(const json& v, const std::string& where, const char* name) {
  if (!v.is_array())
    config_error(where, std::string("field '") + name + "' must be a list of integers");
  std::vector<int64_t> out;
  for (const json& e : v) {
    if (!e.is_number_integer())
      config_error(where, std::string("field '") + name + "' must be a list of integers");
    out.push_back(e.get<int64_t>());
  }
  return out;
}

// The rotate-half rotary map with per-row angle tables: x * cos + rotate_half(x) * sin,
// where rotate_half(x) = [-x2, x1] over the two halves of the last dim. x [..., D];
// cos/sin broadcast against x. Made of differentiable ops.
Tensor apply_rotary(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  int64_t last = x.dim() - 1, d = x.size(-1);
  Tensor x1 = x.slice(last, 0, d / 2), x2 = x.slice(last, d / 2, d);
  Tensor rotated = concat({neg(x2), x1}, last);
  return add(mul(x, cos), mul(rotated, sin));
}

// Bidirectional attention inside each of several consecutive segments of rows
// (windows, or image frames) of q, k, v [1, N, H, D], as one call: the rows are
// gathered into a padded batch [segments, longest, H, D] (padding rows read an
// appended zero row), a key mask hides the padding keys, and the real rows are
// gathered back. Differentiable (the gathers are embedding lookups).
Tensor segment_attention(const Tensor& q, const Tensor& k, const Tensor& v,
                         const std::vector<int64_t>& segments) {
  int64_t N = q.size(1), H = q.size(2), D = q.size(3), W = static_cast<int64_t>(segments.size());
  int64_t L = *std::max_element(segments.begin(), segments.end());
  std::vector<int64_t> gather(W * L, N), back(N);
  std::vector<int32_t> mask(W * L, 0);
  for (int64_t w = 0, start = 0; w < W; start += segments[w], ++w)
    for (int64_t i = 0; i < segments[w]; ++i) {
      gather[w * L + i] = start + i;
      back[start + i] = w * L + i;
      mask[w * L + i] = 1;
    }
  Tensor gather_ids = Tensor::from_vector(gather, {W * L});
  auto batch = [&](const Tensor& t) {
    Tensor rows =
        concat({t.reshape({N, H * D}), Tensor::zeros({1, H * D}, t.dtype(), t.device())}, 0);
    return embedding(rows, gather_ids).reshape({W, L, H, D});
  };
  AttentionOptions opt;
  opt.causal = false;
  opt.key_mask = Tensor::from_vector(mask, {W, L}, DType::i32);
  Tensor out = attention(batch(q), batch(k), batch(v), opt);
  return embedding(out.reshape({W * L, H * D}), Tensor::from_vector(back, {N}))
      .reshape({1, N, H, D});
}

// Inverse frequencies as the reference computes them: in float32,
// 1 / base^(2i / dim) for i < dim / 2.
std::vector<float> inverse_frequencies(double base, int64_t dim) {
  std::vector<float> inv(dim / 2);
  for (int64_t i = 0; i < dim / 2; ++i)
    inv[i] = 1.0f / std::pow(static_cast<float>(base),
                             static_cast<float>(2 * i) / static_cast<float>(dim));
  return inv;
}

// One image's window layout over its merged tokens (the reference's window index):
// windows of `win` x `win` merged tokens in raster order, tokens in raster order
// inside each window, frame by frame. Appends the merged-token indices (offset by
// `base`) to `order` and each window's length in patches to `windows`.
void window_layout(int64_t t, int64_t gh, int64_t gw, int64_t win, int64_t unit, int64_t base,
                   std::vector<int64_t>& order, std::vector<int64_t>& windows) {
  for (int64_t f = 0; f < t; ++f)
    for (int64_t wy = 0; wy < (gh + win - 1) / win; ++wy)
      for (int64_t wx = 0; wx < (gw + win - 1) / win; ++wx) {
        int64_t count = 0;
        for (int64_t r = wy * win; r < std::min(gh, (wy + 1) * win); ++r)
          for (int64_t c = wx * win; c < std::min(gw, (wx + 1) * win); ++c) {
            order.push_back(base + f * gh * gw + r * gw + c);
            ++count;
          }
        windows.push_back(count * unit);
      }
}

}  // namespace

// ---------------------------------------------------------------- config

bool Qwen25VLVisionConfig::full_attention(int64_t layer) const {
  return std::find(fullatt_block_indexes.begin(), fullatt_block_indexes.end(), layer) !=
         fullatt_block_indexes.end();
}

void Qwen25VLConfig::validate(const std::string& where) const {
  auto positive = [&](int64_t v, const char* name) {
    if (v <= 0)
      config_error(where,
                   std::string("field '") + name + "' must be positive, got " + std::to_string(v));
  };
  positive(text.vocab_size, "vocab_size");
  positive(text.hidden_size, "hidden_size");
  positive(text.intermediate_size, "intermediate_size");
  positive(text.num_hidden_layers, "num_hidden_layers");
  positive(text.num_attention_heads, "num_attention_heads");
  positive(text.num_key_value_heads, "num_key_value_heads");
  if (text.hidden_size % text.num_attention_heads != 0 || text.head_dim() % 2 != 0)
    config_error(where,
                 "hidden_size must be a multiple of num_attention_heads with an even head_dim");
  if (text.num_attention_heads % text.num_key_value_heads != 0)
    config_error(where, "num_attention_heads must be a multiple of num_key_value_heads");
  int64_t sections = 0;
  for (int64_t s : mrope_section) sections += s;
  if (mrope_section.size() != 3 || sections != text.head_dim() / 2)
    config_error(where, "mrope_section must be 3 numbers summing to head_dim / 2 = " +
                            std::to_string(text.head_dim() / 2) + ", got sum " +
                            std::to_string(sections));
  const Qwen25VLVisionConfig& v = vision;
  positive(v.depth, "vision_config.depth");
  positive(v.hidden_size, "vision_config.hidden_size");
  positive(v.intermediate_size, "vision_config.intermediate_size");
  positive(v.num_heads, "vision_config.num_heads");
  positive(v.patch_size, "vision_config.patch_size");
  positive(v.spatial_merge_size, "vision_config.spatial_merge_size");
  positive(v.temporal_patch_size, "vision_config.temporal_patch_size");
  positive(v.out_hidden_size, "vision_config.out_hidden_size");
  if (v.hidden_size % v.num_heads != 0 || v.head_dim() % 4 != 0)
    config_error(where, "vision_config: hidden_size / num_heads must be a multiple of 4");
  if (v.window_size % (v.patch_size * v.spatial_merge_size) != 0)
    config_error(where,
                 "vision_config.window_size must be a multiple of patch_size * spatial_merge_size");
  if (v.out_hidden_size != text.hidden_size)
    config_error(where, "vision_config.out_hidden_size (" + std::to_string(v.out_hidden_size) +
                            ") must equal hidden_size (" + std::to_string(text.hidden_size) + ")");
  for (int64_t id : {image_token_id, vision_start_token_id, vision_end_token_id})
    if (id < 0 || id >= text.vocab_size)
      config_error(where, "token id " + std::to_string(id) + " outside the vocabulary");
}

Qwen25VLConfig qwen25vl_config_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) config_error(where, "config.json must be an object");
  const json empty = json::object();
  const json& t = j.contains("text_config") && j["text_config"].is_object() ? j["text_config"] : j;
  Qwen25VLConfig c;
  c.source = j;
  if (const json* act = find_field(t, j, "hidden_act"); act && *act != "silu")
    config_error(where, "hidden_act must be 'silu', got " + act->dump());
  if (const json* sw = find_field(t, j, "use_sliding_window");
      sw && sw->is_boolean() && sw->get<bool>())
    config_error(where, "use_sliding_window = true is not supported");
  c.text.vocab_size = get_int(t, j, "vocab_size", 0, where, true);
  c.text.hidden_size = get_int(t, j, "hidden_size", 0, where, true);
  c.text.intermediate_size = get_int(t, j, "intermediate_size", 0, where, true);
  c.text.num_hidden_layers = get_int(t, j, "num_hidden_layers", 0, where, true);
  c.text.num_attention_heads = get_int(t, j, "num_attention_heads", 0, where, true);
  c.text.num_key_value_heads =
      get_int(t, j, "num_key_value_heads", c.text.num_attention_heads, where);
  c.text.rms_norm_eps = get_double(t, j, "rms_norm_eps", 1e-6, where);
  c.text.max_position_embeddings = get_int(t, j, "max_position_embeddings", 128000, where);
  // tie_word_embeddings lives at the top level in both layouts (and in text_config in v5).
  const json* tie = find_field(j, t, "tie_word_embeddings");
  c.text.tie_word_embeddings = tie && tie->is_boolean() ? tie->get<bool>() : false;
  // RoPE: rope_theta at the top (released) or in rope_parameters (v5); M-RoPE
  // sections in rope_scaling (released) or rope_parameters (v5).
  c.text.rope_theta = get_double(t, j, "rope_theta", 1000000.0, where);
  for (const char* key : {"rope_parameters", "rope_scaling"}) {
    const json* rp = find_field(t, j, key);
    if (!rp || !rp->is_object()) continue;
    if (rp->contains("rope_theta"))
      c.text.rope_theta = get_double(*rp, empty, "rope_theta", 0, where);
    if (rp->contains("mrope_section"))
      c.mrope_section = get_int_list((*rp)["mrope_section"], where, "mrope_section");
    for (const char* type_key : {"rope_type", "type"})
      if (rp->contains(type_key) && (*rp)[type_key].is_string()) {
        std::string type = (*rp)[type_key];
        if (type != "default" && type != "mrope")
          config_error(where,
                       std::string(key) + "." + type_key + " '" + type + "' is not supported");
      }
  }
  c.image_token_id = get_int(j, t, "image_token_id", c.image_token_id, where);
  c.video_token_id = get_int(j, t, "video_token_id", c.video_token_id, where);
  c.vision_start_token_id = get_int(j, t, "vision_start_token_id", c.vision_start_token_id, where);
  c.vision_end_token_id = get_int(j, t, "vision_end_token_id", c.vision_end_token_id, where);
  c.eos_token_id = get_int(t, j, "eos_token_id", c.eos_token_id, where);
  c.pad_token_id = get_int(t, j, "pad_token_id", -1, where);

  if (!j.contains("vision_config") || !j["vision_config"].is_object())
    config_error(where, "missing object 'vision_config'");
  const json& v = j["vision_config"];
  const std::string vw = where + ": vision_config";
  Qwen25VLVisionConfig& vc = c.vision;
  if (const json* act = find_field(v, empty, "hidden_act"); act && *act != "silu")
    config_error(vw, "hidden_act must be 'silu', got " + act->dump());
  vc.depth = get_int(v, empty, "depth", 0, vw, true);
  vc.hidden_size = get_int(v, empty, "hidden_size", 0, vw, true);
  vc.intermediate_size = get_int(v, empty, "intermediate_size", 0, vw, true);
  vc.num_heads = get_int(v, empty, "num_heads", 0, vw, true);
  vc.in_channels = get_int(v, empty, "in_channels", get_int(v, empty, "in_chans", 3, vw), vw);
  vc.patch_size = get_int(v, empty, "patch_size", 14, vw);
  vc.spatial_merge_size = get_int(v, empty, "spatial_merge_size", 2, vw);
  vc.temporal_patch_size = get_int(v, empty, "temporal_patch_size", 2, vw);
  vc.window_size = get_int(v, empty, "window_size", 112, vw);
  vc.out_hidden_size = get_int(v, empty, "out_hidden_size", c.text.hidden_size, vw);
  vc.tokens_per_second = get_int(v, empty, "tokens_per_second", 2, vw);
  if (v.contains("fullatt_block_indexes"))
    vc.fullatt_block_indexes =
        get_int_list(v["fullatt_block_indexes"], vw, "fullatt_block_indexes");
  if (const json* rp = find_field(v, empty, "rope_parameters"); rp && rp->is_object())
    vc.rope_theta = get_double(*rp, empty, "rope_theta", 10000.0, vw);
  for (int64_t layer : vc.fullatt_block_indexes)
    if (layer < 0 || layer >= vc.depth)
      config_error(vw,
                   "fullatt_block_indexes entry " + std::to_string(layer) + " outside [0, depth)");
  c.validate(where);
  return c;
}

Qwen25VLConfig load_qwen25vl_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open");
  json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": invalid JSON: " + e.what());
  }
  return qwen25vl_config_from_json(j, path);
}

int64_t qwen25vl_parameter_count(const Qwen25VLConfig& c) {
  const DecoderConfig& t = c.text;
  int64_t D = t.hidden_size, I = t.intermediate_size, hd = t.head_dim();
  int64_t q = t.num_attention_heads * hd, kv = t.num_key_value_heads * hd;
  int64_t layer = 2 * D + (D * q + q) + 2 * (D * kv + kv) + q * D + 3 * D * I;
  int64_t decoder =
      t.num_hidden_layers * layer + D + t.vocab_size * D * (t.tie_word_embeddings ? 1 : 2);
  const Qwen25VLVisionConfig& v = c.vision;
  int64_t E = v.hidden_size, VI = v.intermediate_size, M = E * v.merge_unit();
  int64_t block = 2 * E + (3 * E * E + 3 * E) + (E * E + E) + 2 * (E * VI + VI) + (VI * E + E);
  int64_t vision = E * v.patch_dim() + v.depth * block + E + (M * M + M) +
                   (v.out_hidden_size * M + v.out_hidden_size);
  return decoder + vision;
}

// ---------------------------------------------------------------- model

Qwen25VL::Qwen25VL(Qwen25VLConfig config, DType param_dtype) : config_(std::move(config)) {
  register_parameters(param_dtype);
}

void Qwen25VL::register_parameters(DType dtype) {
  const DecoderConfig& t = config_.text;
  const Qwen25VLVisionConfig& v = config_.vision;
  int64_t D = t.hidden_size, hd = t.head_dim(), E = v.hidden_size, M = E * v.merge_unit();
  params_.add("model.embed_tokens.weight", {t.vocab_size, D}, Init::normal, dtype);
  for (int64_t l = 0; l < t.num_hidden_layers; ++l) {
    std::string p = "model.layers." + std::to_string(l) + ".";
    params_.add(p + "input_layernorm.weight", {D}, Init::ones, dtype);
    params_.add(p + "self_attn.q_proj.weight", {t.num_attention_heads * hd, D}, Init::normal,
                dtype);
    params_.add(p + "self_attn.q_proj.bias", {t.num_attention_heads * hd}, Init::zeros, dtype);
    params_.add(p + "self_attn.k_proj.weight", {t.num_key_value_heads * hd, D}, Init::normal,
                dtype);
    params_.add(p + "self_attn.k_proj.bias", {t.num_key_value_heads * hd}, Init::zeros, dtype);
    params_.add(p + "self_attn.v_proj.weight", {t.num_key_value_heads * hd, D}, Init::normal,
                dtype);
    params_.add(p + "self_attn.v_proj.bias", {t.num_key_value_heads * hd}, Init::zeros, dtype);
    params_.add(p + "self_attn.o_proj.weight", {D, t.num_attention_heads * hd}, Init::normal,
                dtype);
    params_.add(p + "post_attention_layernorm.weight", {D}, Init::ones, dtype);
    params_.add(p + "mlp.gate_proj.weight", {t.intermediate_size, D}, Init::normal, dtype);
    params_.add(p + "mlp.up_proj.weight", {t.intermediate_size, D}, Init::normal, dtype);
    params_.add(p + "mlp.down_proj.weight", {D, t.intermediate_size}, Init::normal, dtype);
  }
  params_.add("model.norm.weight", {D}, Init::ones, dtype);
  if (!t.tie_word_embeddings) params_.add("lm_head.weight", {t.vocab_size, D}, Init::normal, dtype);

  params_.add("visual.patch_embed.proj.weight",
              {E, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size}, Init::normal,
              dtype);
  for (int64_t l = 0; l < v.depth; ++l) {
    std::string p = "visual.blocks." + std::to_string(l) + ".";
    params_.add(p + "norm1.weight", {E}, Init::ones, dtype);
    params_.add(p + "attn.qkv.weight", {3 * E, E}, Init::normal, dtype);
    params_.add(p + "attn.qkv.bias", {3 * E}, Init::zeros, dtype);
    params_.add(p + "attn.proj.weight", {E, E}, Init::normal, dtype);
    params_.add(p + "attn.proj.bias", {E}, Init::zeros, dtype);
    params_.add(p + "norm2.weight", {E}, Init::ones, dtype);
    params_.add(p + "mlp.gate_proj.weight", {v.intermediate_size, E}, Init::normal, dtype);
    params_.add(p + "mlp.gate_proj.bias", {v.intermediate_size}, Init::zeros, dtype);
    params_.add(p + "mlp.up_proj.weight", {v.intermediate_size, E}, Init::normal, dtype);
    params_.add(p + "mlp.up_proj.bias", {v.intermediate_size}, Init::zeros, dtype);
    params_.add(p + "mlp.down_proj.weight", {E, v.intermediate_size}, Init::normal, dtype);
    params_.add(p + "mlp.down_proj.bias", {E}, Init::zeros, dtype);
  }
  params_.add("visual.merger.ln_q.weight", {E}, Init::ones, dtype);
  params_.add("visual.merger.mlp.0.weight", {M, M}, Init::normal, dtype);
  params_.add("visual.merger.mlp.0.bias", {M}, Init::zeros, dtype);
  params_.add("visual.merger.mlp.2.weight", {D, M}, Init::normal, dtype);
  params_.add("visual.merger.mlp.2.bias", {D}, Init::zeros, dtype);
}

void Qwen25VL::init_weights(uint64_t seed) {
  Rng rng(seed);
  params_.initialize(rng);
}

const Tensor& Qwen25VL::head_weight() const {
  return params_.get(config_.text.tie_word_embeddings ? "model.embed_tokens.weight"
                                                      : "lm_head.weight");
}

// One ViT block on x [N, E] (rows in window order): pre-RMSNorm attention,
// bidirectional within each segment (a window, or a whole frame in full-attention
// layers), with the 2-D rotary on q and k; then the SwiGLU MLP with biases.
Tensor Qwen25VL::vision_block(int64_t layer, const Tensor& x, const Tensor& cos, const Tensor& sin,
                              const std::vector<int64_t>& segments) const {
  const Qwen25VLVisionConfig& v = config_.vision;
  std::string p = "visual.blocks." + std::to_string(layer) + ".";
  const ParamStore& P = params_;
  int64_t N = x.size(0), E = v.hidden_size, H = v.num_heads, hd = v.head_dim();
  Tensor h = rmsnorm(x, P.get(p + "norm1.weight"), 1e-6);
  Tensor qkv =
      linear(h, P.get(p + "attn.qkv.weight"), P.get(p + "attn.qkv.bias")).reshape({1, N, 3, H, hd});
  Tensor q = apply_rotary(qkv.slice(2, 0, 1).reshape({1, N, H, hd}), cos, sin);
  Tensor k = apply_rotary(qkv.slice(2, 1, 2).reshape({1, N, H, hd}), cos, sin);
  Tensor vv = qkv.slice(2, 2, 3).reshape({1, N, H, hd});
  AttentionOptions opt;
  opt.causal = false;
  Tensor attn =
      segments.size() == 1 ? attention(q, k, vv, opt) : segment_attention(q, k, vv, segments);
  Tensor out =
      linear(attn.reshape({N, E}), P.get(p + "attn.proj.weight"), P.get(p + "attn.proj.bias"));
  Tensor x1 = add(x, out);
  Tensor h2 = rmsnorm(x1, P.get(p + "norm2.weight"), 1e-6);
  Tensor gate = linear(h2, P.get(p + "mlp.gate_proj.weight"), P.get(p + "mlp.gate_proj.bias"));
  Tensor up = linear(h2, P.get(p + "mlp.up_proj.weight"), P.get(p + "mlp.up_proj.bias"));
  Tensor mlp =
      linear(swiglu(gate, up), P.get(p + "mlp.down_proj.weight"), P.get(p + "mlp.down_proj.bias"));
  return add(x1, mlp);
}

Tensor Qwen25VL::encode_images(const Tensor& pixel_values,
                               const std::vector<std::array<int64_t, 3>>& grids) const {
  const Qwen25VLVisionConfig& v = config_.vision;
  const char* where = "Qwen25VL::encode_images";
  int64_t m = v.spatial_merge_size, unit = v.merge_unit(), hd = v.head_dim();
  if (pixel_values.dim() != 2 || pixel_values.size(1) != v.patch_dim())
    throw std::runtime_error(std::string(where) + ": pixel_values must be [patches, " +
                             std::to_string(v.patch_dim()) + "], got " + pixel_values.str());
  // Window order of the merged tokens, window and frame lengths, and the
  // (row, col) of every patch in window order.
  std::vector<int64_t> order, windows, frames;
  int64_t merged = 0;
  for (const auto& g : grids) {
    int64_t t = g[0], gh = g[1] / m, gw = g[2] / m;
    if (t <= 0 || g[1] <= 0 || g[2] <= 0 || g[1] % m || g[2] % m)
      throw std::runtime_error(std::string(where) + ": grid (" + std::to_string(g[0]) + ", " +
                               std::to_string(g[1]) + ", " + std::to_string(g[2]) +
                               ") must be positive with h, w multiples of " + std::to_string(m));
    window_layout(t, gh, gw, v.window_size / m / v.patch_size, unit, merged, order, windows);
    for (int64_t f = 0; f < t; ++f) frames.push_back(g[1] * g[2]);
    merged += t * gh * gw;
  }
  int64_t N = merged * unit;
  if (pixel_values.size(0) != N)
    throw std::runtime_error(std::string(where) + ": pixel_values has " +
                             std::to_string(pixel_values.size(0)) + " patches, the grids need " +
                             std::to_string(N));
  // Which merged token of which image each merged index is, to get the patch
  // (row, col): merged tokens are raster order per frame, patches (dy, dx) inside.
  std::vector<int64_t> patch_order(N), rows(N), cols(N);
  {
    std::vector<std::array<int64_t, 2>> token_rc(merged);
    int64_t base = 0;
    for (const auto& g : grids) {
      int64_t gh = g[1] / m, gw = g[2] / m;
      for (int64_t f = 0; f < g[0]; ++f)
        for (int64_t r = 0; r < gh; ++r)
          for (int64_t c = 0; c < gw; ++c) token_rc[base++] = {r, c};
    }
    for (int64_t i = 0; i < merged; ++i)
      for (int64_t u = 0; u < unit; ++u) {
        int64_t n = i * unit + u;
        patch_order[n] = order[i] * unit + u;
        rows[n] = token_rc[order[i]][0] * m + u / m;
        cols[n] = token_rc[order[i]][1] * m + u % m;
      }
  }
  // 2-D rotary tables in window order: [N, hd] = [h freqs, w freqs, h freqs, w freqs].
  std::vector<float> inv = inverse_frequencies(v.rope_theta, hd / 2);
  int64_t q4 = hd / 4;
  std::vector<float> cos_t(N * hd), sin_t(N * hd);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t half = 0; half < 2; ++half)
      for (int64_t i = 0; i < q4; ++i)
        for (int64_t axis = 0; axis < 2; ++axis) {
          float angle = static_cast<float>(axis == 0 ? rows[n] : cols[n]) * inv[i];
          int64_t j = half * (hd / 2) + axis * q4 + i;
          cos_t[n * hd + j] = static_cast<float>(std::cos(static_cast<double>(angle)));
          sin_t[n * hd + j] = static_cast<float>(std::sin(static_cast<double>(angle)));
        }
  // The tables live where the weights do (cpu, or sim/cuda after params().set(.., to(dev))).
  const Tensor& proj = params_.get("visual.patch_embed.proj.weight");
  DType dt = proj.dtype();
  Tensor cos = Tensor::from_vector(cos_t, {1, N, 1, hd}, DType::f32, proj.device()).to(dt);
  Tensor sin = Tensor::from_vector(sin_t, {1, N, 1, hd}, DType::f32, proj.device()).to(dt);

  const Tensor& conv = params_.get("visual.patch_embed.proj.weight");
  Tensor x = linear(pixel_values.to(dt), conv.reshape({v.hidden_size, v.patch_dim()}));
  x = embedding(x, Tensor::from_vector(patch_order, {N}));  // rows into window order
  for (int64_t l = 0; l < v.depth; ++l)
    x = vision_block_maybe_recomputed(l, x, cos, sin, v.full_attention(l) ? frames : windows);
  Tensor h = rmsnorm(x, params_.get("visual.merger.ln_q.weight"), 1e-6)
                 .reshape({merged, v.hidden_size * unit});
  h = gelu_erf(linear(h, params_.get("visual.merger.mlp.0.weight"),
                      params_.get("visual.merger.mlp.0.bias")));
  h = linear(h, params_.get("visual.merger.mlp.2.weight"), params_.get("visual.merger.mlp.2.bias"));
  std::vector<int64_t> inverse(merged);
  for (int64_t i = 0; i < merged; ++i) inverse[order[i]] = i;
  return embedding(h, Tensor::from_vector(inverse, {merged}));  // back to raster order
}

Tensor Qwen25VL::rope_index(const Tensor& input_ids, const Tensor& attention_mask,
                            const std::vector<std::array<int64_t, 3>>& grids) const {
  const char* where = "Qwen25VL::rope_index";
  if (input_ids.dim() != 2)
    throw std::runtime_error(std::string(where) + ": input_ids must be [B, S], got " +
                             input_ids.str());
  int64_t B = input_ids.size(0), S = input_ids.size(1), m = config_.vision.spatial_merge_size;
  std::vector<int64_t> ids = input_ids.to_vector<int64_t>();
  std::vector<int64_t> mask = attention_mask.defined() ? attention_mask.to_vector<int64_t>()
                                                       : std::vector<int64_t>(B * S, 1);
  if (static_cast<int64_t>(mask.size()) != B * S)
    throw std::runtime_error(std::string(where) +
                             ": attention_mask must be [B, S] like input_ids " + input_ids.str() +
                             ", got " + attention_mask.str());
  std::vector<int64_t> pos(3 * B * S, 0);
  size_t next_grid = 0;
  int64_t left_in_image = 0, img_h = 0, img_w = 0, img_base = 0, img_index = 0;
  for (int64_t b = 0; b < B; ++b) {
    int64_t current = 0;
    for (int64_t s = 0; s < S; ++s) {
      if (!mask[b * S + s]) continue;
      int64_t* p0 = &pos[(0 * B + b) * S + s];
      int64_t* p1 = &pos[(1 * B + b) * S + s];
      int64_t* p2 = &pos[(2 * B + b) * S + s];
      if (ids[b * S + s] == config_.image_token_id) {
        if (left_in_image == 0) {  // a new image starts
          if (next_grid >= grids.size())
            throw std::runtime_error(std::string(where) + ": more image-pad tokens than the " +
                                     std::to_string(grids.size()) + " image grids need (row " +
                                     std::to_string(b) + ", position " + std::to_string(s) + ")");
          const auto& g = grids[next_grid++];
          img_h = g[1] / m, img_w = g[2] / m;
          left_in_image = g[0] * img_h * img_w;
          img_base = current, img_index = 0;
          current += std::max(img_h, img_w);
        }
        int64_t f = img_index / (img_h * img_w), r = (img_index / img_w) % img_h,
                c = img_index % img_w;
        *p0 = img_base + f, *p1 = img_base + r, *p2 = img_base + c;
        ++img_index, --left_in_image;
      } else {
        if (left_in_image != 0)
          throw std::runtime_error(std::string(where) + ": image " + std::to_string(next_grid - 1) +
                                   " ends early: " + std::to_string(left_in_image) +
                                   " image-pad tokens missing before position " +
                                   std::to_string(s) + " of row " + std::to_string(b));
        *p0 = *p1 = *p2 = current++;
      }
    }
  }
  if (left_in_image != 0 || next_grid != grids.size())
    throw std::runtime_error(std::string(where) + ": the prompt's image-pad tokens cover " +
                             std::to_string(next_grid) + " images (last one " +
                             (left_in_image ? "incomplete" : "complete") + "), " +
                             std::to_string(grids.size()) + " grids given");
  return Tensor::from_vector(pos, {3, B, S});
}

// One decoder layer: RMSNorm, q/k/v (bias), M-RoPE via the angle tables, GQA
// causal attention with the padding key mask, o_proj; RMSNorm, SwiGLU. With a
// cache, the new keys/values are written at cache->length and the queries
// attend to every slot written so far (causal, aligned to the end).
Tensor Qwen25VL::decoder_layer(int64_t layer, const Tensor& x, const Tensor& cos, const Tensor& sin,
                               const Tensor& key_mask, KVCache* cache) const {
  const DecoderConfig& t = config_.text;
  std::string p = "model.layers." + std::to_string(layer) + ".";
  const ParamStore& P = params_;
  int64_t B = x.size(0), S = x.size(1), hd = t.head_dim();
  Tensor h = rmsnorm(x, P.get(p + "input_layernorm.weight"), t.rms_norm_eps);
  Tensor q = linear(h, P.get(p + "self_attn.q_proj.weight"), P.get(p + "self_attn.q_proj.bias"))
                 .reshape({B, S, t.num_attention_heads, hd});
  Tensor k = linear(h, P.get(p + "self_attn.k_proj.weight"), P.get(p + "self_attn.k_proj.bias"))
                 .reshape({B, S, t.num_key_value_heads, hd});
  Tensor v = linear(h, P.get(p + "self_attn.v_proj.weight"), P.get(p + "self_attn.v_proj.bias"))
                 .reshape({B, S, t.num_key_value_heads, hd});
  q = apply_rotary(q, cos, sin);
  k = apply_rotary(k, cos, sin);
  Tensor a;
  if (cache) {
    a = cache->attend(layer, q, k, v);
  } else {
    AttentionOptions opt;
    opt.causal = true;
    opt.key_mask = key_mask;
    a = attention(q, k, v, opt);
  }
  Tensor x1 = add(x, linear(a.reshape({B, S, t.num_attention_heads * hd}),
                            P.get(p + "self_attn.o_proj.weight")));
  Tensor h2 = rmsnorm(x1, P.get(p + "post_attention_layernorm.weight"), t.rms_norm_eps);
  Tensor mlp = linear(swiglu(linear(h2, P.get(p + "mlp.gate_proj.weight")),
                             linear(h2, P.get(p + "mlp.up_proj.weight"))),
                      P.get(p + "mlp.down_proj.weight"));
  return add(x1, mlp);
}

std::vector<Tensor> Qwen25VL::trainable_params_under(const std::string& prefix) const {
  std::vector<Tensor> out;
  for (const std::string& name : params_.names())
    if (name.compare(0, prefix.size(), prefix) == 0 && params_.get(name).requires_grad())
      out.push_back(params_.get(name));
  return out;
}

// The block's closure captures the angle tables, mask and segments by value: backward runs
// it again after this forward has returned.
Tensor Qwen25VL::decoder_layer_maybe_recomputed(int64_t layer, const Tensor& x, const Tensor& cos,
                                                const Tensor& sin, const Tensor& key_mask,
                                                KVCache* cache) const {
  if (!recompute_layers_ || cache || !grad_enabled())
    return decoder_layer(layer, x, cos, sin, key_mask, cache);
  return checkpoint(
      [this, layer, cos, sin, key_mask](const std::vector<Tensor>& in) {
        return decoder_layer(layer, in[0], cos, sin, key_mask, nullptr);
      },
      {x}, trainable_params_under("model.layers." + std::to_string(layer) + "."));
}

Tensor Qwen25VL::vision_block_maybe_recomputed(int64_t layer, const Tensor& x, const Tensor& cos,
                                               const Tensor& sin,
                                               const std::vector<int64_t>& segments) const {
  if (!recompute_layers_ || !grad_enabled()) return vision_block(layer, x, cos, sin, segments);
  return checkpoint(
      [this, layer, cos, sin, segments](const std::vector<Tensor>& in) {
        return vision_block(layer, in[0], cos, sin, segments);
      },
      {x}, trainable_params_under("visual.blocks." + std::to_string(layer) + "."));
}

Tensor Qwen25VL::embed(const Tensor& input_ids, const Tensor& pixel_values,
                       const std::vector<std::array<int64_t, 3>>& grids) const {
  if (grids.empty()) return embed_visual(input_ids, Tensor());
  if (!pixel_values.defined())
    throw std::runtime_error("Qwen25VL::embed: image grids given without pixel_values");
  return embed_visual(input_ids, encode_images(pixel_values, grids));
}

Tensor Qwen25VL::embed_visual(const Tensor& input_ids, const Tensor& visual_tokens) const {
  const DecoderConfig& t = config_.text;
  const char* where = "Qwen25VL::embed";
  const Tensor& embed_w = params_.get("model.embed_tokens.weight");
  std::vector<int64_t> ids = input_ids.to_vector<int64_t>();
  for (int64_t id : ids)
    if (id < 0 || id >= t.vocab_size)
      throw std::runtime_error(std::string(where) + ": token id " + std::to_string(id) +
                               " outside the vocabulary of " + std::to_string(t.vocab_size));
  if (!visual_tokens.defined())
    return embedding(embed_w, Tensor::from_vector(ids, input_ids.shape()));
  // A row lookup into [embedding table; visual tokens], so gradients reach both.
  Tensor visual = visual_tokens.to(embed_w.dtype());
  int64_t k = 0;
  for (int64_t& id : ids)
    if (id == config_.image_token_id) id = t.vocab_size + k++;
  if (k != visual.size(0))
    throw std::runtime_error(std::string(where) + ": " + std::to_string(k) +
                             " image-pad tokens for " + std::to_string(visual.size(0)) +
                             " visual tokens");
  return embedding(concat({embed_w, visual}, 0), Tensor::from_vector(ids, input_ids.shape()));
}

Tensor Qwen25VL::decode(Tensor x, const std::vector<int64_t>& pos, const Tensor& key_mask,
                        KVCache* cache) const {
  const DecoderConfig& t = config_.text;
  int64_t B = x.size(0), S = x.size(1), hd = t.head_dim();
  // M-RoPE angle tables [B, S, 1, hd]: frequency j uses position component
  // section(j) (temporal, height, width by mrope_section), both halves alike.
  std::vector<float> inv = inverse_frequencies(t.rope_theta, hd);
  std::vector<int64_t> comp(hd / 2);
  for (int64_t j = 0, c = 0, end = config_.mrope_section[0]; j < hd / 2; ++j) {
    while (j >= end) end += config_.mrope_section[++c];
    comp[j] = c;
  }
  std::vector<float> cos_t(B * S * hd), sin_t(B * S * hd);
  for (int64_t r = 0; r < B * S; ++r)
    for (int64_t j = 0; j < hd / 2; ++j) {
      float angle = static_cast<float>(pos[comp[j] * B * S + r]) * inv[j];
      float c = static_cast<float>(std::cos(static_cast<double>(angle)));
      float s = static_cast<float>(std::sin(static_cast<double>(angle)));
      cos_t[r * hd + j] = cos_t[r * hd + j + hd / 2] = c;
      sin_t[r * hd + j] = sin_t[r * hd + j + hd / 2] = s;
    }
  Tensor cos = Tensor::from_vector(cos_t, {B, S, 1, hd}, DType::f32, x.device()).to(x.dtype());
  Tensor sin = Tensor::from_vector(sin_t, {B, S, 1, hd}, DType::f32, x.device()).to(x.dtype());
  for (int64_t l = 0; l < t.num_hidden_layers; ++l)
    x = decoder_layer_maybe_recomputed(l, x, cos, sin, key_mask, cache);
  if (cache) cache->length += S;
  return rmsnorm(x, params_.get("model.norm.weight"), t.rms_norm_eps);
}

Tensor Qwen25VL::hidden_states(const Tensor& input_ids, const Tensor& attention_mask,
                               const Tensor& pixel_values,
                               const std::vector<std::array<int64_t, 3>>& grids) const {
  Tensor positions = rope_index(input_ids, attention_mask, grids);  // checks the pad runs
  Tensor key_mask =
      attention_mask.defined() ? attention_mask.to(DType::i32).contiguous() : Tensor();
  return decode(embed(input_ids, pixel_values, grids), positions.to_vector<int64_t>(), key_mask,
                nullptr);
}

Tensor Qwen25VL::hidden_states_from_visual(const Tensor& input_ids, const Tensor& attention_mask,
                                           const Tensor& visual,
                                           const std::vector<std::array<int64_t, 3>>& grids) const {
  Tensor positions = rope_index(input_ids, attention_mask, grids);  // checks the pad runs
  Tensor key_mask =
      attention_mask.defined() ? attention_mask.to(DType::i32).contiguous() : Tensor();
  return decode(embed_visual(input_ids, visual), positions.to_vector<int64_t>(), key_mask, nullptr);
}

Tensor Qwen25VL::logits(const Tensor& input_ids, const Tensor& attention_mask,
                        const Tensor& pixel_values,
                        const std::vector<std::array<int64_t, 3>>& grids) const {
  return linear(hidden_states(input_ids, attention_mask, pixel_values, grids), head_weight());
}

TokenLogprobs Qwen25VL::token_logprobs(const Tensor& input_ids, const Tensor& attention_mask,
                                       const Tensor& pixel_values,
                                       const std::vector<std::array<int64_t, 3>>& grids,
                                       const Tensor& targets) const {
  Tensor h = hidden_states(input_ids, attention_mask, pixel_values, grids);
  return visplay::token_logprobs(h, head_weight(), targets);
}

Tensor Qwen25VL::prefill(const Tensor& input_ids, const Tensor& attention_mask,
                         const Tensor& pixel_values,
                         const std::vector<std::array<int64_t, 3>>& grids, int64_t capacity,
                         KVCache* cache) const {
  const DecoderConfig& t = config_.text;
  int64_t B = input_ids.size(0), S = input_ids.size(1);
  if (capacity < S)
    throw std::runtime_error("Qwen25VL::prefill: capacity " + std::to_string(capacity) +
                             " is below the prompt length " + std::to_string(S));
  if (!cache) throw std::runtime_error("Qwen25VL::prefill: no cache");
  if (grad_enabled())
    throw std::runtime_error("Qwen25VL::prefill: the KV cache is inference only (NoGradGuard)");
  Tensor positions = rope_index(input_ids, attention_mask, grids);
  std::vector<int64_t> pos = positions.to_vector<int64_t>();
  Tensor mask = attention_mask.defined() ? attention_mask.to(DType::i32).contiguous()
                                         : Tensor::ones({B, S}, DType::i32);
  const Tensor& table = params_.get("model.embed_tokens.weight");
  *cache = KVCache::allocate(t, B, capacity, table.dtype(), table.device());
  cache->key_mask.slice(1, 0, S).copy_(mask);
  std::vector<int64_t> m = mask.to_vector<int64_t>();
  cache->next_position.assign(B, 0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      if (m[b * S + s])
        for (int64_t c = 0; c < 3; ++c)
          cache->next_position[b] = std::max(cache->next_position[b], pos[(c * B + b) * S + s] + 1);
  Tensor h = decode(embed(input_ids, pixel_values, grids), pos, Tensor(), cache);
  return linear(h.slice(1, S - 1, S).reshape({B, t.hidden_size}), head_weight());
}

Tensor Qwen25VL::decode_step(const std::vector<int64_t>& tokens, KVCache* cache) const {
  const DecoderConfig& t = config_.text;
  int64_t B = static_cast<int64_t>(tokens.size());
  if (!cache) throw std::runtime_error("Qwen25VL::decode_step: no cache");
  const std::string misuse = cache->misuse(B, t.num_hidden_layers, 1);
  if (!misuse.empty()) throw std::runtime_error("Qwen25VL::decode_step: " + misuse);
  if (grad_enabled())
    throw std::runtime_error("Qwen25VL::decode_step: the KV cache is inference only (NoGradGuard)");
  cache->key_mask.slice(1, cache->length, cache->length + 1).fill_(1);
  std::vector<int64_t> pos(3 * B);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t b = 0; b < B; ++b) pos[c * B + b] = cache->next_position[b];
  for (int64_t b = 0; b < B; ++b) ++cache->next_position[b];
  Tensor x = embed(Tensor::from_vector(tokens, {B, 1}), Tensor(), {});
  Tensor h = decode(x, pos, Tensor(), cache);
  return linear(h.reshape({B, t.hidden_size}), head_weight());
}

CachedDecoder qwen25vl_decoder(const Qwen25VL& model) {
  CachedDecoder d;
  d.vocab_size = model.config().text.vocab_size;
  d.image_pad_token_id = model.config().image_token_id;
  d.parameters = model.params().numel();
  d.decode_step = [&model](const std::vector<int64_t>& tokens, KVCache* cache) {
    return model.decode_step(tokens, cache);
  };
  return d;
}

std::vector<std::vector<int64_t>> qwen25vl_generate(
    const Qwen25VL& model, const Tensor& input_ids, const Tensor& attention_mask,
    const Tensor& pixel_values, const std::vector<std::array<int64_t, 3>>& grids,
    const SamplingOptions& options, const std::vector<uint64_t>& seeds) {
  NoGradGuard no_grad;
  int64_t B = input_ids.size(0), S = input_ids.size(1);
  if (static_cast<int64_t>(seeds.size()) != B)
    throw std::runtime_error("qwen25vl_generate: " + std::to_string(seeds.size()) + " seeds for " +
                             std::to_string(B) + " rows");
  std::vector<int64_t> rows(B);
  std::iota(rows.begin(), rows.end(), 0);
  PrefixState prefix;
  if (options.max_new_tokens > 0)
    prefix.last_logits =
        model.prefill(input_ids, attention_mask, pixel_values, grids, S, &prefix.cache);
  std::vector<Generation> gens = sample_from(qwen25vl_decoder(model), prefix, rows, options, seeds);
  std::vector<std::vector<int64_t>> out;
  for (Generation& g : gens) out.push_back(std::move(g.tokens));
  return out;
}

}  // namespace visplay
