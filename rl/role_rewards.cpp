#include "rl/role_rewards.h"

#include <chrono>
#include <memory>
#include <stdexcept>

#include "rl/rewards.h"
#include "rl/rollout.h"

namespace visplay::rl {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<PromptInput> reasoner_prompts(const RoleSetup& setup, const std::vector<Tensor>& images,
                                          const std::vector<std::string>& questions,
                                          ReasonerMode mode) {
  if (images.size() != questions.size()) {
    throw std::runtime_error("answer_questions: " + std::to_string(images.size()) + " images for " +
                             std::to_string(questions.size()) + " questions");
  }
  std::vector<PromptInput> prompts(questions.size());
  for (size_t i = 0; i < questions.size(); ++i) {
    prompts[i].ids =
        build_reasoner_prompt(setup.format, *setup.tokenizer, setup.visual_tokens(images[i]),
                              questions[i], mode, setup.prompts);
    prompts[i].pixels = images[i];
  }
  return prompts;
}

}  // namespace

uint64_t mix_seed(uint64_t base, uint64_t a, uint64_t b) {
  // Two rounds of splitmix64 through derive_seeds: distinct (a, b) give unrelated streams.
  uint64_t s = derive_seeds(base, 1)[0];
  s = derive_seeds(s ^ (a * 0x9E3779B97F4A7C15ULL), 1)[0];
  return derive_seeds(s ^ (b * 0xC2B2AE3D27D4EB4FULL + 1), 1)[0];
}

RoleSetup make_role_setup(const VLM& model, const Tokenizer& tokenizer,
                          const VisPlayConfig& config) {
  RoleSetup s = make_role_setup(VLMPolicy(model), tokenizer, config);
  const int64_t per_image = model.config().vision.num_visual_tokens();
  s.visual_tokens = [per_image](const Tensor& image) {
    return image.dim() == 4 ? image.size(0) * per_image : per_image;
  };
  return s;
}

RoleSetup make_role_setup(const PolicyModel& model, const Tokenizer& tokenizer,
                          const VisPlayConfig& config) {
  RoleSetup s;
  s.tokenizer = &tokenizer;
  s.format = ChatFormat::for_tokenizer(tokenizer);
  s.prompts = resolve_prompts(config.prompts, tokenizer);
  if (!model.has_vision()) {
    throw std::runtime_error("the VisPlay roles need a vision model; this checkpoint is text only");
  }
  s.visual_tokens = [&model](const Tensor& image) { return model.visual_tokens(image); };
  if (model.image_pad_token_id() != tokenizer.special_ids().image_pad) {
    throw std::runtime_error(
        "model image_pad_token_id " + std::to_string(model.image_pad_token_id()) +
        " differs from the tokenizer's <|image_pad|> id " +
        std::to_string(tokenizer.special_ids().image_pad) + " (" + tokenizer.origin() + ")");
  }
  if (tokenizer.vocab_size() > model.vocab_size()) {
    throw std::runtime_error(
        "tokenizer " + tokenizer.origin() + " has " + std::to_string(tokenizer.vocab_size()) +
        " tokens but the model's vocab_size is " + std::to_string(model.vocab_size()));
  }
  s.stop_token = stop_token_id(tokenizer);
  s.generation_batch = config.grpo.generation_batch;
  return s;
}

std::vector<std::vector<AskedQuestion>> ask_questions(
    const PolicyModel& questioner, const RoleSetup& setup, const std::vector<Tensor>& images,
    int64_t samples_per_image, const SamplingConfig& sampling, uint64_t seed) {
  std::vector<PromptInput> prompts(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    prompts[i] = {build_questioner_prompt(setup.format, *setup.tokenizer,
                                          setup.visual_tokens(images[i]), setup.prompts),
                  images[i]};
  }
  std::vector<Generation> gens = generate_groups(questioner, prompts, samples_per_image,
                                                 to_sampling_options(sampling, setup.stop_token),
                                                 seed, setup.generation_batch);
  std::vector<std::vector<AskedQuestion>> out(images.size());
  for (size_t i = 0; i < gens.size(); ++i) {
    AskedQuestion q;
    q.output = decode_response(*setup.tokenizer, gens[i].tokens);
    q.parsed = parse_questioner_output(q.output);
    out[static_cast<size_t>(gens[i].prompt_index)].push_back(std::move(q));
  }
  return out;
}

std::vector<std::vector<std::string>> answer_questions(
    const PolicyModel& reasoner, const RoleSetup& setup, const std::vector<Tensor>& images,
    const std::vector<std::string>& questions, ReasonerMode mode, int64_t samples,
    const SamplingConfig& sampling, uint64_t seed) {
  std::vector<PromptInput> prompts = reasoner_prompts(setup, images, questions, mode);
  std::vector<Generation> gens =
      generate_groups(reasoner, prompts, samples, to_sampling_options(sampling, setup.stop_token),
                      seed, setup.generation_batch);
  std::vector<std::vector<std::string>> out(questions.size());
  for (const Generation& g : gens) {
    out[static_cast<size_t>(g.prompt_index)].push_back(decode_response(*setup.tokenizer, g.tokens));
  }
  return out;
}

// Decode and parse every rollout, let the frozen Reasoner answer each valid question m times
// directly (one batched call), vote, then combine uncertainty and diversity per image group.
RewardFn make_questioner_reward(const VLM& reasoner, const RoleSetup& setup,
                                const VisPlayConfig& config, uint64_t seed, uint64_t first_call) {
  auto policy = std::make_shared<VLMPolicy>(reasoner);
  RewardFn inner = make_questioner_reward(*policy, setup, config, seed, first_call);
  return [policy, inner](const std::vector<PromptInput>& prompts,
                         const std::vector<Generation>& rollouts,
                         int64_t group_size) { return inner(prompts, rollouts, group_size); };
}

RewardFn make_questioner_reward(const PolicyModel& reasoner, const RoleSetup& setup,
                                const VisPlayConfig& config, uint64_t seed, uint64_t first_call) {
  auto calls = std::make_shared<uint64_t>(first_call);
  return [&reasoner, setup, config, seed, calls](const std::vector<PromptInput>& prompts,
                                                 const std::vector<Generation>& rollouts,
                                                 int64_t group_size) {
    const uint64_t call = (*calls)++;
    const AnswerOptions answer_opt{config.rewards.answer_no_rule};
    std::vector<QuestionerSample> samples(rollouts.size());
    std::vector<Tensor> images;
    std::vector<std::string> questions;
    std::vector<size_t> owner;
    for (size_t i = 0; i < rollouts.size(); ++i) {
      const std::string text = decode_response(*setup.tokenizer, rollouts[i].tokens);
      ParsedQuestion parsed = parse_questioner_output(text);
      samples[i].group = static_cast<int>(i / static_cast<size_t>(group_size));
      samples[i].valid = parsed.valid;
      samples[i].question = parsed.question;
      if (parsed.valid) {
        images.push_back(prompts[static_cast<size_t>(rollouts[i].prompt_index)].pixels);
        questions.push_back(parsed.question);
        owner.push_back(i);
      }
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (!questions.empty()) {
      std::vector<std::vector<std::string>> answers = answer_questions(
          reasoner, setup, images, questions, ReasonerMode::direct, config.uncertainty.samples,
          config.uncertainty.sampling, mix_seed(seed, call));
      for (size_t q = 0; q < questions.size(); ++q) {
        samples[owner[q]].confidence = majority_vote_responses(answers[q], answer_opt).confidence;
      }
    }
    const double answer_seconds = seconds_since(t0);
    QuestionerRewards r = questioner_rewards(samples, config.rewards.questioner_options());
    RewardResult out;
    out.rewards = r.reward;
    double n = static_cast<double>(rollouts.size()), nv = static_cast<double>(questions.size());
    double unc = 0, div = 0, conf = 0, cluster = 0;
    for (size_t i = 0; i < samples.size(); ++i) {
      if (!samples[i].valid) continue;
      unc += r.uncertainty[i];
      div += r.diversity[i];
      conf += samples[i].confidence;
      cluster += r.cluster_size[i];
    }
    out.metrics["valid_fraction"] = n > 0 ? nv / n : 0.0;
    out.metrics["r_unc_mean"] = nv > 0 ? unc / nv : 0.0;
    out.metrics["r_div_mean"] = nv > 0 ? div / nv : 0.0;
    out.metrics["confidence_mean"] = nv > 0 ? conf / nv : 0.0;
    out.metrics["cluster_size_mean"] = nv > 0 ? cluster / nv : 0.0;
    out.metrics["oracle_answer_seconds"] = answer_seconds;
    return out;
  };
}

SilverSet build_silver_set(const PolicyModel& questioner, const PolicyModel& reasoner,
                           const RoleSetup& setup, const VisPlayConfig& config,
                           const std::vector<Tensor>& images, uint64_t seed, bool with_greedy) {
  const auto t0 = std::chrono::steady_clock::now();
  const AnswerOptions answer_opt{config.rewards.answer_no_rule};
  SilverSet set;
  std::vector<std::vector<AskedQuestion>> asked =
      ask_questions(questioner, setup, images, 1, config.data.question_sampling, mix_seed(seed, 1));
  std::vector<Tensor> valid_images;
  std::vector<std::string> valid_questions;
  std::vector<size_t> owner;
  for (size_t i = 0; i < asked.size(); ++i) {
    SilverQuestion q;
    q.image = static_cast<int64_t>(i);
    q.output = asked[i][0].output;
    q.valid = asked[i][0].parsed.valid;
    q.question = asked[i][0].parsed.question;
    if (q.valid) {
      valid_images.push_back(images[i]);
      valid_questions.push_back(q.question);
      owner.push_back(set.questions.size());
    }
    set.questions.push_back(std::move(q));
  }
  const int m = config.data.vote_samples;
  set.confidence_histogram.assign(static_cast<size_t>(m) + 1, 0);
  if (!valid_questions.empty()) {
    std::vector<std::vector<std::string>> votes =
        answer_questions(reasoner, setup, valid_images, valid_questions, ReasonerMode::vote, m,
                         config.data.vote_sampling, mix_seed(seed, 2));
    for (size_t k = 0; k < valid_questions.size(); ++k) {
      SilverQuestion& q = set.questions[owner[k]];
      for (const std::string& v : votes[k]) q.votes.push_back(extract_boxed(v));
      VoteResult vote = majority_vote(q.votes, answer_opt);
      q.has_label = vote.has_label;
      q.label = vote.label;
      q.confidence = vote.confidence;
      q.kept = vote.has_label &&
               in_confidence_band(vote.confidence, config.data.band_low, config.data.band_high);
      set.kept += q.kept;
      set.confidence_histogram[static_cast<size_t>(vote.count)] += 1;
    }
    if (with_greedy) {
      SamplingConfig greedy = config.data.vote_sampling;
      greedy.temperature = 0;
      std::vector<std::vector<std::string>> g =
          answer_questions(reasoner, setup, valid_images, valid_questions, ReasonerMode::vote, 1,
                           greedy, mix_seed(seed, 3));
      for (size_t k = 0; k < valid_questions.size(); ++k) {
        set.questions[owner[k]].greedy = extract_boxed(g[k][0]);
      }
    }
  }
  set.seconds = seconds_since(t0);
  return set;
}

RewardFn make_reasoner_reward(const RoleSetup& setup, const VisPlayConfig& config,
                              std::vector<std::string> labels) {
  return [setup, options = config.rewards.reasoner_options(), labels = std::move(labels)](
             const std::vector<PromptInput>& prompts, const std::vector<Generation>& rollouts,
             int64_t group_size) {
    if (labels.size() != prompts.size()) {
      throw std::runtime_error("reasoner reward: " + std::to_string(labels.size()) +
                               " silver labels for " + std::to_string(prompts.size()) + " prompts");
    }
    RewardResult out;
    double match = 0, formatted = 0;
    ReasonerRewardOptions match_only = options;
    match_only.kind = ReasonerReward::paper;
    for (const Generation& g : rollouts) {
      const std::string text = decode_response(*setup.tokenizer, g.tokens);
      const std::string& label = labels[static_cast<size_t>(g.prompt_index)];
      out.rewards.push_back(reasoner_reward(text, label, options));
      match += reasoner_reward(text, label, match_only);
      formatted += extract_boxed(text).has_value();
    }
    const double n = rollouts.empty() ? 1.0 : static_cast<double>(rollouts.size());
    out.metrics["silver_match"] = match / n;
    out.metrics["format_fraction"] = formatted / n;
    (void)group_size;
    return out;
  };
}

}  // namespace visplay::rl
