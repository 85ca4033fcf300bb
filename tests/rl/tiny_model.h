// A tiny randomly initialised VLM for the rl tests (a few thousand parameters, 16x16 images,
// 4 visual tokens) and helpers to make prompts for it.
#pragma once

#include <cstdint>
#include <vector>

#include "model/sampler.h"
#include "model/vlm.h"
#include "runtime/random.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace visplay::rl::testing {

// These models are far too small to gain from threads, and on a busy shared machine OpenMP's
// spinning barriers make a 2-thread run of them up to 100x slower: run them on one thread.
inline void use_one_thread() {
#ifdef _OPENMP
  omp_set_num_threads(1);
#endif
}

inline VLMConfig tiny_config(int64_t vocab = 40) {
  VLMConfig c;
  c.decoder.vocab_size = vocab;
  c.decoder.hidden_size = 32;
  c.decoder.intermediate_size = 48;
  c.decoder.num_hidden_layers = 2;
  c.decoder.num_attention_heads = 4;
  c.decoder.num_key_value_heads = 2;
  c.decoder.rope_theta = 500.0;
  c.decoder.max_position_embeddings = 512;
  c.vision.image_size = 16;
  c.vision.patch_size = 4;
  c.vision.hidden_size = 24;
  c.vision.depth = 1;
  c.vision.num_heads = 2;
  c.vision.mlp_ratio = 2.0;
  c.image_pad_token_id = vocab - 1;
  c.vision_start_token_id = vocab - 3;
  c.vision_end_token_id = vocab - 2;
  c.eos_token_id = vocab - 4;
  c.pad_token_id = vocab - 5;
  return c;
}

// A normalised random image [3, H, W].
inline Tensor random_image(const VLMConfig& c, Rng& rng) {
  return randn({3, c.vision.image_size, c.vision.image_size}, rng);
}

// vision_start, pads, vision_end, then `text` ids.
inline PromptInput image_prompt(const VLMConfig& c, Rng& rng, const std::vector<int64_t>& text) {
  PromptInput p;
  p.ids.push_back(c.vision_start_token_id);
  for (int64_t i = 0; i < c.vision.num_visual_tokens(); ++i) p.ids.push_back(c.image_pad_token_id);
  p.ids.push_back(c.vision_end_token_id);
  p.ids.insert(p.ids.end(), text.begin(), text.end());
  p.pixels = random_image(c, rng);
  return p;
}

}  // namespace visplay::rl::testing
