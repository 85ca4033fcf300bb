// Shared set-up of the model benchmarks: the demo-sized ShapeWorld VLM, a
// deterministic training batch and the generation prompts, plus peak-memory
// probes. The PyTorch reference (bench/torch_reference.py) reads the same
// weights and batch from the folder `vlm_bench --export DIR` writes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/sampler.h"
#include "model/vlm.h"

namespace visplay::bench {

// The ShapeWorld "base" preset of the warm start (branch sw,
// rl::shapeworld_model_config): 64x64 images, 8x8 patches, 16 visual tokens,
// ViT 96 wide x 3 blocks, Qwen2 decoder 128 wide x 4 layers, tied embeddings,
// vocabulary 277. Restated here because that function is not on this branch;
// the special token ids are the last four ids of the vocabulary.
VLMConfig demo_config();

// A training batch: B rows of S tokens, left padded by 0..3 tokens, each real
// part = vision_start, 16 image pads, vision_end, random text. Loss mask is
// on the text tokens (targets = the next token).
struct TrainBatch {
  VLMInput input;
  Tensor targets;    // [B, S] i64
  Tensor loss_mask;  // [B, S] f32
  int64_t loss_tokens = 0;
};
TrainBatch demo_train_batch(const VLMConfig& config, int64_t batch, int64_t seq, uint64_t seed);

// The supervised loss the warm start trains with: mean -log p over masked tokens.
Tensor demo_loss(const VLM& model, const TrainBatch& batch);

// `count` prompts of 22..26 tokens (the image run plus 4..8 text tokens).
std::vector<PromptInput> demo_prompts(const VLMConfig& config, int64_t count, uint64_t seed);

// Linux peak resident set: reset_peak_rss() clears VmHWM (/proc/self/clear_refs
// "5"); rss_bytes() and peak_rss_bytes() read VmRSS and VmHWM.
void reset_peak_rss();
size_t rss_bytes();
size_t peak_rss_bytes();

}  // namespace visplay::bench
