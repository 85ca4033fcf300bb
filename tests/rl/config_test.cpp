// VisPlayConfig: paper defaults, JSON round trip, errors that name the key and the value.
#include "rl/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace visplay::rl {
namespace {

using nlohmann::json;

// Runs fn, expects std::runtime_error whose message contains every needle.
template <class F>
void expect_error(F&& fn, std::initializer_list<std::string> needles) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    for (const auto& needle : needles) {
      EXPECT_NE(message.find(needle), std::string::npos)
          << "message '" << message << "' lacks '" << needle << "'";
    }
  }
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("visplay_config_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

TEST(Config, PaperDefaults) {
  const VisPlayConfig c;
  EXPECT_NO_THROW(c.validate());
  EXPECT_EQ(c.iterations, 3);
  EXPECT_EQ(c.questioner.group_size, 8);
  EXPECT_EQ(c.uncertainty.samples, 10);
  EXPECT_EQ(c.uncertainty.sampling.top_k, 40);
  EXPECT_EQ(c.uncertainty.sampling.temperature, 1.0);
  EXPECT_EQ(c.data.vote_samples, 9);
  EXPECT_EQ(c.data.band_low, 0.25);
  EXPECT_EQ(c.data.band_high, 0.75);
  EXPECT_EQ(c.data.question_sampling.top_p, 0.95);
  EXPECT_EQ(c.data.candidate_images, 8000);
  EXPECT_EQ(c.questioner.rollout.top_p, 0.99);
  EXPECT_EQ(c.questioner.rollout.max_new_tokens, 2048);
  EXPECT_EQ(c.reasoner.rollout.max_new_tokens, 4096);
  EXPECT_EQ(c.questioner.steps, 20);
  EXPECT_EQ(c.grpo.clip_eps_low, 0.2);
  EXPECT_EQ(c.grpo.clip_eps_high, 0.3);
  EXPECT_EQ(c.grpo.dual_clip, 3.0);
  EXPECT_EQ(c.grpo.kl_coef, 0.01);
  EXPECT_EQ(c.grpo.kl_estimator, KlEstimator::k3);
  EXPECT_EQ(c.grpo.lr, 1e-6);
  EXPECT_EQ(c.grpo.weight_decay, 0.01);
  EXPECT_EQ(c.grpo.grad_clip, 1.0);
  EXPECT_EQ(c.grpo.advantage_eps, 1e-6);
  EXPECT_EQ(c.grpo.prompts_per_step, 512);
  EXPECT_EQ(c.grpo.prompts_per_update, 128);
  EXPECT_EQ(c.rewards.uncertainty, UncertaintyReward::paper);
  EXPECT_EQ(c.rewards.diversity_scope, DiversityScope::paper);
  EXPECT_EQ(c.rewards.questioner, QuestionerReward::paper);
  EXPECT_EQ(c.rewards.reasoner, ReasonerReward::paper);
  EXPECT_EQ(c.rewards.diversity_lambda, 1.0);
  EXPECT_EQ(c.rewards.cluster_threshold, 0.5);
  EXPECT_EQ(c.images.min_pixels, 512 * 512);
  EXPECT_NE(c.prompts.reasoner_train.find("\\boxed{}"), std::string::npos);
}

TEST(Config, JsonUsesNamedSections) {
  const json j = VisPlayConfig{}.to_json();
  EXPECT_EQ(j.at("rewards").at("uncertainty"), "paper");
  EXPECT_EQ(j.at("rewards").at("bleu_symmetry"), "average");
  EXPECT_EQ(j.at("grpo").at("kl_estimator"), "k3");
  EXPECT_EQ(j.at("uncertainty").at("sampling").at("top_k"), 40);
  EXPECT_EQ(j.at("data").at("band_low"), 0.25);
}

// Every field changed away from its default survives to_json -> from_json and save -> load.
TEST(Config, RoundTrip) {
  VisPlayConfig c;
  c.iterations = 5;
  c.seed = 99;
  c.questioner.group_size = 4;
  c.questioner.steps = 7;
  c.questioner.rollout = {0.7, 0.9, 12, 64};
  c.reasoner.group_size = 6;
  c.reasoner.rollout.temperature = 0.0;
  c.reasoner.min_kept_fraction = 0.2;
  c.uncertainty.samples = 6;
  c.uncertainty.sampling.top_k = 5;
  c.data.candidate_images = 300;
  c.data.same_images_every_iteration = false;
  c.data.vote_samples = 5;
  c.data.band_low = 0.3;
  c.data.band_high = 0.8;
  c.data.vote_sampling.top_p = 0.5;
  c.grpo.prompts_per_step = 64;
  c.grpo.prompts_per_update = 16;
  c.grpo.advantage = AdvantageKind::dr_grpo;
  c.grpo.drop_constant_groups = true;
  c.grpo.loss_aggregation = LossAggregation::seq_mean_token_mean;
  c.grpo.kl_estimator = KlEstimator::k2;
  c.grpo.lr = 3e-4;
  c.grpo.dual_clip = 2.5;
  c.rewards.uncertainty = UncertaintyReward::reference;
  c.rewards.diversity_scope = DiversityScope::reference;
  c.rewards.questioner = QuestionerReward::reference;
  c.rewards.reasoner = ReasonerReward::reference;
  c.rewards.bleu_symmetry = BleuSymmetry::upper;
  c.rewards.answer_no_rule = true;
  c.rewards.format_weight = 0.2;
  c.images.max_pixels = 1 << 20;
  c.prompts.reasoner_direct = "Q: {question}\nA: \\boxed{}";
  c.prompts.questioner = "Ask about the image. \"Quoted\" and unicode: \xc3\xa9";

  const json j = c.to_json();
  const VisPlayConfig back = VisPlayConfig::from_json(j);
  EXPECT_EQ(back.to_json(), j);
  EXPECT_EQ(back.grpo.kl_estimator, KlEstimator::k2);
  EXPECT_EQ(back.rewards.diversity_scope, DiversityScope::reference);
  EXPECT_EQ(back.prompts.questioner, c.prompts.questioner);
  EXPECT_EQ(back.questioner.rollout.top_k, 12);
  EXPECT_EQ(j.at("rewards").at("questioner"), "reference");

  const std::string path = temp_path("roundtrip.json");
  c.save(path);
  const VisPlayConfig loaded = VisPlayConfig::load(path);
  std::remove(path.c_str());
  EXPECT_EQ(loaded.to_json(), j);
  EXPECT_NE(VisPlayConfig{}.to_json(), j);
}

TEST(Config, PartialFileKeepsDefaults) {
  const auto c = VisPlayConfig::from_json(json::parse(R"({"questioner": {"group_size": 4},
      "rewards": {"uncertainty": "reference"}, "grpo": {"lr": 0.001}})"));
  EXPECT_EQ(c.questioner.group_size, 4);
  EXPECT_EQ(c.rewards.uncertainty, UncertaintyReward::reference);
  EXPECT_EQ(c.grpo.lr, 0.001);
  EXPECT_EQ(c.questioner.steps, 20);
  EXPECT_EQ(c.uncertainty.samples, 10);
  EXPECT_EQ(c.rewards.reasoner, ReasonerReward::paper);
  EXPECT_NO_THROW(VisPlayConfig::from_json(json::object()));
}

TEST(Config, UnknownKeys) {
  expect_error([] { VisPlayConfig::from_json(json::parse(R"({"iteratons": 3})")); },
               {"unknown key", "'iteratons'", "3"});
  expect_error([] { VisPlayConfig::from_json(json::parse(R"({"grpo": {"kl": 0.1}})")); },
               {"unknown key", "'grpo.kl'", "0.1"});
  expect_error(
      [] { VisPlayConfig::from_json(json::parse(R"({"data": {"vote_sampling": {"topp": 1}}})")); },
      {"'data.vote_sampling.topp'"});
  // A section given as a value, and a value given as a section.
  expect_error([] { VisPlayConfig::from_json(json::parse(R"({"grpo": 5})")); },
               {"'grpo'", "5", "object"});
  expect_error([] { VisPlayConfig::from_json(json::parse(R"({"iterations": {"n": 3}})")); },
               {"'iterations'"});
  expect_error([] { VisPlayConfig::from_json(json::parse("[1, 2]")); }, {"root", "object"});
}

TEST(Config, WrongTypes) {
  expect_error([] { VisPlayConfig::from_json(json::parse(R"({"iterations": "3"})")); },
               {"'iterations'", "\"3\"", "integer"});
  expect_error([] { VisPlayConfig::from_json(json::parse(R"({"iterations": 2.5})")); },
               {"'iterations'", "2.5"});
  expect_error([] { VisPlayConfig::from_json(json::parse(R"({"grpo": {"lr": "fast"}})")); },
               {"'grpo.lr'", "\"fast\"", "number"});
  expect_error(
      [] {
        VisPlayConfig::from_json(json::parse(R"({"data": {"same_images_every_iteration": 1}})"));
      },
      {"'data.same_images_every_iteration'", "true or false"});
  expect_error(
      [] { VisPlayConfig::from_json(json::parse(R"({"rewards": {"uncertainty": "papr"}})")); },
      {"'rewards.uncertainty'", "\"papr\"", "paper, reference"});
  expect_error([] { VisPlayConfig::from_json(json::parse(R"({"grpo": {"kl_estimator": 3}})")); },
               {"'grpo.kl_estimator'", "k1, k2, k3"});
  expect_error(
      [] { VisPlayConfig::from_json(json::parse(R"({"questioner": {"steps": 3000000000}})")); },
      {"'questioner.steps'", "3000000000", "range"});
}

TEST(Config, NonsenseValues) {
  auto bad = [](const char* text, std::initializer_list<std::string> needles) {
    expect_error([&] { VisPlayConfig::from_json(json::parse(text)); }, needles);
  };
  bad(R"({"uncertainty": {"samples": -1}})", {"'uncertainty.samples'", "-1", ">= 1"});
  bad(R"({"data": {"vote_samples": 0}})", {"'data.vote_samples'", "0"});
  bad(R"({"questioner": {"group_size": 1}})", {"'questioner.group_size'", "1", ">= 2"});
  bad(R"({"reasoner": {"group_size": 0}})", {"'reasoner.group_size'"});
  bad(R"({"data": {"band_low": 0.8, "band_high": 0.3}})",
      {"'data.band_low'", "0.8", "data.band_high", "0.3"});
  bad(R"({"data": {"band_high": 1.5}})", {"'data.band_high'", "1.5"});
  bad(R"({"iterations": 0})", {"'iterations'", "0"});
  bad(R"({"questioner": {"rollout": {"top_p": 0}}})", {"'questioner.rollout.top_p'", "(0, 1]"});
  bad(R"({"uncertainty": {"sampling": {"temperature": -0.5}}})",
      {"'uncertainty.sampling.temperature'", "-0.5"});
  bad(R"({"reasoner": {"rollout": {"top_k": -3}}})", {"'reasoner.rollout.top_k'", "-3"});
  bad(R"({"data": {"question_sampling": {"max_new_tokens": 0}}})",
      {"'data.question_sampling.max_new_tokens'"});
  bad(R"({"grpo": {"dual_clip": 1.0}})", {"'grpo.dual_clip'", "> 1"});
  bad(R"({"grpo": {"clip_eps_low": -0.1}})", {"'grpo.clip_eps_low'", "-0.1"});
  bad(R"({"grpo": {"kl_coef": -0.01}})", {"'grpo.kl_coef'"});
  bad(R"({"grpo": {"lr": 0}})", {"'grpo.lr'", "> 0"});
  bad(R"({"grpo": {"prompts_per_update": 100}})", {"'grpo.prompts_per_update'", "100", "512"});
  bad(R"({"grpo": {"adam_beta2": 1.0}})", {"'grpo.adam_beta2'"});
  bad(R"({"rewards": {"diversity_lambda": -1}})", {"'rewards.diversity_lambda'"});
  bad(R"({"rewards": {"format_weight": 2}})", {"'rewards.format_weight'", "2"});
  bad(R"({"images": {"min_pixels": 100, "max_pixels": 10}})", {"'images.max_pixels'", "10"});
  bad(R"({"prompts": {"reasoner_vote": "no placeholder"}})",
      {"'prompts.reasoner_vote'", "no placeholder", "{question}"});
  bad(R"({"prompts": {"questioner": ""}})", {"'prompts.questioner'"});
}

TEST(Config, FileErrorsNameThePath) {
  const std::string missing = temp_path("does_not_exist.json");
  expect_error([&] { VisPlayConfig::load(missing); }, {missing, "cannot open"});
  const std::string broken = temp_path("broken.json");
  {
    std::ofstream out(broken);
    out << "{\"iterations\": 3,,}";
  }
  expect_error([&] { VisPlayConfig::load(broken); }, {broken, "JSON"});
  {
    std::ofstream out(broken);
    out << R"({"uncertainty": {"samples": -4}})";
  }
  expect_error([&] { VisPlayConfig::load(broken); }, {broken, "'uncertainty.samples'", "-4"});
  std::remove(broken.c_str());
}

TEST(Config, RewardOptionsFollowConfig) {
  VisPlayConfig c;
  c.rewards.uncertainty = UncertaintyReward::reference;
  c.rewards.diversity_lambda = 0.25;
  c.rewards.bleu_symmetry = BleuSymmetry::upper;
  c.rewards.reasoner = ReasonerReward::reference;
  c.rewards.format_weight = 0.3;
  c.rewards.answer_no_rule = true;
  const auto q = c.rewards.questioner_options();
  EXPECT_EQ(q.uncertainty, UncertaintyReward::reference);
  EXPECT_EQ(q.diversity_lambda, 0.25);
  EXPECT_EQ(q.bleu_symmetry, BleuSymmetry::upper);
  EXPECT_EQ(q.cluster_threshold, 0.5);
  const auto r = c.rewards.reasoner_options();
  EXPECT_EQ(r.kind, ReasonerReward::reference);
  EXPECT_EQ(r.format_weight, 0.3);
  EXPECT_TRUE(r.answer.both_contain_no_rule);
  EXPECT_EQ(to_string(DiversityScope::reference), "reference");
  EXPECT_EQ(to_string(LossAggregation::token_mean), "token_mean");
}

}  // namespace
}  // namespace visplay::rl
