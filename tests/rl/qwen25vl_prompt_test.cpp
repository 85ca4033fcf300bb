// The loop's `qwen` chat preset (rl/roles.h) builds exactly the prompt the
// Hugging Face Qwen2.5-VL processor builds: checked against the input_ids that
// tools/gen_qwen25vl_fixture.py saved from the processor (tiny vocabulary with
// the real Qwen special tokens), and against model/qwen25vl.h's chat prompt.
#include <gtest/gtest.h>

#include "model/qwen25vl.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "rl/roles.h"

namespace visplay::rl {
namespace {

const std::string kFixtures = std::string(VISPLAY_SOURCE_DIR) + "/tests/model/fixtures/";
const std::string kUserText = "What is in the picture? Answer in one word, then\n\\boxed{x}.";

TEST(Qwen25VLPrompt, QwenChatPresetMatchesTheProcessor) {
  SafetensorsFile expected(kFixtures + "qwen25vl_tiny_expected.safetensors");
  std::vector<int64_t> want = expected.load("input_ids").to_vector<int64_t>();
  std::vector<int64_t> grid = expected.load("image_grid_thw").to_vector<int64_t>();
  int64_t visual = grid[0] * grid[1] * grid[2] / 4;
  std::unique_ptr<Tokenizer> tok = load_tokenizer(kFixtures + "qwen25vl_tiny/tokenizer.json");
  EXPECT_EQ(build_prompt(ChatFormat::qwen(), *tok, visual, kUserText), want);
  EXPECT_EQ(render_prompt_text(ChatFormat::qwen(), visual, kUserText),
            qwen25vl_chat_prompt(kUserText, {visual}));
}

}  // namespace
}  // namespace visplay::rl
