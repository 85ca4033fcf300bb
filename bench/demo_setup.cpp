#include "bench/demo_setup.h"

#include <fstream>
#include <sstream>

#include "runtime/ops.h"
#include "runtime/random.h"

namespace visplay::bench {

VLMConfig demo_config() {
  VLMConfig c;
  c.has_vision = true;
  c.vision.image_size = 64;
  c.vision.patch_size = 8;
  c.vision.num_channels = 3;
  c.vision.spatial_merge_size = 2;
  c.vision.hidden_size = 96;
  c.vision.depth = 3;
  c.vision.num_heads = 4;
  c.vision.mlp_ratio = 2.0;
  c.vision.projector_hidden_size = 256;
  c.decoder.vocab_size = 277;
  c.decoder.tie_word_embeddings = true;
  c.decoder.max_position_embeddings = 512;
  c.decoder.hidden_size = 128;
  c.decoder.intermediate_size = 320;
  c.decoder.num_hidden_layers = 4;
  c.decoder.num_attention_heads = 4;
  c.decoder.num_key_value_heads = 2;
  c.image_pad_token_id = 273;
  c.vision_start_token_id = 274;
  c.vision_end_token_id = 275;
  c.eos_token_id = 276;
  c.pad_token_id = 0;
  c.validate("bench::demo_config");
  return c;
}

namespace {

// The real tokens of one prompt: image run then `text` random text tokens.
std::vector<int64_t> image_prefix(const VLMConfig& c) {
  std::vector<int64_t> ids{c.vision_start_token_id};
  for (int64_t i = 0; i < c.vision.num_visual_tokens(); ++i) ids.push_back(c.image_pad_token_id);
  ids.push_back(c.vision_end_token_id);
  return ids;
}

Tensor random_pixels(const VLMConfig& c, int64_t n, Rng& rng) {
  return randn({n, c.vision.num_channels, c.vision.image_size, c.vision.image_size}, rng);
}

}  // namespace

TrainBatch demo_train_batch(const VLMConfig& c, int64_t B, int64_t S, uint64_t seed) {
  Rng rng(seed);
  const int64_t text_vocab = c.image_pad_token_id;  // ids below the special tokens
  std::vector<int64_t> ids(B * S, c.pad_token_id), mask(B * S, 0), targets(B * S, 0);
  std::vector<float> loss_mask(B * S, 0.0f);
  int64_t loss_tokens = 0;
  const std::vector<int64_t> prefix = image_prefix(c);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t pad = b % 4, start = pad;
    std::vector<int64_t> row = prefix;
    while (static_cast<int64_t>(row.size()) < S - pad) row.push_back(rng.randint(0, text_vocab));
    for (int64_t s = 0; s < S - pad; ++s) {
      ids[b * S + start + s] = row[s];
      mask[b * S + start + s] = 1;
    }
    // Predict every text token from the one before it (vision_end predicts the first).
    for (int64_t s = static_cast<int64_t>(prefix.size()) - 1; s + 1 < S - pad; ++s) {
      targets[b * S + start + s] = row[s + 1];
      loss_mask[b * S + start + s] = 1.0f;
      ++loss_tokens;
    }
  }
  TrainBatch batch;
  batch.input.input_ids = Tensor::from_vector(ids, {B, S});
  batch.input.attention_mask = Tensor::from_vector(mask, {B, S});
  batch.input.pixels = random_pixels(c, B, rng);
  batch.targets = Tensor::from_vector(targets, {B, S});
  batch.loss_mask = Tensor::from_vector(loss_mask, {B, S});
  batch.loss_tokens = loss_tokens;
  return batch;
}

Tensor demo_loss(const VLM& model, const TrainBatch& batch) {
  TokenLogprobs lp = model.token_logprobs(batch.input, batch.targets);
  Tensor total = sum(mul(lp.logprobs, batch.loss_mask));
  return scale(total, -1.0 / static_cast<double>(batch.loss_tokens));
}

std::vector<PromptInput> demo_prompts(const VLMConfig& c, int64_t count, uint64_t seed) {
  Rng rng(seed);
  std::vector<PromptInput> prompts;
  for (int64_t p = 0; p < count; ++p) {
    PromptInput prompt;
    prompt.ids = image_prefix(c);
    const int64_t text = 4 + p % 5;
    for (int64_t i = 0; i < text; ++i) prompt.ids.push_back(rng.randint(0, c.image_pad_token_id));
    prompt.pixels = random_pixels(c, 1, rng);
    prompts.push_back(prompt);
  }
  return prompts;
}

namespace {
size_t status_field_bytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) {
      std::istringstream fields(line.substr(std::string(field).size()));
      size_t kib = 0;
      fields >> kib;
      return kib * 1024;
    }
  }
  return 0;
}
}  // namespace

void reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
}
size_t rss_bytes() { return status_field_bytes("VmRSS:"); }
size_t peak_rss_bytes() { return status_field_bytes("VmHWM:"); }

}  // namespace visplay::bench
