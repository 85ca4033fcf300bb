#include "model/config.h"

#include <cmath>
#include <stdexcept>

#include "model/file_util.h"

namespace visplay {

using nlohmann::json;

namespace {

[[noreturn]] void bad_field(const std::string& where, const std::string& field,
                            const std::string& why) {
  throw std::runtime_error(where + ": field \"" + field + "\": " + why);
}

// Readers that leave the default when the field is absent (or null) and name
// the field when it has the wrong type.
void read_int(const json& j, const char* key, int64_t& out, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (!it->is_number_integer()) bad_field(where, key, "expected an integer, got " + it->dump());
  out = it->get<int64_t>();
}

void read_double(const json& j, const char* key, double& out, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (!it->is_number()) bad_field(where, key, "expected a number, got " + it->dump());
  out = it->get<double>();
}

void read_bool(const json& j, const char* key, bool& out, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (!it->is_boolean()) bad_field(where, key, "expected true or false, got " + it->dump());
  out = it->get<bool>();
}

void read_rgb(const json& j, const char* key, std::array<float, 3>& out, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (!it->is_array() || it->size() != 3)
    bad_field(where, key, "expected an array of 3 numbers, got " + it->dump());
  for (int c = 0; c < 3; ++c) {
    if (!(*it)[c].is_number()) bad_field(where, key, "expected numbers, got " + it->dump());
    out[c] = (*it)[c].get<float>();
  }
}

// eos_token_id may be a list in Hugging Face configs; we keep the first.
void read_token_id(const json& j, const char* key, int64_t& out, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  if (it->is_array()) {
    if (it->empty() || !(*it)[0].is_number_integer())
      bad_field(where, key, "expected an integer or a list of integers, got " + it->dump());
    out = (*it)[0].get<int64_t>();
    return;
  }
  if (!it->is_number_integer()) bad_field(where, key, "expected an integer, got " + it->dump());
  out = it->get<int64_t>();
}

// Sizes past these are nonsense for any model this code can hold (they would ask for
// terabytes), so they are refused before anything is allocated (docs/fuzzing.md).
constexpr int64_t kMaxSize = int64_t{1} << 24;  // vocab, widths, image side, positions
constexpr int64_t kMaxLayers = 4096;            // decoder layers, ViT blocks
constexpr double kMaxParameters = 2e11;         // parameters in the whole model

void require_positive(int64_t v, const std::string& where, const char* field,
                      int64_t max = kMaxSize) {
  if (v <= 0) bad_field(where, field, "must be positive, got " + std::to_string(v));
  if (v > max)
    bad_field(where, field, std::to_string(v) + " is above the limit of " + std::to_string(max));
}

void require_finite_positive(double v, const std::string& where, const char* field) {
  if (!(v > 0) || !std::isfinite(v))
    bad_field(where, field, "must be positive and finite, got " + std::to_string(v));
}

}  // namespace

// In double, so that no product of absurd sizes can overflow.
double parameter_count(const VLMConfig& c) {
  const DecoderConfig& d = c.decoder;
  double D = static_cast<double>(d.hidden_size), hd = static_cast<double>(d.head_dim());
  double q = d.num_attention_heads * hd, kv = d.num_key_value_heads * hd;
  double layer = D + q * D + q + 2 * (kv * D + kv) + D * q + D + 3.0 * d.intermediate_size * D;
  double n = static_cast<double>(d.vocab_size) * D * (d.tie_word_embeddings ? 1 : 2) + D +
             layer * static_cast<double>(d.num_hidden_layers);
  if (c.has_vision) {
    const VisionConfig& v = c.vision;
    double E = static_cast<double>(v.hidden_size);
    double mlp = std::floor(static_cast<double>(v.hidden_size) * v.mlp_ratio + 0.5);
    double merge = static_cast<double>(v.spatial_merge_size);
    double merged = E * merge * merge;
    double proj =
        v.projector_hidden_size > 0 ? static_cast<double>(v.projector_hidden_size) : merged;
    double patches = std::pow(static_cast<double>(v.image_size / v.patch_size), 2);
    double patch = static_cast<double>(v.patch_size);
    n += E * static_cast<double>(v.num_channels) * patch * patch + E + patches * E +
         static_cast<double>(v.depth) * (4 * E + 4 * (E * E + E) + 2 * mlp * E + mlp + E) + 2 * E +
         proj * merged + proj + D * proj + D;
  }
  return n;
}

namespace {

// The last check of validate(): the parameter count the sizes imply, before VLM allocates it.
void check_parameter_count(const VLMConfig& c, const std::string& where) {
  double n = parameter_count(c);
  if (n > kMaxParameters)
    throw std::runtime_error(where + ": the sizes give " + std::to_string(n) +
                             " parameters, above the limit of " + std::to_string(kMaxParameters));
}

}  // namespace

void VLMConfig::validate(const std::string& where) const {
  const DecoderConfig& d = decoder;
  require_positive(d.vocab_size, where, "vocab_size");
  require_positive(d.hidden_size, where, "hidden_size");
  require_positive(d.intermediate_size, where, "intermediate_size");
  require_positive(d.num_hidden_layers, where, "num_hidden_layers", kMaxLayers);
  require_positive(d.num_attention_heads, where, "num_attention_heads");
  require_positive(d.num_key_value_heads, where, "num_key_value_heads");
  require_positive(d.max_position_embeddings, where, "max_position_embeddings");
  if (d.hidden_size % d.num_attention_heads != 0)
    bad_field(where, "hidden_size",
              std::to_string(d.hidden_size) + " is not a multiple of num_attention_heads " +
                  std::to_string(d.num_attention_heads));
  if (d.head_dim() % 2 != 0)
    bad_field(where, "hidden_size",
              "head dim " + std::to_string(d.head_dim()) + " must be even for RoPE");
  if (d.num_attention_heads % d.num_key_value_heads != 0)
    bad_field(where, "num_key_value_heads",
              std::to_string(d.num_key_value_heads) + " does not divide num_attention_heads " +
                  std::to_string(d.num_attention_heads));
  require_finite_positive(d.rms_norm_eps, where, "rms_norm_eps");
  require_finite_positive(d.rope_theta, where, "rope_theta");
  auto check_id = [&](int64_t id, const char* field) {
    if (id < -1 || id >= d.vocab_size)
      bad_field(where, field,
                std::to_string(id) + " is outside the vocabulary [0, " +
                    std::to_string(d.vocab_size) + ")");
  };
  check_id(image_pad_token_id, "image_token_id");
  check_id(vision_start_token_id, "vision_start_token_id");
  check_id(vision_end_token_id, "vision_end_token_id");
  check_id(eos_token_id, "eos_token_id");
  check_id(pad_token_id, "pad_token_id");
  if (!has_vision) {
    check_parameter_count(*this, where);
    return;
  }
  std::string vw = where + ": vision_config";
  const VisionConfig& v = vision;
  require_positive(v.image_size, vw, "image_size");
  require_positive(v.patch_size, vw, "patch_size");
  require_positive(v.num_channels, vw, "num_channels");
  require_positive(v.hidden_size, vw, "hidden_size");
  require_positive(v.depth, vw, "depth", kMaxLayers);
  require_positive(v.num_heads, vw, "num_heads");
  require_positive(v.spatial_merge_size, vw, "spatial_merge_size");
  if (v.image_size % v.patch_size != 0)
    bad_field(vw, "image_size",
              std::to_string(v.image_size) + " is not a multiple of patch_size " +
                  std::to_string(v.patch_size));
  if (v.grid() % v.spatial_merge_size != 0)
    bad_field(vw, "spatial_merge_size",
              "patch grid " + std::to_string(v.grid()) + " is not a multiple of " +
                  std::to_string(v.spatial_merge_size));
  if (v.hidden_size % v.num_heads != 0)
    bad_field(vw, "hidden_size",
              std::to_string(v.hidden_size) + " is not a multiple of num_heads " +
                  std::to_string(v.num_heads));
  // Checked before mlp_hidden() converts hidden_size * mlp_ratio to an integer.
  if (!(v.mlp_ratio > 0) || !(v.mlp_ratio <= 1024) || v.mlp_hidden() <= 0)
    bad_field(vw, "mlp_ratio",
              "must be positive and at most 1024, got " + std::to_string(v.mlp_ratio));
  require_finite_positive(v.layer_norm_eps, vw, "layer_norm_eps");
  if (v.projector_hidden_size < 0 || v.projector_hidden_size > kMaxSize)
    bad_field(vw, "projector_hidden_size",
              "must be in [0, " + std::to_string(kMaxSize) + "], got " +
                  std::to_string(v.projector_hidden_size));
  if (v.num_channels != 3) bad_field(vw, "num_channels", "only RGB (3) images are supported");
  for (int c = 0; c < 3; ++c) {
    if (!(v.image_std[c] > 0) || !std::isfinite(v.image_std[c]))
      bad_field(vw, "image_std", "entries must be positive and finite");
    if (!std::isfinite(v.image_mean[c])) bad_field(vw, "image_mean", "entries must be finite");
  }
  if (image_pad_token_id < 0)
    bad_field(where, "image_token_id", "a vision model needs an image pad token");
  check_parameter_count(*this, where);
}

json config_to_json(const VLMConfig& c) {
  const DecoderConfig& d = c.decoder;
  json j;
  j["architectures"] = json::array({c.has_vision ? "VisplayVLM" : "Qwen2ForCausalLM"});
  j["model_type"] = c.has_vision ? "visplay_vlm" : "qwen2";
  j["vocab_size"] = d.vocab_size;
  j["hidden_size"] = d.hidden_size;
  j["intermediate_size"] = d.intermediate_size;
  j["num_hidden_layers"] = d.num_hidden_layers;
  j["num_attention_heads"] = d.num_attention_heads;
  j["num_key_value_heads"] = d.num_key_value_heads;
  j["rms_norm_eps"] = d.rms_norm_eps;
  j["rope_theta"] = d.rope_theta;
  j["tie_word_embeddings"] = d.tie_word_embeddings;
  j["max_position_embeddings"] = d.max_position_embeddings;
  j["hidden_act"] = "silu";
  j["torch_dtype"] = "float32";
  auto put_id = [&](const char* key, int64_t id) {
    if (id >= 0) j[key] = id;
  };
  put_id("image_token_id", c.image_pad_token_id);
  put_id("vision_start_token_id", c.vision_start_token_id);
  put_id("vision_end_token_id", c.vision_end_token_id);
  put_id("eos_token_id", c.eos_token_id);
  put_id("pad_token_id", c.pad_token_id);
  if (c.has_vision) {
    const VisionConfig& v = c.vision;
    json vj;
    vj["image_size"] = v.image_size;
    vj["patch_size"] = v.patch_size;
    vj["num_channels"] = v.num_channels;
    vj["hidden_size"] = v.hidden_size;
    vj["depth"] = v.depth;
    vj["num_heads"] = v.num_heads;
    vj["mlp_ratio"] = v.mlp_ratio;
    vj["layer_norm_eps"] = v.layer_norm_eps;
    vj["image_mean"] = v.image_mean;
    vj["image_std"] = v.image_std;
    vj["spatial_merge_size"] = v.spatial_merge_size;
    vj["projector_hidden_size"] = v.projector_hidden_size;
    j["vision_config"] = vj;
  }
  return j;
}

VLMConfig config_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw std::runtime_error(where + ": expected a JSON object");
  VLMConfig c;
  DecoderConfig& d = c.decoder;
  // Fields the decoder cannot run without must be present.
  for (const char* key : {"vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                          "num_attention_heads"})
    if (!j.contains(key)) bad_field(where, key, "missing");
  read_int(j, "vocab_size", d.vocab_size, where);
  read_int(j, "hidden_size", d.hidden_size, where);
  read_int(j, "intermediate_size", d.intermediate_size, where);
  read_int(j, "num_hidden_layers", d.num_hidden_layers, where);
  read_int(j, "num_attention_heads", d.num_attention_heads, where);
  d.num_key_value_heads = d.num_attention_heads;  // Hugging Face default
  read_int(j, "num_key_value_heads", d.num_key_value_heads, where);
  read_double(j, "rms_norm_eps", d.rms_norm_eps, where);
  read_double(j, "rope_theta", d.rope_theta, where);
  read_bool(j, "tie_word_embeddings", d.tie_word_embeddings, where);
  read_int(j, "max_position_embeddings", d.max_position_embeddings, where);
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    bad_field(where, "hidden_act", "only \"silu\" is supported, got " + j["hidden_act"].dump());
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null())
    bad_field(where, "rope_scaling", "RoPE scaling is not supported");
  // Newer transformers write {"rope_parameters": {"rope_theta": ..., "rope_type": "default"}}.
  if (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) {
    const json& rp = j["rope_parameters"];
    if (!rp.is_object())
      bad_field(where, "rope_parameters", "expected an object, got " + rp.dump());
    if (rp.contains("rope_type") && rp["rope_type"] != "default")
      bad_field(where, "rope_parameters",
                "only rope_type \"default\" is supported, got " + rp["rope_type"].dump());
    read_double(rp, "rope_theta", d.rope_theta, where + ": rope_parameters");
  }
  bool sliding = false;
  read_bool(j, "use_sliding_window", sliding, where);
  if (sliding) bad_field(where, "use_sliding_window", "sliding-window attention is not supported");
  read_token_id(j, "image_token_id", c.image_pad_token_id, where);
  read_token_id(j, "vision_start_token_id", c.vision_start_token_id, where);
  read_token_id(j, "vision_end_token_id", c.vision_end_token_id, where);
  read_token_id(j, "eos_token_id", c.eos_token_id, where);
  read_token_id(j, "pad_token_id", c.pad_token_id, where);
  auto vit = j.find("vision_config");
  c.has_vision = vit != j.end() && !vit->is_null();
  if (c.has_vision) {
    std::string vw = where + ": vision_config";
    if (!vit->is_object()) throw std::runtime_error(vw + ": expected a JSON object");
    VisionConfig& v = c.vision;
    for (const char* key : {"image_size", "patch_size", "hidden_size", "depth", "num_heads"})
      if (!vit->contains(key)) bad_field(vw, key, "missing");
    read_int(*vit, "image_size", v.image_size, vw);
    read_int(*vit, "patch_size", v.patch_size, vw);
    read_int(*vit, "num_channels", v.num_channels, vw);
    read_int(*vit, "hidden_size", v.hidden_size, vw);
    read_int(*vit, "depth", v.depth, vw);
    read_int(*vit, "num_heads", v.num_heads, vw);
    read_double(*vit, "mlp_ratio", v.mlp_ratio, vw);
    read_double(*vit, "layer_norm_eps", v.layer_norm_eps, vw);
    read_rgb(*vit, "image_mean", v.image_mean, vw);
    read_rgb(*vit, "image_std", v.image_std, vw);
    read_int(*vit, "spatial_merge_size", v.spatial_merge_size, vw);
    read_int(*vit, "projector_hidden_size", v.projector_hidden_size, vw);
  }
  c.validate(where);
  return c;
}

VLMConfig load_config(const std::string& path) {
  std::string text = read_text_file(path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": invalid JSON: " + e.what());
  }
  return config_from_json(j, path);
}

void save_config(const std::string& path, const VLMConfig& config) {
  config.validate(path);
  write_file_atomic(path, config_to_json(config).dump(2) + "\n");
}

}  // namespace visplay
