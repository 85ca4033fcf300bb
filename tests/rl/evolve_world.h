// A ShapeWorld test world for the evolve loop tests: a warm-started tiny checkpoint in
// ROOT/model, a ShapeWorld pool of 6 images in ROOT/images, and a tiny loop configuration
// (one questioner step, two reasoner steps, every candidate kept).
#pragma once

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "data/benchmark.h"
#include "data/shapeworld.h"
#include "model/checkpoint.h"
#include "model/image.h"
#include "rl/config.h"
#include "rl/roles.h"
#include "tests/rl/world_model.h"

namespace visplay::rl::testing {

// Writes root/tokenizer.json, root/images (a ShapeWorld pool of 6) and root/model (a tiny
// checkpoint warm-started on both roles' formats); returns the tokenizer.
inline std::unique_ptr<Tokenizer> build_evolve_world(const std::filesystem::path& root) {
  std::filesystem::create_directories(root);
  const std::filesystem::path tok_file = root / "tokenizer.json";
  std::ofstream(tok_file) << testing::world_tokenizer_json();
  auto tok = load_tokenizer(tok_file.string());
  generate_pool((root / "images").string(), 5, 6);

  VLM model(testing::world_config(*tok));
  model.init_weights(17);
  ChatFormat fmt = ChatFormat::shapeworld();
  PromptConfig prompts = shapeworld_prompts();
  const int64_t nv = model.config().vision.num_visual_tokens();
  const VisionConfig& v = model.config().vision;
  std::vector<PromptInput> inputs;
  std::vector<std::vector<int64_t>> responses;
  const std::vector<std::string> questions = {"how many objects are there?",
                                              "is there a red circle?"};
  const std::vector<std::string> answers = {"1", "2", "3", "yes", "no"};
  ImageFolder folder((root / "images").string());
  int k = 0;
  for (size_t i = 0; i < folder.size(); ++i) {
    std::vector<float> chw = load_image_for_model(folder.path(i), static_cast<int>(v.image_size),
                                                  v.image_mean.data(), v.image_std.data());
    Tensor px = Tensor::from_vector(chw, {3, v.image_size, v.image_size});
    for (const std::string& q : questions) {
      inputs.push_back({build_questioner_prompt(fmt, *tok, nv, prompts), px});
      responses.push_back(encode_response(*tok, format_questioner_response(fmt, q)));
      for (ReasonerMode mode : {ReasonerMode::direct, ReasonerMode::train}) {
        inputs.push_back({build_reasoner_prompt(fmt, *tok, nv, q, mode, prompts), px});
        responses.push_back(
            encode_response(*tok, format_reasoner_response(fmt, "", answers[k++ % 5])));
      }
    }
  }
  testing::warm_start(model, inputs, responses, 60, 1e-2);
  save_checkpoint((root / "model").string(), model, tok_file.string());
  return tok;
}

// Builds out/model (warm-started checkpoint) and out/images (ShapeWorld pool of 6).
struct World {
  std::filesystem::path root;
  std::unique_ptr<Tokenizer> tok;

  explicit World(const std::string& name) {
    root = std::filesystem::temp_directory_path() /
           ("visplay_evolve_test_" + name + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(root);
    tok = build_evolve_world(root);
  }
  ~World() { std::filesystem::remove_all(root); }

  VisPlayConfig tiny_config() const {
    VisPlayConfig c;
    c.iterations = 1;
    c.seed = 7;
    c.questioner.group_size = 4;
    c.questioner.steps = 1;
    c.questioner.rollout.max_new_tokens = 12;
    c.reasoner.group_size = 3;
    c.reasoner.steps = 2;
    c.reasoner.rollout.max_new_tokens = 6;
    c.reasoner.min_kept_fraction = 0.0;
    c.uncertainty.samples = 4;
    c.uncertainty.sampling.max_new_tokens = 6;
    c.data.candidate_images = 6;
    c.data.question_sampling.max_new_tokens = 12;
    c.data.vote_samples = 5;
    c.data.vote_sampling.max_new_tokens = 6;
    c.data.band_low = 0.0;
    c.data.band_high = 1.0;
    c.grpo.prompts_per_step = 2;
    c.grpo.prompts_per_update = 2;
    c.grpo.micro_batch_size = 8;
    c.grpo.lr = 1e-3;
    return c;
  }
};

}  // namespace visplay::rl::testing
