// Warm start and evaluation: supervised batches mask exactly the response tokens, a short
// run lowers the loss, evaluation replies do not depend on batching, and the report is
// well formed and agrees with an independent re-scoring of the replies.
#include "rl/pretrain.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <numeric>

#include "model/shapeworld_vocab.h"

namespace visplay::rl {
namespace {

std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() /
             ("visplay_pretrain_test_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

TEST(Pretrain, BatchMasksExactlyTheResponseTokens) {
  auto tok = make_shapeworld_tokenizer();
  VLMConfig config = shapeworld_model_config(*tok, "tiny");
  std::vector<sft::Example> examples;
  for (uint64_t i = 0; i < 9; ++i) examples.push_back(sft::sample_example(11, i));
  SupervisedBatch batch = make_supervised_batch(config, *tok, examples);
  const int64_t B = 9, S = batch.input.input_ids.size(1);
  ASSERT_EQ(batch.input.pixels.shape(), (Shape{B, 3, 64, 64}));
  auto ids = batch.input.input_ids.to_vector<int64_t>();
  auto att = batch.input.attention_mask.to_vector<int64_t>();
  auto targets = batch.targets.to_vector<int64_t>();
  auto mask = batch.mask.to_vector<float>();
  int64_t expected_tokens = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<int64_t> prompt = example_prompt(config, *tok, examples[b]);
    std::vector<int64_t> response = encode_response(*tok, examples[b].target);
    expected_tokens += static_cast<int64_t>(response.size());
    const int64_t len = static_cast<int64_t>(prompt.size() + response.size());
    const int64_t pad = S - len;
    ASSERT_GE(pad, 0);
    // The masked targets, read left to right, are the response (stop token included).
    std::vector<int64_t> masked;
    for (int64_t s = 0; s < S; ++s) {
      EXPECT_EQ(att[b * S + s], s >= pad ? 1 : 0);
      if (mask[b * S + s] != 0) masked.push_back(targets[b * S + s]);
    }
    EXPECT_EQ(masked, response) << examples[b].target;
    EXPECT_EQ(response.back(), stop_token_id(*tok));
    // The prompt sits right after the padding, the response after the prompt.
    for (size_t i = 0; i < prompt.size(); ++i) EXPECT_EQ(ids[b * S + pad + i], prompt[i]);
    EXPECT_EQ(ids[b * S + pad + prompt.size()], response[0]);
  }
  EXPECT_EQ(batch.response_tokens, expected_tokens);
}

// A few steps on a small fixed set (so the model can fit it) lower the loss.
TEST(Pretrain, ShortRunLowersTheLoss) {
  auto tok = make_shapeworld_tokenizer();
  VLM model(shapeworld_model_config(*tok, "tiny"));
  model.init_weights(3);
  PretrainOptions o;
  o.steps = 40;
  o.batch_size = 8;
  o.scenes = 16;
  o.seed = 5;
  o.lr = 1e-2;
  o.min_lr = 1e-3;
  o.warmup = 5;
  o.eval_every = 0;
  PretrainResult r = pretrain(model, *tok, o);
  ASSERT_EQ(r.steps.size(), 40u);
  auto mean_loss = [&](size_t from, size_t to) {
    double s = 0;
    for (size_t i = from; i < to; ++i) s += r.steps[i].loss;
    return s / static_cast<double>(to - from);
  };
  const double first = mean_loss(0, 4), last = mean_loss(36, 40);
  EXPECT_GT(first, 4.0);  // about log(vocab) at the start
  EXPECT_LT(last, first - 1.5) << "first " << first << " last " << last;
  for (const PretrainStep& s : r.steps) EXPECT_GT(s.tokens, 0);
}

// "base-64" is "base" without the 2x2 merger: 64 visual tokens (one per 8 x 8 patch), the
// same widths otherwise, and a supervised prompt carries that many image-pad tokens.
TEST(Pretrain, Base64PresetHasOneVisualTokenPerPatch) {
  auto tok = make_shapeworld_tokenizer();
  const VLMConfig base = shapeworld_model_config(*tok, "base");
  const VLMConfig unmerged = shapeworld_model_config(*tok, "base-64");
  EXPECT_EQ(base.vision.num_visual_tokens(), 16);
  EXPECT_EQ(unmerged.vision.num_visual_tokens(), 64);
  EXPECT_EQ(unmerged.vision.hidden_size, base.vision.hidden_size);
  EXPECT_EQ(unmerged.decoder.hidden_size, base.decoder.hidden_size);
  EXPECT_EQ(unmerged.decoder.num_hidden_layers, base.decoder.num_hidden_layers);
  const sft::Example example = sft::sample_example(11, 0);
  for (const VLMConfig* c : {&base, &unmerged}) {
    std::vector<int64_t> prompt = example_prompt(*c, *tok, example);
    const auto pads = std::count(prompt.begin(), prompt.end(), c->image_pad_token_id);
    EXPECT_EQ(pads, c->vision.num_visual_tokens());
  }
}

TEST(Pretrain, BadOptionsAreErrors) {
  auto tok = make_shapeworld_tokenizer();
  VLM model(shapeworld_model_config(*tok, "tiny"));
  model.init_weights(1);
  PretrainOptions o;
  o.steps = 0;
  EXPECT_THROW(pretrain(model, *tok, o), std::runtime_error);
  EXPECT_THROW(shapeworld_model_config(*tok, "huge"), std::runtime_error);
}

// Greedy replies are the same whatever the batching, and the report agrees with scoring
// each reply independently.
TEST(Eval, ReportIsWellFormedAndBatchIndependent) {
  auto tok = make_shapeworld_tokenizer();
  VLM model(shapeworld_model_config(*tok, "tiny"));
  model.init_weights(9);
  const std::string dir = temp_dir("bench");
  generate_benchmark(dir, 21, 10);
  Benchmark bench = read_benchmark(dir);
  ASSERT_EQ(bench.questions.size(), 10u);

  EvalOptions small;
  small.batch_size = 3;
  small.max_new_tokens = 12;
  EvalOptions large = small;
  large.batch_size = 10;
  EvalResult a = evaluate_benchmark(model, *tok, bench, small);
  EvalResult b = evaluate_benchmark(model, *tok, bench, large);
  ASSERT_EQ(a.replies.size(), 10u);
  EXPECT_EQ(a.replies, b.replies);

  int64_t correct = 0, no_answer = 0;
  for (size_t i = 0; i < a.replies.size(); ++i) {
    correct += reply_is_correct(a.replies[i], *bench.questions[i].answer);
    no_answer += !extract_boxed(a.replies[i]).has_value();
  }
  nlohmann::json j = eval_report_json(a);
  EXPECT_EQ(j["questions"].get<int64_t>(), 10);
  EXPECT_DOUBLE_EQ(j["accuracy"].get<double>(), correct / 10.0);
  EXPECT_EQ(j["no_answer"].get<int64_t>(), no_answer);
  ASSERT_TRUE(j["per_type"].is_object());
  EXPECT_FALSE(j["per_type"].empty());
  EXPECT_TRUE(j.contains("hallucination"));
  ASSERT_TRUE(j["blind_baseline"].is_object());
  const double blind = j["blind_baseline"]["accuracy"].get<double>();
  EXPECT_GT(blind, 0.0);
  EXPECT_LE(blind, 1.0);
  EXPECT_NE(eval_table(a).find("hallucination"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// The warm start teaches the format: a model fitted on a handful of direct/trace examples
// answers those questions with a \boxed{} reply.
TEST(Eval, FittedModelRepliesInTheTrainedFormat) {
  auto tok = make_shapeworld_tokenizer();
  VLM model(shapeworld_model_config(*tok, "tiny"));
  model.init_weights(4);
  PretrainOptions o;
  o.steps = 120;
  o.batch_size = 8;
  o.scenes = 8;
  o.seed = 2;
  o.lr = 2e-2;
  o.min_lr = 2e-3;
  o.warmup = 5;
  o.eval_every = 0;
  o.mix = sft::ExampleMix{0.0, 1.0, 0.0};
  pretrain(model, *tok, o);
  std::vector<Tensor> pixels;
  std::vector<std::string> questions;
  for (uint64_t i = 0; i < 8; ++i) {
    sft::Example ex = sft::sample_example(o.seed, i, o.mix);
    pixels.push_back(scene_to_pixels(model.config(), ex.scene));
    questions.push_back(ex.question);
  }
  EvalOptions e;
  e.max_new_tokens = 64;
  std::vector<std::string> replies = answer_questions(model, *tok, pixels, questions, e);
  int boxed = 0;
  for (const std::string& r : replies) boxed += extract_boxed(r).has_value();
  EXPECT_GE(boxed, 6) << replies[0];
}

}  // namespace
}  // namespace visplay::rl
