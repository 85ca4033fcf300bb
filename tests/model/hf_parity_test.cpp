// Parity with Hugging Face transformers: a tiny random Qwen2ForCausalLM saved
// by tools/gen_hf_fixture.py (save_pretrained: config.json +
// model.safetensors) loads through our checkpoint loader, and our f32 logits
// on a left-padded batch match the float64 transformers logits to 1e-4.
#include <gtest/gtest.h>

#include "model/checkpoint.h"
#include "model/safetensors.h"
#include "model/sampler.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

const std::string kFixtures = std::string(VISPLAY_SOURCE_DIR) + "/tests/model/fixtures/";

TEST(HfParity, Qwen2LogitsMatchTransformers) {
  VLM m = load_checkpoint(kFixtures + "qwen2_tiny");
  ASSERT_FALSE(m.config().has_vision);
  SafetensorsFile expected(kFixtures + "qwen2_tiny_expected.safetensors");
  Tensor ids = expected.load("input_ids"), mask = expected.load("attention_mask");
  Tensor want = expected.load("logits");
  // Our positions for a left-padded batch are the ones the fixture used.
  EXPECT_EQ(positions_from_mask(mask).to_vector<int64_t>(),
            expected.load("position_ids").to_vector<int64_t>());
  Tensor got;
  {
    NoGradGuard g;
    got = m.logits({ids, mask, Tensor()});
  }
  ASSERT_EQ(got.shape(), want.shape());
  int64_t B = ids.size(0), S = ids.size(1), V = want.size(2);
  std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
  std::vector<int64_t> msk = mask.to_vector<int64_t>();
  std::vector<double> real_got, real_want;
  for (int64_t i = 0; i < B * S; ++i)
    if (msk[i])
      for (int64_t v = 0; v < V; ++v)
        real_got.push_back(g[i * V + v]), real_want.push_back(w[i * V + v]);
  ASSERT_GT(real_want.size(), 0u);
  EXPECT_TRUE(test::all_close(real_got, real_want, 1e-4, 1e-5));
}

// The same checkpoint through the KV-cache sampler: greedy tokens must be the
// argmax of the transformers logits at the prompt's last position.
TEST(HfParity, GreedyFirstTokenIsTheTransformersArgmax) {
  VLM m = load_checkpoint(kFixtures + "qwen2_tiny");
  SafetensorsFile expected(kFixtures + "qwen2_tiny_expected.safetensors");
  Tensor ids = expected.load("input_ids"), mask = expected.load("attention_mask");
  std::vector<double> w = expected.load("logits").to_vector<double>();
  int64_t B = ids.size(0), S = ids.size(1), V = 256;
  std::vector<int64_t> flat = ids.to_vector<int64_t>(), msk = mask.to_vector<int64_t>();
  std::vector<PromptInput> prompts(B);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t s = 0; s < S; ++s)
      if (msk[b * S + s]) prompts[b].ids.push_back(flat[b * S + s]);
  SamplingOptions opt;
  opt.greedy = true;
  opt.max_new_tokens = 1;
  std::vector<Generation> out = generate(m, prompts, 1, opt, derive_seeds(1, B));
  for (int64_t b = 0; b < B; ++b) {
    const double* row = w.data() + (b * S + S - 1) * V;
    int64_t best = std::max_element(row, row + V) - row;
    ASSERT_EQ(out[b].tokens.size(), 1u);
    EXPECT_EQ(out[b].tokens[0], best) << "prompt " << b;
  }
}

}  // namespace
}  // namespace visplay
