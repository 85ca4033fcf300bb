#include "model/policy.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

#include "model/checkpoint.h"
#include "model/completion.h"
#include "model/image.h"
#include "runtime/ops.h"
#include "runtime/random.h"

namespace fs = std::filesystem;

namespace visplay {

// ---------------------------------------------------------------------------
// The demo VLM: every call forwards to the functions the loop used before the interface, so
// results are unchanged bit for bit.

std::unique_ptr<PolicyModel> VLMPolicy::clone() const {
  VLM copy(model_.config());
  copy.params() = model_.params().clone();
  copy.params().set_requires_grad(false);
  return std::make_unique<VLMPolicy>(std::move(copy));
}

bool VLMPolicy::is_vision_parameter(const std::string& name) const {
  return name.rfind("vision.", 0) == 0 || name.rfind("projector.", 0) == 0;
}

// As load_image_for_model: a bilinear resize to the model's square size, then normalised CHW.
Tensor VLMPolicy::prepare_image(const Image& image) const {
  const VisionConfig& v = model_.config().vision;
  const int size = static_cast<int>(v.image_size);
  const Image& sized =
      image.width == size && image.height == size ? image : resize_bilinear(image, size, size);
  std::vector<float> chw = to_chw_normalized(sized, v.image_mean.data(), v.image_std.data());
  return Tensor::from_vector(chw, {3, size, size});
}

int64_t VLMPolicy::visual_tokens(const Tensor& prepared) const {
  const int64_t images = prepared.dim() == 4 ? prepared.size(0) : 1;
  return images * model_.config().vision.num_visual_tokens();
}

std::vector<Generation> VLMPolicy::sample(const std::vector<PromptInput>& prompts,
                                          const std::vector<int64_t>& rows,
                                          const SamplingOptions& options,
                                          const std::vector<uint64_t>& seeds) const {
  return sample_from(model_, prefill(model_, prompts), rows, options, seeds);
}

TokenLogprobs VLMPolicy::completion_logprobs(
    const std::vector<PromptInput>& prompts, const std::vector<int64_t>& rows,
    const std::vector<std::vector<int64_t>>& completions) const {
  CompletionBatch batch = make_completion_batch(model_.config(), prompts, rows, completions);
  return visplay::completion_logprobs(model_, batch);
}

void VLMPolicy::save(const std::string& dir, const std::string& source_dir) const {
  const fs::path tok = fs::path(source_dir) / "tokenizer.json";
  save_checkpoint(dir, model_, !source_dir.empty() && fs::exists(tok) ? tok.string() : "");
}

// ---------------------------------------------------------------------------
// Qwen2.5-VL

namespace {

// Left-padded prompt batch of `rows` (indices into prompts) followed by each row's completion
// (empty for prefill), right padded: ids, mask, the grid of every row's image in row order,
// and each distinct prompt's image once (a GRPO group shares one) with, for every image-pad
// slot of the batch, its row among the encoded visual tokens of those distinct images.
struct QwenBatch {
  Tensor ids, mask;  // [B, S]
  std::vector<std::array<int64_t, 3>> grids;
  Tensor unique_pixels;  // [patches, patch_dim] of the distinct images (undefined: none)
  std::vector<std::array<int64_t, 3>> unique_grids;
  Tensor visual_rows;  // [image-pad slots] i64
  int64_t prompt_columns = 0;
};

QwenBatch make_qwen_batch(const Qwen25VLConfig& c, const std::vector<PromptInput>& prompts,
                          const std::vector<int64_t>& rows,
                          const std::vector<std::vector<int64_t>>& completions, const char* where) {
  const Qwen25VLVisionConfig& v = c.vision;
  int64_t B = static_cast<int64_t>(rows.size()), P = 0, L = 0;
  if (B == 0) throw std::runtime_error(std::string(where) + ": no sequences");
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= static_cast<int64_t>(prompts.size()))
      throw std::runtime_error(std::string(where) + ": row " + std::to_string(i) +
                               " names prompt " + std::to_string(rows[i]) + " of " +
                               std::to_string(prompts.size()));
    P = std::max<int64_t>(P, static_cast<int64_t>(prompts[rows[i]].ids.size()));
    if (!completions.empty()) L = std::max<int64_t>(L, static_cast<int64_t>(completions[i].size()));
  }
  if (P == 0) throw std::runtime_error(std::string(where) + ": empty prompt");
  const int64_t S = P + L, pad = c.pad_token_id >= 0 ? c.pad_token_id : 0;
  std::vector<int64_t> ids(B * S, pad);
  std::vector<int32_t> mask(B * S, 0);
  std::vector<Tensor> images;
  std::vector<int64_t> visual_rows, first_row(prompts.size(), -1);
  int64_t unique_tokens = 0;
  QwenBatch b;
  for (int64_t i = 0; i < B; ++i) {
    const PromptInput& p = prompts[rows[i]];
    const int64_t off = P - static_cast<int64_t>(p.ids.size());
    for (size_t s = 0; s < p.ids.size(); ++s)
      ids[i * S + off + s] = p.ids[s], mask[i * S + off + s] = 1;
    if (!completions.empty()) {
      for (size_t k = 0; k < completions[i].size(); ++k) {
        const int64_t t = completions[i][k];
        if (t < 0 || t >= c.text.vocab_size)
          throw std::runtime_error(std::string(where) + ": completion " + std::to_string(i) +
                                   " has token " + std::to_string(t) +
                                   " outside the vocabulary of " +
                                   std::to_string(c.text.vocab_size));
        if (t == c.image_token_id)
          throw std::runtime_error(std::string(where) + ": completion " + std::to_string(i) +
                                   " contains the image-pad token");
        ids[i * S + P + k] = t;
        mask[i * S + P + k] = 1;
      }
    }
    if (!p.pixels.defined()) continue;
    if (p.pixels.dim() != 4 || p.pixels.size(3) != v.patch_dim())
      throw std::runtime_error(std::string(where) + ": prompt " + std::to_string(rows[i]) +
                               " image must be a prepared Qwen2.5-VL image [t, h, w, " +
                               std::to_string(v.patch_dim()) + "], got " + p.pixels.str());
    const std::array<int64_t, 3> grid = {p.pixels.size(0), p.pixels.size(1), p.pixels.size(2)};
    const int64_t tokens = grid[0] * grid[1] * grid[2] / v.merge_unit();
    b.grids.push_back(grid);
    if (first_row[rows[i]] < 0) {
      first_row[rows[i]] = unique_tokens;
      unique_tokens += tokens;
      b.unique_grids.push_back(grid);
      images.push_back(p.pixels.reshape({-1, v.patch_dim()}));
    }
    for (int64_t t = 0; t < tokens; ++t) visual_rows.push_back(first_row[rows[i]] + t);
  }
  b.ids = Tensor::from_vector(ids, {B, S});
  b.mask = Tensor::from_vector(mask, {B, S});
  if (!images.empty()) {
    b.unique_pixels = images.size() == 1 ? images[0] : concat(images, 0);
    b.visual_rows = Tensor::from_vector(visual_rows, {static_cast<int64_t>(visual_rows.size())});
  }
  b.prompt_columns = P;
  return b;
}

}  // namespace

Qwen25VLPolicy::Qwen25VLPolicy(std::unique_ptr<Qwen25VL> model, Qwen25VLImageConfig images)
    : model_(std::move(model)), images_(images) {}

void Qwen25VLPolicy::set_pixel_bounds(int64_t min_pixels, int64_t max_pixels) {
  if (min_pixels < 1 || max_pixels < min_pixels)
    throw std::runtime_error("Qwen2.5-VL image bounds: min_pixels " + std::to_string(min_pixels) +
                             ", max_pixels " + std::to_string(max_pixels));
  images_.min_pixels = min_pixels;
  images_.max_pixels = max_pixels;
}

std::unique_ptr<PolicyModel> Qwen25VLPolicy::clone() const {
  auto copy = std::make_unique<Qwen25VL>(model_->config());
  copy->params() = model_->params().clone();
  copy->params().set_requires_grad(false);
  return std::make_unique<Qwen25VLPolicy>(std::move(copy), images_);
}

bool Qwen25VLPolicy::is_vision_parameter(const std::string& name) const {
  return name.rfind("visual.", 0) == 0;
}

Tensor Qwen25VLPolicy::prepare_image(const Image& image) const {
  Qwen25VLPixels px = qwen25vl_preprocess({image}, images_);
  const auto& g = px.grids.at(0);
  return px.pixel_values.reshape({g[0], g[1], g[2], px.pixel_values.size(1)});
}

int64_t Qwen25VLPolicy::visual_tokens(const Tensor& prepared) const {
  if (prepared.dim() != 4)
    throw std::runtime_error("Qwen25VLPolicy: a prepared image is [t, h, w, patch_dim], got " +
                             prepared.str());
  return prepared.size(0) * prepared.size(1) * prepared.size(2) /
         model_->config().vision.merge_unit();
}

// One prefill of the distinct prompts, then model/sampler.h's decode loop (the samples of a
// prompt read its cached prefix, or copy it off the CPU).
std::vector<Generation> Qwen25VLPolicy::sample(const std::vector<PromptInput>& prompts,
                                               const std::vector<int64_t>& rows,
                                               const SamplingOptions& options,
                                               const std::vector<uint64_t>& seeds) const {
  PrefixState prefix;
  if (rows.empty() || options.max_new_tokens <= 0)  // nothing to decode: no prefill
    return sample_from(qwen25vl_decoder(*model_), prefix, rows, options, seeds);
  NoGradGuard no_grad;
  std::vector<int64_t> all(prompts.size());
  std::iota(all.begin(), all.end(), 0);
  QwenBatch b = make_qwen_batch(model_->config(), prompts, all, {}, "Qwen25VLPolicy::sample");
  // Every prompt once: the distinct images are the batch's images, in order.
  // The images go to the weights' device (the cache is built there too).
  const Device device = model_->head_weight().device();
  Tensor pixels = b.unique_pixels.defined() ? b.unique_pixels.to(device) : Tensor();
  prefix.last_logits =
      model_->prefill(b.ids, b.mask, pixels, b.grids, b.prompt_columns, &prefix.cache);
  return sample_from(qwen25vl_decoder(*model_), prefix, rows, options, seeds);
}

TokenLogprobs Qwen25VLPolicy::completion_logprobs(
    const std::vector<PromptInput>& prompts, const std::vector<int64_t>& rows,
    const std::vector<std::vector<int64_t>>& completions) const {
  const char* where = "Qwen25VLPolicy::completion_logprobs";
  if (rows.size() != completions.size())
    throw std::runtime_error(std::string(where) + ": " + std::to_string(rows.size()) +
                             " rows but " + std::to_string(completions.size()) + " completions");
  QwenBatch b = make_qwen_batch(model_->config(), prompts, rows, completions, where);
  const int64_t N = static_cast<int64_t>(rows.size()), P = b.prompt_columns, L = b.ids.size(1) - P;
  if (L == 0) return {Tensor::zeros({N, 0}), Tensor::zeros({N, 0})};
  std::vector<int64_t> targets(N * L, 0);
  std::vector<float> cmask(N * L, 0.0f);
  for (int64_t i = 0; i < N; ++i)
    for (size_t k = 0; k < completions[i].size(); ++k) {
      targets[i * L + k] = completions[i][k];
      cmask[i * L + k] = 1.0f;
    }
  // Each distinct image through the vision tower once; its rows looked up (differentiably) for
  // every sequence that shows it.
  const Device device = model_->head_weight().device();
  Tensor visual;
  if (b.unique_pixels.defined())
    visual =
        embedding(model_->encode_images(b.unique_pixels.to(device), b.unique_grids), b.visual_rows);
  Tensor hidden = model_->hidden_states_from_visual(b.ids, b.mask, visual, b.grids);
  // Hidden state at column P-1+k predicts completion token k.
  Tensor h = hidden.slice(1, P - 1, P - 1 + L).to(DType::f32);
  TokenLogprobs lp =
      token_logprobs(h, model_->head_weight().to(DType::f32), Tensor::from_vector(targets, {N, L}));
  Tensor mask = Tensor::from_vector(cmask, {N, L}, DType::f32, device);
  return {mul(lp.logprobs, mask), mul(lp.entropy, mask)};
}

void Qwen25VLPolicy::save(const std::string& dir, const std::string& source_dir) const {
  Qwen25VLSaveOptions o;
  o.dtype = DType::f32;
  o.source_dir = source_dir;
  save_qwen25vl(dir, *model_, o);
}

// ---------------------------------------------------------------------------

bool is_qwen25vl_dir(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "config.json");
  if (!in) return false;
  nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  return j.is_object() && j.value("model_type", "") == "qwen2_5_vl";
}

std::unique_ptr<PolicyModel> load_policy(const std::string& dir, DType dtype) {
  if (!fs::is_directory(dir))
    throw std::runtime_error("model folder " + dir + " does not exist or is not a folder");
  if (!fs::exists(fs::path(dir) / "config.json"))
    throw std::runtime_error("model folder " + dir +
                             " has no config.json (expected a visplay checkpoint or a Hugging "
                             "Face Qwen2.5-VL directory)");
  if (is_qwen25vl_dir(dir)) {
    return std::make_unique<Qwen25VLPolicy>(std::make_unique<Qwen25VL>(load_qwen25vl(dir, dtype)),
                                            load_qwen25vl_image_config(dir));
  }
  if (dtype != DType::f32)
    throw std::runtime_error("model folder " + dir +
                             " holds a visplay checkpoint: its weights load as f32 only (" +
                             dtype_name(dtype) + " asked; bf16 weights need a Qwen2.5-VL model)");
  return std::make_unique<VLMPolicy>(load_checkpoint(dir));
}

}  // namespace visplay
