// Completion scoring for training: log-probs [N, L] of sampled completions
// must equal the sampler's own log-probs, with gradients into every part.
#include "model/completion.h"

#include <gtest/gtest.h>

#include "tests/model/reference.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

std::vector<PromptInput> three_prompts(const VLMConfig& c) {
  std::vector<PromptInput> prompts(3);
  prompts[0].ids = {1, 2, c.vision_start_token_id};
  for (int64_t t = 0; t < c.vision.num_visual_tokens(); ++t)
    prompts[0].ids.push_back(c.image_pad_token_id);
  prompts[0].ids.insert(prompts[0].ids.end(), {c.vision_end_token_id, 3, 4, 5});
  prompts[0].pixels = test::random_tensor({3, 16, 16}, 1, DType::f32, -2, 2);
  prompts[1].ids = {6, 7};  // text only, much shorter
  prompts[2] = prompts[0];
  prompts[2].ids[0] = 8;
  prompts[2].pixels = test::random_tensor({3, 16, 16}, 2, DType::f32, -2, 2);
  return prompts;
}

TEST(Completion, LogprobsEqualTheSamplersAndAreLeftAligned) {
  VLM m(ref::tiny_vlm_config());
  ref::randomize(m, 17, 0.35);
  std::vector<PromptInput> prompts = three_prompts(m.config());
  SamplingOptions opt;
  opt.temperature = 1.2;
  opt.max_new_tokens = 7;
  opt.stop_tokens = {20, 21, 22};
  std::vector<Generation> gens = generate(m, prompts, 3, opt, derive_seeds(5, 9));
  std::vector<int64_t> rows;
  std::vector<std::vector<int64_t>> completions;
  for (const Generation& g : gens) rows.push_back(g.prompt_index), completions.push_back(g.tokens);
  CompletionBatch batch = make_completion_batch(m.config(), prompts, rows, completions);
  EXPECT_EQ(batch.unique_pixels.size(0), 2);  // two distinct images for six image sequences
  TokenLogprobs lp = completion_logprobs(m, batch);
  int64_t L = batch.max_completion;
  ASSERT_EQ(lp.logprobs.shape(), (Shape{9, L}));
  std::vector<double> got = lp.logprobs.to_vector<double>();
  bool lengths_differ = false;
  for (size_t i = 0; i < gens.size(); ++i) {
    lengths_differ |= static_cast<int64_t>(gens[i].tokens.size()) != L;
    for (int64_t k = 0; k < L; ++k) {
      if (k < static_cast<int64_t>(gens[i].tokens.size()))
        EXPECT_NEAR(got[i * L + k], gens[i].logprobs[k], 2e-5)
            << "sequence " << i << " token " << k;
      else
        EXPECT_EQ(got[i * L + k], 0.0) << "masked slot " << i << ", " << k;
    }
  }
  EXPECT_TRUE(lengths_differ) << "want completions of different lengths";
  // The loss reaches the vision tower, the projector and the decoder.
  m.params().set_requires_grad(true);
  lp = completion_logprobs(m, batch);
  sum(lp.logprobs).backward();
  for (const char* name : {"vision.pos_embed", "projector.fc1.weight",
                           "model.layers.0.self_attn.q_proj.bias", "lm_head.weight"}) {
    Tensor g = m.params().get(name).grad();
    ASSERT_TRUE(g.defined()) << name;
    double norm = 0;
    for (double v : g.to_vector<double>()) norm += v * v;
    EXPECT_GT(norm, 0.0) << name;
  }
}

TEST(Completion, BadInputsAreNamed) {
  VLM m(ref::tiny_vlm_config());
  std::vector<PromptInput> prompts = three_prompts(m.config());
  EXPECT_THROW(make_completion_batch(m.config(), prompts, {0, 3}, {{1}, {2}}), std::runtime_error);
  EXPECT_THROW(make_completion_batch(m.config(), prompts, {0}, {{1}, {2}}), std::runtime_error);
  try {
    make_completion_batch(m.config(), prompts, {1}, {{1, m.config().image_pad_token_id}});
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("image-pad"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace visplay
