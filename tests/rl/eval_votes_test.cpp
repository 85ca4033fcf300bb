// Self-consistency evaluation (`visplay eval --votes N`): the reply kept for a question is one
// whose answer is the most common among its N sampled replies, seeded per question so the
// result does not depend on batching; near-zero temperature gives the greedy replies.
#include <gtest/gtest.h>

#include <map>

#include "model/checkpoint.h"
#include "model/sampler.h"
#include "rl/answer.h"
#include "rl/pretrain.h"
#include "rl/roles.h"

namespace visplay::rl {
namespace {

struct Questions {
  std::vector<Tensor> pixels;
  std::vector<std::string> questions;
};

Questions sample_questions(const VLM& model, int count) {
  Questions q;
  for (uint64_t i = 0; i < static_cast<uint64_t>(count); ++i) {
    sft::Example ex = sft::sample_example(77, i, sft::ExampleMix{0.0, 1.0, 0.0});
    q.pixels.push_back(scene_to_pixels(model.config(), ex.scene));
    q.questions.push_back(ex.question);
  }
  return q;
}

// The shipped base: a model whose sampled replies really disagree.
VLM shipped_base() {
  return load_checkpoint(std::string(VISPLAY_SOURCE_DIR) + "/models/shapeworld-base");
}

TEST(EvalVotes, KeepsAReplyWithTheMostCommonAnswer) {
  VLM model = shipped_base();
  auto tok = load_tokenizer(std::string(VISPLAY_SOURCE_DIR) + "/models/shapeworld-base");
  const int count = 24, votes = 7;
  Questions q = sample_questions(model, count);
  EvalOptions o;
  o.votes = votes;
  o.temperature = 1.0;
  o.seed = 5;
  o.batch_size = 10;  // the last batch is partial
  std::vector<std::string> replies = answer_questions(model, *tok, q.pixels, q.questions, o);
  ASSERT_EQ(replies.size(), static_cast<size_t>(count));

  // Reference: every question's samples drawn in one batch, sample j of question i seeded by
  // derive_seeds(seed, count * votes)[i * votes + j]; the winner counted with a plain map.
  std::vector<PromptInput> prompts;
  const ChatFormat format = ChatFormat::for_tokenizer(*tok);
  for (int i = 0; i < count; ++i) {
    prompts.push_back(
        {build_reasoner_prompt(format, *tok, model.config().vision.num_visual_tokens(),
                               q.questions[i], ReasonerMode::train, shapeworld_prompts()),
         q.pixels[i]});
  }
  SamplingOptions sampling;
  sampling.temperature = 1.0f;
  sampling.max_new_tokens = o.max_new_tokens;
  sampling.stop_tokens = {stop_token_id(*tok)};
  std::vector<Generation> samples =
      generate(model, prompts, votes, sampling, derive_seeds(o.seed, count * votes));
  int disagreeing = 0;
  for (int i = 0; i < count; ++i) {
    std::map<std::string, int> counts;
    std::vector<std::string> order;
    for (int j = 0; j < votes; ++j) {
      std::vector<int64_t> tokens = samples[i * votes + j].tokens;
      auto stop = std::find(tokens.begin(), tokens.end(), stop_token_id(*tok));
      if (stop != tokens.end()) tokens.erase(stop + 1, tokens.end());
      auto answer = extract_boxed(decode_response(*tok, tokens));
      if (!answer) continue;
      if (counts[*answer]++ == 0) order.push_back(*answer);
    }
    disagreeing += counts.size() > 1;
    ASSERT_FALSE(order.empty()) << q.questions[i];
    std::string best = order[0];
    for (const std::string& a : order) {
      if (counts[a] > counts[best]) best = a;
    }
    auto kept = extract_boxed(replies[i]);
    ASSERT_TRUE(kept.has_value()) << replies[i];
    EXPECT_EQ(*kept, best) << q.questions[i] << " reply " << replies[i];
  }
  // The votes must actually disagree somewhere, or this test would not tell a majority
  // from any single sample.
  EXPECT_GE(disagreeing, 3);

  // Batching does not change the result.
  o.batch_size = count;
  EXPECT_EQ(answer_questions(model, *tok, q.pixels, q.questions, o), replies);
}

// Near-zero temperature, or (so --top-p reaches the vote sampler) a nucleus of one token at
// temperature 1, gives the greedy replies again; without the nucleus these votes disagree, as
// the first test shows.
TEST(EvalVotes, NearGreedySamplingGivesTheGreedyReplies) {
  VLM model = shipped_base();
  auto tok = load_tokenizer(std::string(VISPLAY_SOURCE_DIR) + "/models/shapeworld-base");
  Questions q = sample_questions(model, 16);
  const std::vector<std::string> greedy =
      answer_questions(model, *tok, q.pixels, q.questions, EvalOptions{});
  for (auto [temperature, top_p] : {std::pair{1e-4, 1.0}, std::pair{1.0, 1e-6}}) {
    EvalOptions voted;
    voted.votes = 5;
    voted.temperature = temperature;
    voted.top_p = top_p;
    EXPECT_EQ(answer_questions(model, *tok, q.pixels, q.questions, voted), greedy)
        << "temperature " << temperature << ", top-p " << top_p;
  }
}

}  // namespace
}  // namespace visplay::rl
