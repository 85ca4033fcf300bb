// The policy-model interface: what the RL layer (rollouts, GRPO, the VisPlay roles, the evolve
// loop, training states) needs from a vision-language model, so that the same loop trains the
// demo VLM (model/vlm.h) and Qwen2.5-VL (model/qwen25vl.h).
//
//   - prepare_image: a decoded image file -> the model's input tensor for one image (opaque to
//     the caller: it travels in PromptInput::pixels), and visual_tokens: how many image-pad
//     tokens the prompt must hold for it (fixed for the demo VLM, size-dependent for Qwen).
//   - sample: batched KV-cache generation, each prompt prefilled once and its cache rows shared
//     by all of its samples (model/sampler.h semantics: per-sequence seeds, raw temperature-1
//     log-probs, the image-pad token banned).
//   - completion_logprobs: the differentiable log-prob of given completion tokens (GRPO's
//     training forward), laid out [N, L] as model/completion.h describes.
//   - params / clone: the weights for the optimizer and training states, and a frozen deep copy
//     (the KL reference).
//   - save: a checkpoint folder that load_policy reads back (the Qwen2.5-VL one in the Hugging
//     Face layout).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model/image.h"
#include "model/qwen25vl.h"
#include "model/sampler.h"
#include "model/vlm.h"
#include "runtime/tensor.h"

namespace visplay {

class PolicyModel {
 public:
  virtual ~PolicyModel() = default;

  // "visplay" (the demo VLM) or "qwen2_5_vl".
  virtual std::string kind() const = 0;
  virtual ParamStore& params() = 0;
  virtual const ParamStore& params() const = 0;
  // A deep copy with its own weights and no gradients (the frozen reference policy).
  virtual std::unique_ptr<PolicyModel> clone() const = 0;
  // Parameters of the vision side (tower and projector/merger): frozen when
  // grpo.train_vision_tower is false.
  virtual bool is_vision_parameter(const std::string& name) const = 0;

  virtual bool has_vision() const = 0;
  virtual int64_t image_pad_token_id() const = 0;
  virtual int64_t vocab_size() const = 0;

  // A decoded image as this model's input for one image (what PromptInput::pixels holds).
  virtual Tensor prepare_image(const Image& image) const = 0;
  // The same for an image file. Throws naming the file when it cannot be decoded.
  Tensor prepare_image_file(const std::string& path) const {
    return prepare_image(load_image(path));
  }
  // Image-pad tokens the prompt needs for a prepared image.
  virtual int64_t visual_tokens(const Tensor& prepared) const = 0;

  // Decodes one sequence per entry of `rows` (an index into `prompts`; repeats share the
  // prompt's prefilled cache), seeds[i] seeding sequence i. Generation::prompt_index = rows[i].
  virtual std::vector<Generation> sample(const std::vector<PromptInput>& prompts,
                                         const std::vector<int64_t>& rows,
                                         const SamplingOptions& options,
                                         const std::vector<uint64_t>& seeds) const = 0;

  // log p(completion token) per [N, L] slot, L = the longest completion (differentiable; 0 on
  // slots past a completion's end), and the entropy of each predicting distribution.
  // completions[i] continues prompts[rows[i]]. Throws for a token outside the vocabulary or an
  // image-pad token in a completion.
  virtual TokenLogprobs completion_logprobs(
      const std::vector<PromptInput>& prompts, const std::vector<int64_t>& rows,
      const std::vector<std::vector<int64_t>>& completions) const = 0;

  // Writes a checkpoint folder that load_policy reads back with the same weights (bit for
  // bit). source_dir: the folder the tokenizer (and processor) files are copied from.
  virtual void save(const std::string& dir, const std::string& source_dir) const = 0;

  // Training forwards run each layer through checkpoint(): activations recomputed in the
  // backward instead of kept (bit-identical gradients).
  virtual void set_recompute_layers(bool on) = 0;
};

// The demo VLM behind the interface. It holds a copy of the VLM object, which shares the
// weights (a VLM copy is a handle: model/vlm.h), so training through the adapter trains the
// caller's model.
class VLMPolicy : public PolicyModel {
 public:
  explicit VLMPolicy(VLM model) : model_(std::move(model)) {}

  VLM& model() { return model_; }
  const VLM& model() const { return model_; }
  void set_recompute_layers(bool on) override { model_.set_recompute_layers(on); }

  std::string kind() const override { return "visplay"; }
  ParamStore& params() override { return model_.params(); }
  const ParamStore& params() const override { return model_.params(); }
  std::unique_ptr<PolicyModel> clone() const override;
  bool is_vision_parameter(const std::string& name) const override;
  bool has_vision() const override { return model_.config().has_vision; }
  int64_t image_pad_token_id() const override { return model_.config().image_pad_token_id; }
  int64_t vocab_size() const override { return model_.config().decoder.vocab_size; }
  Tensor prepare_image(const Image& image) const override;
  int64_t visual_tokens(const Tensor& prepared) const override;
  std::vector<Generation> sample(const std::vector<PromptInput>& prompts,
                                 const std::vector<int64_t>& rows, const SamplingOptions& options,
                                 const std::vector<uint64_t>& seeds) const override;
  TokenLogprobs completion_logprobs(
      const std::vector<PromptInput>& prompts, const std::vector<int64_t>& rows,
      const std::vector<std::vector<int64_t>>& completions) const override;
  // model.safetensors + config.json, and source_dir/tokenizer.json when it exists.
  void save(const std::string& dir, const std::string& source_dir) const override;

 private:
  VLM model_;
};

// Qwen2.5-VL behind the interface. A prepared image is the processor's pixel_values of one
// image reshaped to [t, h, w, patch_dim] (t, h, w: its grid in patches), so the grid travels
// with the pixels; it needs t*h*w / merge^2 image-pad tokens.
class Qwen25VLPolicy : public PolicyModel {
 public:
  Qwen25VLPolicy(std::unique_ptr<Qwen25VL> model, Qwen25VLImageConfig images);

  Qwen25VL& model() { return *model_; }
  const Qwen25VL& model() const { return *model_; }
  void set_recompute_layers(bool on) override { model_->set_recompute_layers(on); }
  const Qwen25VLImageConfig& image_config() const { return images_; }
  // The area bounds of prepare_image's resize (the evolve config's images.min/max_pixels).
  void set_pixel_bounds(int64_t min_pixels, int64_t max_pixels);

  std::string kind() const override { return "qwen2_5_vl"; }
  ParamStore& params() override { return model_->params(); }
  const ParamStore& params() const override { return model_->params(); }
  std::unique_ptr<PolicyModel> clone() const override;
  bool is_vision_parameter(const std::string& name) const override;
  bool has_vision() const override { return true; }
  int64_t image_pad_token_id() const override { return model_->config().image_token_id; }
  int64_t vocab_size() const override { return model_->config().text.vocab_size; }
  Tensor prepare_image(const Image& image) const override;
  int64_t visual_tokens(const Tensor& prepared) const override;
  std::vector<Generation> sample(const std::vector<PromptInput>& prompts,
                                 const std::vector<int64_t>& rows, const SamplingOptions& options,
                                 const std::vector<uint64_t>& seeds) const override;
  TokenLogprobs completion_logprobs(
      const std::vector<PromptInput>& prompts, const std::vector<int64_t>& rows,
      const std::vector<std::vector<int64_t>>& completions) const override;
  // The Hugging Face layout (save_qwen25vl) in f32, so that a run resumed from it continues
  // with exactly the trained weights; tokenizer/processor files from source_dir.
  void save(const std::string& dir, const std::string& source_dir) const override;

 private:
  std::unique_ptr<Qwen25VL> model_;
  Qwen25VLImageConfig images_;
};

// True when DIR/config.json says model_type "qwen2_5_vl".
bool is_qwen25vl_dir(const std::string& dir);

// Loads a checkpoint folder: a Hugging Face Qwen2.5-VL directory (weights in `dtype`, f32 or
// bf16, converted tensor by tensor while loading; the processor settings of its
// preprocessor_config.json) or a visplay checkpoint (model/checkpoint.h; f32 only).
// Throws naming the folder when it does not exist or has no config.json, and when bf16 is
// asked of a visplay checkpoint.
std::unique_ptr<PolicyModel> load_policy(const std::string& dir, DType dtype = DType::f32);

}  // namespace visplay
