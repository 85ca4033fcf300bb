// Qwen2.5-VL (the paper's base models: Qwen2.5-VL-3B/7B-Instruct), exactly as
// the Hugging Face reference computes it, on the runtime's ops.
//
// Vision tower: the processor cuts the image into 14x14 patches over 2
// temporal frames (a still image is repeated), in "merge-block-major" order
// (each 2x2 block of neighbouring patches is 4 consecutive rows); the Conv3d
// patch embedding is a linear map of each flattened (c, t, y, x) patch. The
// rows are then regrouped window by window (112-pixel windows = 4x4 merged
// tokens, the reference's window index), 2-D rotary embedding (height
// frequencies then width frequencies), pre-RMSNorm blocks with bidirectional
// attention inside each window (full attention over the whole image in the
// layers of fullatt_block_indexes) and a SwiGLU MLP with biases; the merger
// RMS-normalises each patch, concatenates each 2x2 block and maps it with
// Linear-GELU(erf)-Linear to the LM width; the rows go back to raster order.
//
// Decoder: Qwen2 (RMSNorm, q/k/v with bias, GQA, SwiGLU) with multimodal RoPE:
// each token has (temporal, height, width) positions and frequency j of every
// head uses the component that mrope_section assigns to it. Positions follow
// the reference get_rope_index: text counts on, an image's tokens get
// (start, start + row, start + col) and the text after it restarts at
// start + max(rows, cols).
//
// Parameter names are the released checkpoints' (model.layers.N..., visual...,
// lm_head.weight); transformers 5's nested names (model.language_model...,
// model.visual...) are accepted when loading.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/image.h"
#include "model/params.h"
#include "model/sampler.h"
#include "model/vlm.h"
#include "runtime/ops.h"
#include "runtime/tensor.h"

namespace visplay {

struct Qwen25VLVisionConfig {
  int64_t depth = 32;
  int64_t hidden_size = 1280;
  int64_t intermediate_size = 3420;
  int64_t num_heads = 16;
  int64_t in_channels = 3;
  int64_t patch_size = 14;
  int64_t spatial_merge_size = 2;
  int64_t temporal_patch_size = 2;
  int64_t window_size = 112;  // pixels
  int64_t out_hidden_size = 2048;
  std::vector<int64_t> fullatt_block_indexes = {7, 15, 23, 31};
  double rope_theta = 10000.0;
  int64_t tokens_per_second = 2;

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
  int64_t merge_unit() const { return spatial_merge_size * spatial_merge_size; }
  bool full_attention(int64_t layer) const;
};

struct Qwen25VLConfig {
  DecoderConfig text;                                 // Qwen2 decoder fields (rope_theta included)
  std::vector<int64_t> mrope_section = {16, 24, 24};  // sums to head_dim / 2
  Qwen25VLVisionConfig vision;
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;
  int64_t eos_token_id = 151645;
  int64_t pad_token_id = -1;
  nlohmann::json source;  // the config.json as read (written back on save)

  void validate(const std::string& where) const;
};

// Reads the released layout (text fields at the top level, rope_scaling.mrope_section,
// vision_config.in_chans) and transformers 5's (text_config, rope_parameters).
Qwen25VLConfig qwen25vl_config_from_json(const nlohmann::json& j, const std::string& where);
Qwen25VLConfig load_qwen25vl_config(const std::string& path);

// Parameters the config implies (tied embeddings counted once), without
// building the model: 3,754,622,976 for Qwen2.5-VL-3B, 8,292,166,656 for 7B.
int64_t qwen25vl_parameter_count(const Qwen25VLConfig& config);

// ---- image preprocessing (Qwen2VLImageProcessor) ----

struct Qwen25VLImageConfig {
  int64_t min_pixels = 56 * 56;
  int64_t max_pixels = 28 * 28 * 1280;
  int64_t patch_size = 14;
  int64_t temporal_patch_size = 2;
  int64_t merge_size = 2;
  std::array<double, 3> image_mean = {0.48145466, 0.4578275, 0.40821073};
  std::array<double, 3> image_std = {0.26862954, 0.26130258, 0.27577711};
};

// DIR/preprocessor_config.json (min_pixels/max_pixels or size.shortest_edge/
// longest_edge), else DIR/processor_config.json's "image_processor", else defaults.
Qwen25VLImageConfig load_qwen25vl_image_config(const std::string& dir);

// The processor's target size: both sides multiples of `factor`, the area
// within [min_pixels, max_pixels], the aspect ratio kept as well as possible.
// Returns {height, width}. Throws for an aspect ratio above 200.
std::array<int64_t, 2> qwen25vl_smart_resize(int64_t height, int64_t width, int64_t factor,
                                             int64_t min_pixels, int64_t max_pixels);

struct Qwen25VLPixels {
  Tensor pixel_values;                        // [patches, C*T*P*P] f32
  std::vector<std::array<int64_t, 3>> grids;  // per image (t, h, w) in patches
};

// Resize (qwen25vl_resize_bicubic; skipped when the size is already right),
// rescale to [0, 1], normalise, repeat to the temporal patch size and flatten the patches in the
// processor's order. Several images are concatenated along the patch rows.
Qwen25VLPixels qwen25vl_preprocess(const std::vector<Image>& images,
                                   const Qwen25VLImageConfig& cfg);

// Bicubic resize of an RGB8 image exactly as torchvision's resize(BICUBIC,
// antialias=True) on a uint8 tensor: a separable filter (Keys kernel, a = -0.5)
// widened by the downscale factor, fixed-point weights, the horizontal pass
// rounded to bytes before the vertical one.
Image qwen25vl_resize_bicubic(const Image& image, int out_width, int out_height);

// ---- chat template ----

// The instruct models' chat template for one user turn: the default system
// message (or `system`), then the user turn with each image as
// <|vision_start|> + <|image_pad|> x tokens + <|vision_end|> before the text,
// then "<|im_start|>assistant\n". image_tokens[i] = t*h*w / merge^2 of image i.
std::string qwen25vl_chat_prompt(const std::string& user_text,
                                 const std::vector<int64_t>& image_tokens,
                                 const std::string& system = "You are a helpful assistant.");

// ---- the model ----

class Qwen25VL {
 public:
  // Registers every parameter (uninitialised) in param_dtype: the loader allocates them in the
  // dtype it loads, so a bf16 load never holds the f32 model.
  explicit Qwen25VL(Qwen25VLConfig config, DType param_dtype = DType::f32);

  const Qwen25VLConfig& config() const { return config_; }
  ParamStore& params() { return params_; }
  const ParamStore& params() const { return params_; }
  void init_weights(uint64_t seed);

  // pixel_values [patches, patch_dim] + grids -> visual tokens [sum t*h*w/4, out_hidden],
  // images in order, each in raster order of its merged tokens.
  Tensor encode_images(const Tensor& pixel_values,
                       const std::vector<std::array<int64_t, 3>>& grids) const;

  // M-RoPE positions [3, B, S] (i64) as get_rope_index computes them: per row,
  // over its real tokens (attention_mask 1; undefined = all real), pads get 0.
  // Each run of image-pad tokens is cut into images of t*h*w/4 tokens, taking
  // grids in order (batch row by row).
  Tensor rope_index(const Tensor& input_ids, const Tensor& attention_mask,
                    const std::vector<std::array<int64_t, 3>>& grids) const;

  // Logits [B, S, V] of a left-padded batch; the image-pad rows are replaced by
  // the visual tokens in order. pixel_values may be undefined for text only.
  Tensor logits(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& pixel_values,
                const std::vector<std::array<int64_t, 3>>& grids) const;
  // Final-normed hidden states [B, S, D] (same inputs).
  Tensor hidden_states(const Tensor& input_ids, const Tensor& attention_mask,
                       const Tensor& pixel_values,
                       const std::vector<std::array<int64_t, 3>>& grids) const;

  // hidden_states with the visual tokens given instead of pixels: visual [image-pad tokens,
  // out_hidden], row k replacing the batch's k-th image-pad token (row by row); grids, one per
  // image in that order, place the M-RoPE positions. Lets a caller encode each distinct image
  // once and look its rows up for every sequence that shows it (GRPO groups).
  Tensor hidden_states_from_visual(const Tensor& input_ids, const Tensor& attention_mask,
                                   const Tensor& visual,
                                   const std::vector<std::array<int64_t, 3>>& grids) const;

  const Tensor& head_weight() const;
  // log p(targets[b, s] | tokens <= s) [B, S] through the fused LM-head op
  // (never materialising the logits), plus the entropies: what GRPO scores.
  TokenLogprobs token_logprobs(const Tensor& input_ids, const Tensor& attention_mask,
                               const Tensor& pixel_values,
                               const std::vector<std::array<int64_t, 3>>& grids,
                               const Tensor& targets) const;

  // Activation recomputation: when on, training forwards (grad mode, no cache) run each
  // decoder layer and vision block through runtime checkpoint(): only the layer inputs stay
  // alive until backward, which recomputes the layer. Gradients are bit-identical on cpu.
  void set_recompute_layers(bool on) { recompute_layers_ = on; }
  bool recompute_layers() const { return recompute_layers_; }

  // ---- incremental decoding (use under NoGradGuard) ----
  // The cache is model/vlm.h's KVCache, on the weights' device in their dtype,
  // so it has select_rows and share_prefix. After the prompt, each row's
  // next_position is its largest M-RoPE prompt position + 1 (the reference's
  // rope_deltas): generated text takes it for all three components.
  // Runs the prompt batch into a new cache with room for `capacity` tokens in
  // all; returns the logits of each row's last token [B, V].
  Tensor prefill(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& pixel_values,
                 const std::vector<std::array<int64_t, 3>>& grids, int64_t capacity,
                 KVCache* cache) const;
  // Appends one token per row; returns the next logits [B, V].
  Tensor decode_step(const std::vector<int64_t>& tokens, KVCache* cache) const;

 private:
  void register_parameters(DType dtype);
  Tensor vision_block(int64_t layer, const Tensor& x, const Tensor& cos, const Tensor& sin,
                      const std::vector<int64_t>& segments) const;
  Tensor decoder_layer(int64_t layer, const Tensor& x, const Tensor& cos, const Tensor& sin,
                       const Tensor& key_mask, KVCache* cache) const;
  // Input embeddings [B, S, D] with image-pad rows replaced by the visual tokens.
  Tensor embed(const Tensor& input_ids, const Tensor& pixel_values,
               const std::vector<std::array<int64_t, 3>>& grids) const;
  // The same with the visual tokens given (undefined: text only).
  Tensor embed_visual(const Tensor& input_ids, const Tensor& visual_tokens) const;
  // The decoder stack + final norm on embeddings with M-RoPE positions [3, B, S].
  Tensor decode(Tensor x, const std::vector<int64_t>& positions, const Tensor& key_mask,
                KVCache* cache) const;

  // decoder_layer / vision_block, through checkpoint() when recompute_layers_ is on.
  Tensor decoder_layer_maybe_recomputed(int64_t layer, const Tensor& x, const Tensor& cos,
                                        const Tensor& sin, const Tensor& key_mask,
                                        KVCache* cache) const;
  Tensor vision_block_maybe_recomputed(int64_t layer, const Tensor& x, const Tensor& cos,
                                       const Tensor& sin,
                                       const std::vector<int64_t>& segments) const;
  // The parameters named prefix* that require grad (a checkpointed layer's leaves).
  std::vector<Tensor> trainable_params_under(const std::string& prefix) const;

  Qwen25VLConfig config_;
  ParamStore params_;
  bool recompute_layers_ = false;
};

// Loads a Hugging Face directory: config.json, model.safetensors or the shards
// of model.safetensors.index.json (F32, BF16 or F64; converted to `dtype` tensor by tensor as
// it is read, so a bf16 load peaks at the bf16 model plus one stored tensor; the values equal
// an f32 load converted afterwards, bit for bit).
// Every parameter must be present with the right shape; unknown tensors are an
// error, naming the file and tensor.
Qwen25VL load_qwen25vl(const std::string& dir, DType dtype = DType::f32);

// The model's step for model/sampler.h's decode loop (sample_from): the
// tokens at each row's next M-RoPE position through decode_step. The model
// must outlive the result.
CachedDecoder qwen25vl_decoder(const Qwen25VL& model);

// Samples up to options.max_new_tokens per prompt row: prefill, then
// model/sampler.h's decode loop (sample_token: greedy, temperature, top-k,
// top-p, stop and banned tokens; the image-pad token is always banned).
// seeds: one per row. Returns each row's tokens (a stop token is kept as the
// last one).
std::vector<std::vector<int64_t>> qwen25vl_generate(
    const Qwen25VL& model, const Tensor& input_ids, const Tensor& attention_mask,
    const Tensor& pixel_values, const std::vector<std::array<int64_t, 3>>& grids,
    const SamplingOptions& options, const std::vector<uint64_t>& seeds);

struct Qwen25VLSaveOptions {
  DType dtype = DType::bf16;                           // stored dtype (bf16, f32)
  int64_t max_shard_bytes = 5LL * 1024 * 1024 * 1024;  // as save_pretrained's 5GB
  std::string source_dir;  // copy tokenizer/processor files from here (optional)
};

// Writes DIR in the same layout: config.json, model-0000N-of-0000M.safetensors
// (or model.safetensors when one shard) + model.safetensors.index.json, and the
// tokenizer / preprocessor / chat template files of source_dir.
void save_qwen25vl(const std::string& dir, const Qwen25VL& model,
                   const Qwen25VLSaveOptions& options = {});

}  // namespace visplay
