// The roles' rewards wired to token sequences: the Reasoner reward against silver labels on
// hand-made responses, and the Questioner reward's handling of invalid outputs, its metrics and
// its determinism with a frozen random Reasoner.
#include "rl/role_rewards.h"

#include <gtest/gtest.h>

#include "tests/rl/world_model.h"

namespace visplay::rl {
namespace {

struct Fixture {
  std::unique_ptr<Tokenizer> tok =
      load_tokenizer_from_json(testing::world_tokenizer_json(), "test-world");
  VLM model{testing::world_config(*tok)};
  VisPlayConfig config;
  RoleSetup setup;
  Fixture() {
    model.init_weights(3);
    config.uncertainty.samples = 5;
    config.uncertainty.sampling.max_new_tokens = 4;
    setup = make_role_setup(model, *tok, config);
  }
  Generation response(int64_t prompt, const std::string& text) const {
    Generation g;
    g.prompt_index = prompt;
    g.tokens = encode_response(*tok, text);
    g.logprobs.assign(g.tokens.size(), -1.0f);
    g.stopped = true;
    return g;
  }
};

TEST(RoleRewards, ReasonerRewardMatchesSilverLabels) {
  testing::use_one_thread();
  Fixture f;
  EXPECT_EQ(f.setup.format.name, "shapeworld");
  EXPECT_EQ(f.setup.prompts.questioner, shapeworld_prompts().questioner);
  Rng rng(1);
  std::vector<PromptInput> prompts = {testing::image_prompt(f.model.config(), rng, {}),
                                      testing::image_prompt(f.model.config(), rng, {})};
  const ChatFormat& fmt = f.setup.format;
  std::vector<Generation> rollouts = {f.response(0, format_reasoner_response(fmt, "", "2")),
                                      f.response(0, format_reasoner_response(fmt, "", "3")),
                                      f.response(0, "how many"),  // no box
                                      f.response(1, format_reasoner_response(fmt, "", "yes")),
                                      f.response(1, format_reasoner_response(fmt, "", "no")),
                                      f.response(1, format_reasoner_response(fmt, "", "yes"))};
  RewardFn reward = make_reasoner_reward(f.setup, f.config, {"2", "yes"});
  RewardResult r = reward(prompts, rollouts, 3);
  EXPECT_EQ(r.rewards, (std::vector<double>{1, 0, 0, 1, 0, 1}));
  EXPECT_DOUBLE_EQ(r.metrics["silver_match"].get<double>(), 3.0 / 6);
  EXPECT_DOUBLE_EQ(r.metrics["format_fraction"].get<double>(), 5.0 / 6);
  // The reference code's format weight: 0.9 * match + 0.1 * <think> format (never here).
  VisPlayConfig ref = f.config;
  ref.rewards.reasoner = ReasonerReward::reference;
  RewardResult rr = make_reasoner_reward(f.setup, ref, {"2", "yes"})(prompts, rollouts, 3);
  EXPECT_NEAR(rr.rewards[0], 0.9, 1e-12);
  EXPECT_NEAR(rr.rewards[1], 0.0, 1e-12);
  EXPECT_THROW(make_reasoner_reward(f.setup, f.config, {"2"})(prompts, rollouts, 3),
               std::runtime_error);
}

TEST(RoleRewards, QuestionerRewardInvalidOutputsAndDeterminism) {
  testing::use_one_thread();
  Fixture f;
  Rng rng(2);
  std::vector<PromptInput> prompts = {testing::image_prompt(f.model.config(), rng, {})};
  const ChatFormat& fmt = f.setup.format;
  std::vector<Generation> rollouts = {
      f.response(0, format_questioner_response(fmt, "how many objects are there?")),
      f.response(0, "is there a red circle?"),  // no <question> block: invalid
      f.response(0, format_questioner_response(fmt, "how many objects are there?")),
      f.response(0, format_questioner_response(fmt, "is there a blue square?"))};
  auto run = [&] {
    RewardFn reward = make_questioner_reward(f.model, f.setup, f.config, 42);
    return reward(prompts, rollouts, 4);
  };
  RewardResult a = run(), b = run();
  ASSERT_EQ(a.rewards.size(), 4u);
  EXPECT_EQ(a.rewards[1], 0.0);  // paper: an invalid output gets 0
  for (double x : a.rewards) {
    EXPECT_GE(x, 0.0);
    EXPECT_LE(x, 1.0);
  }
  EXPECT_DOUBLE_EQ(a.metrics["valid_fraction"].get<double>(), 0.75);
  // Two identical questions share a cluster: mean cluster size (2 + 2 + 1) / 3.
  EXPECT_DOUBLE_EQ(a.metrics["cluster_size_mean"].get<double>(), 5.0 / 3);
  EXPECT_EQ(a.rewards, b.rewards);
  // The reference combination gives -1 to the invalid output.
  VisPlayConfig ref = f.config;
  ref.rewards.questioner = QuestionerReward::reference;
  RewardResult r = make_questioner_reward(f.model, f.setup, ref, 42)(prompts, rollouts, 4);
  EXPECT_EQ(r.rewards[1], -1.0);
}

}  // namespace
}  // namespace visplay::rl
