// Model configuration: the vision tower (ViT), the projector (Qwen2-VL style
// 2x2 patch merger) and the Qwen2 decoder, plus the special token ids that tie
// them together. Saved as one config.json whose top level uses the Hugging
// Face Qwen2 field names, so a plain Qwen2 config.json loads as a text-only
// model, with the vision part under "vision_config".
#pragma once
#include <array>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace visplay {

struct VisionConfig {
  int64_t image_size = 32;  // square input, pixels
  int64_t patch_size = 4;   // so (image_size / patch_size)^2 patches
  int64_t num_channels = 3;
  int64_t hidden_size = 64;  // ViT width
  int64_t depth = 2;         // number of blocks
  int64_t num_heads = 4;
  double mlp_ratio = 4.0;  // MLP hidden = round(hidden_size * mlp_ratio)
  double layer_norm_eps = 1e-6;
  std::array<float, 3> image_mean = {0.5f, 0.5f, 0.5f};
  std::array<float, 3> image_std = {0.5f, 0.5f, 0.5f};
  // Projector: each merge x merge block of patches becomes one visual token.
  int64_t spatial_merge_size = 2;
  int64_t projector_hidden_size = 0;  // 0 means hidden_size * merge^2

  int64_t grid() const { return image_size / patch_size; }  // patches per side
  int64_t num_patches() const { return grid() * grid(); }
  int64_t patch_dim() const { return num_channels * patch_size * patch_size; }
  int64_t mlp_hidden() const { return static_cast<int64_t>(hidden_size * mlp_ratio + 0.5); }
  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t merged_dim() const { return hidden_size * spatial_merge_size * spatial_merge_size; }
  int64_t projector_hidden() const {
    return projector_hidden_size > 0 ? projector_hidden_size : merged_dim();
  }
  // Visual tokens per image after the merger.
  int64_t num_visual_tokens() const {
    int64_t g = grid() / spatial_merge_size;
    return g * g;
  }
};

// Qwen2 decoder hyper-parameters, Hugging Face names.
struct DecoderConfig {
  int64_t vocab_size = 256;
  int64_t hidden_size = 64;
  int64_t intermediate_size = 128;
  int64_t num_hidden_layers = 2;
  int64_t num_attention_heads = 4;
  int64_t num_key_value_heads = 2;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  int64_t max_position_embeddings = 2048;

  int64_t head_dim() const { return hidden_size / num_attention_heads; }
};

struct VLMConfig {
  DecoderConfig decoder;
  bool has_vision = true;  // false: a text-only Qwen2 model (no vision_config)
  VisionConfig vision;
  // Special token ids (-1 = none). Qwen2-VL names in config.json.
  int64_t image_pad_token_id = -1;
  int64_t vision_start_token_id = -1;
  int64_t vision_end_token_id = -1;
  int64_t eos_token_id = -1;
  int64_t pad_token_id = -1;

  // Throws std::runtime_error naming the first bad field ("where: field: why").
  // Sizes are bounded too (each at most 2^24, layers at most 4096, the whole model at
  // most 2e11 parameters), so nonsense is refused before anything is allocated.
  void validate(const std::string& where = "config") const;
};

// The number of parameters a VLM with this config has (what VLM's constructor
// registers), computed without allocating anything.
double parameter_count(const VLMConfig& config);

// JSON conversion. from_json validates and names the bad field; unknown fields
// are ignored (a Hugging Face config has many we do not use).
nlohmann::json config_to_json(const VLMConfig& config);
VLMConfig config_from_json(const nlohmann::json& j, const std::string& where = "config");

// config.json files. load names the file in every error.
VLMConfig load_config(const std::string& path);
void save_config(const std::string& path, const VLMConfig& config);

}  // namespace visplay
