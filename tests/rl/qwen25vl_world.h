// Inputs for evolve tests on the tiny random Qwen2.5-VL checkpoint
// (tests/model/fixtures/qwen25vl_tiny): noise images and a loop configuration small enough for
// a second on one thread.
#pragma once

#include <filesystem>
#include <string>

#include "model/image.h"
#include "rl/config.h"
#include "runtime/random.h"

namespace visplay::rl::testing {

// `count` random RGB noise PNGs in dir (created): 56x56 (4 visual tokens) and 84x56 (6 visual
// tokens) in turn.
inline std::filesystem::path write_noise_images(const std::filesystem::path& dir, int count,
                                                uint64_t seed) {
  std::filesystem::create_directories(dir);
  Rng rng(seed);
  for (int i = 0; i < count; ++i) {
    Image im;
    im.width = i % 2 ? 84 : 56;
    im.height = 56;
    im.rgb.resize(static_cast<size_t>(im.width * im.height * 3));
    for (uint8_t& b : im.rgb) b = static_cast<uint8_t>(rng.randint(0, 256));
    save_png((dir / ("img" + std::to_string(i) + ".png")).string(), im);
  }
  return dir;
}

// One iteration, 2 prompts a step, short responses, images between 56x56 and 84x84 pixels.
inline VisPlayConfig tiny_qwen_evolve_config() {
  VisPlayConfig c;
  c.iterations = 1;
  c.seed = 11;
  c.checkpoint_every = 1;
  c.questioner.group_size = 4;
  c.questioner.steps = 1;
  c.questioner.rollout.max_new_tokens = 8;
  c.reasoner.group_size = 2;
  c.reasoner.steps = 1;
  c.reasoner.rollout.max_new_tokens = 8;
  c.uncertainty.samples = 3;
  c.uncertainty.sampling.max_new_tokens = 4;
  c.data.candidate_images = 3;
  c.data.vote_samples = 3;
  c.data.question_sampling.max_new_tokens = 8;
  c.data.vote_sampling.max_new_tokens = 6;
  c.grpo.prompts_per_step = 2;
  c.grpo.prompts_per_update = 2;
  c.grpo.micro_batch_size = 4;
  c.grpo.lr = 1e-3;
  c.grpo.generation_batch = 16;
  c.images.min_pixels = 56 * 56;
  c.images.max_pixels = 84 * 84;
  return c;
}

}  // namespace visplay::rl::testing
