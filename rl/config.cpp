#include "rl/config.h"

#include <cmath>
#include <fstream>
#include <limits>
#include <set>
#include <stdexcept>
#include <utility>

#include "model/file_util.h"

namespace visplay::rl {
namespace {

using nlohmann::json;

// ---- enum spellings ------------------------------------------------------------------------

template <class E>
struct EnumNames;
#define VISPLAY_ENUM_NAMES(E, ...)                                      \
  template <>                                                           \
  struct EnumNames<E> {                                                 \
    static constexpr std::pair<E, const char*> items[] = {__VA_ARGS__}; \
  }
VISPLAY_ENUM_NAMES(UncertaintyReward, {UncertaintyReward::paper, "paper"},
                   {UncertaintyReward::reference, "reference"});
VISPLAY_ENUM_NAMES(DiversityScope, {DiversityScope::paper, "paper"},
                   {DiversityScope::reference, "reference"});
VISPLAY_ENUM_NAMES(QuestionerReward, {QuestionerReward::paper, "paper"},
                   {QuestionerReward::reference, "reference"});
VISPLAY_ENUM_NAMES(ReasonerReward, {ReasonerReward::paper, "paper"},
                   {ReasonerReward::reference, "reference"});
VISPLAY_ENUM_NAMES(BleuSymmetry, {BleuSymmetry::average, "average"},
                   {BleuSymmetry::upper, "upper"});
VISPLAY_ENUM_NAMES(AdvantageKind, {AdvantageKind::grpo, "grpo"},
                   {AdvantageKind::dr_grpo, "dr_grpo"});
VISPLAY_ENUM_NAMES(KlEstimator, {KlEstimator::k1, "k1"}, {KlEstimator::k2, "k2"},
                   {KlEstimator::k3, "k3"});
VISPLAY_ENUM_NAMES(LossAggregation, {LossAggregation::token_mean, "token_mean"},
                   {LossAggregation::seq_mean_token_mean, "seq_mean_token_mean"});
VISPLAY_ENUM_NAMES(LabelSource, {LabelSource::silver, "silver"},
                   {LabelSource::silver_well_posed, "silver_well_posed"},
                   {LabelSource::oracle, "oracle"});
#undef VISPLAY_ENUM_NAMES

template <class E>
concept NamedEnum = requires {
  EnumNames<E>::items;
};

template <NamedEnum E>
std::string enum_name(E value) {
  for (const auto& [v, name] : EnumNames<E>::items) {
    if (v == value) return name;
  }
  return "?";
}

template <NamedEnum E>
std::string enum_choices() {
  std::string out;
  for (const auto& [v, name] : EnumNames<E>::items)
    out += (out.empty() ? "" : ", ") + std::string(name);
  return out;
}

// ---- the field list: one place that names every key --------------------------------------

template <class S, class F>
void visit_sampling(S& s, const std::string& prefix, F& f) {
  f(prefix + ".temperature", s.temperature);
  f(prefix + ".top_p", s.top_p);
  f(prefix + ".top_k", s.top_k);
  f(prefix + ".max_new_tokens", s.max_new_tokens);
}

// C is VisPlayConfig or const VisPlayConfig; f(key, member) is called for every leaf.
template <class C, class F>
void visit_fields(C& c, F&& f) {
  f("iterations", c.iterations);
  f("seed", c.seed);
  f("checkpoint_every", c.checkpoint_every);
  f("questioner.group_size", c.questioner.group_size);
  f("questioner.steps", c.questioner.steps);
  visit_sampling(c.questioner.rollout, "questioner.rollout", f);
  f("reasoner.group_size", c.reasoner.group_size);
  f("reasoner.steps", c.reasoner.steps);
  visit_sampling(c.reasoner.rollout, "reasoner.rollout", f);
  f("reasoner.min_kept_fraction", c.reasoner.min_kept_fraction);
  f("reasoner.labels", c.reasoner.labels);
  f("reasoner.balance_labels", c.reasoner.balance_labels);
  f("uncertainty.samples", c.uncertainty.samples);
  visit_sampling(c.uncertainty.sampling, "uncertainty.sampling", f);
  f("data.candidate_images", c.data.candidate_images);
  f("data.same_images_every_iteration", c.data.same_images_every_iteration);
  visit_sampling(c.data.question_sampling, "data.question_sampling", f);
  f("data.vote_samples", c.data.vote_samples);
  visit_sampling(c.data.vote_sampling, "data.vote_sampling", f);
  f("data.band_low", c.data.band_low);
  f("data.band_high", c.data.band_high);
  f("grpo.prompts_per_step", c.grpo.prompts_per_step);
  f("grpo.prompts_per_update", c.grpo.prompts_per_update);
  f("grpo.epochs", c.grpo.epochs);
  f("grpo.max_nonfinite_updates", c.grpo.max_nonfinite_updates);
  f("grpo.micro_batch_size", c.grpo.micro_batch_size);
  f("grpo.advantage", c.grpo.advantage);
  f("grpo.advantage_eps", c.grpo.advantage_eps);
  f("grpo.drop_constant_groups", c.grpo.drop_constant_groups);
  f("grpo.clip_eps_low", c.grpo.clip_eps_low);
  f("grpo.clip_eps_high", c.grpo.clip_eps_high);
  f("grpo.dual_clip", c.grpo.dual_clip);
  f("grpo.loss_aggregation", c.grpo.loss_aggregation);
  f("grpo.kl_coef", c.grpo.kl_coef);
  f("grpo.kl_estimator", c.grpo.kl_estimator);
  f("grpo.lr", c.grpo.lr);
  f("grpo.weight_decay", c.grpo.weight_decay);
  f("grpo.adam_beta1", c.grpo.adam_beta1);
  f("grpo.adam_beta2", c.grpo.adam_beta2);
  f("grpo.adam_eps", c.grpo.adam_eps);
  f("grpo.grad_clip", c.grpo.grad_clip);
  f("grpo.train_vision_tower", c.grpo.train_vision_tower);
  f("grpo.master_weights", c.grpo.master_weights);
  f("grpo.recompute_layers", c.grpo.recompute_layers);
  f("grpo.generation_batch", c.grpo.generation_batch);
  f("rewards.uncertainty", c.rewards.uncertainty);
  f("rewards.diversity_scope", c.rewards.diversity_scope);
  f("rewards.questioner", c.rewards.questioner);
  f("rewards.reasoner", c.rewards.reasoner);
  f("rewards.diversity_lambda", c.rewards.diversity_lambda);
  f("rewards.cluster_threshold", c.rewards.cluster_threshold);
  f("rewards.bleu_symmetry", c.rewards.bleu_symmetry);
  f("rewards.format_weight", c.rewards.format_weight);
  f("rewards.answer_no_rule", c.rewards.answer_no_rule);
  f("images.min_pixels", c.images.min_pixels);
  f("images.max_pixels", c.images.max_pixels);
  f("prompts.questioner", c.prompts.questioner);
  f("prompts.reasoner_direct", c.prompts.reasoner_direct);
  f("prompts.reasoner_vote", c.prompts.reasoner_vote);
  f("prompts.reasoner_train", c.prompts.reasoner_train);
}

json::json_pointer pointer_of(const std::string& key) {
  std::string p = "/" + key;
  for (char& ch : p) {
    if (ch == '.') ch = '/';
  }
  return json::json_pointer(p);
}

template <class T>
json encode(const T& value) {
  if constexpr (NamedEnum<T>) {
    return enum_name(value);
  } else {
    return value;
  }
}

[[noreturn]] void fail(const std::string& key, const std::string& value, const std::string& why) {
  throw std::runtime_error("config key '" + key + "' = " + value + " is invalid: " + why);
}

template <class T>
std::string shown(const T& value) {
  return encode(value).dump();
}

// Reads j into `value`, checking the JSON type.
template <class T>
void decode(const json& j, const std::string& key, T& value) {
  if constexpr (std::is_same_v<T, bool>) {
    if (!j.is_boolean()) fail(key, j.dump(), "expected true or false");
    value = j.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    if (!j.is_number_integer()) fail(key, j.dump(), "expected an integer");
    if (j.is_number_unsigned()
            ? j.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<T>::max())
            : (j.get<int64_t>() < std::numeric_limits<T>::min() ||
               j.get<int64_t>() > std::numeric_limits<T>::max())) {
      fail(key, j.dump(), "out of range");
    }
    value = j.get<T>();
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!j.is_number()) fail(key, j.dump(), "expected a number");
    value = j.get<T>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!j.is_string()) fail(key, j.dump(), "expected a string");
    value = j.get<std::string>();
  } else {
    static_assert(NamedEnum<T>);
    if (j.is_string()) {
      for (const auto& [v, name] : EnumNames<T>::items) {
        if (j.get<std::string>() == name) {
          value = v;
          return;
        }
      }
    }
    fail(key, j.dump(), "expected one of " + enum_choices<T>());
  }
}

// Rejects keys that no field has: walks objects and compares full dotted paths.
void check_known_keys(const json& j, const std::string& prefix, const std::set<std::string>& leaves,
                      const std::set<std::string>& sections) {
  if (!j.is_object()) {
    throw std::runtime_error("config " +
                             (prefix.empty() ? std::string("root") : "key '" + prefix + "'") +
                             " = " + j.dump() + " is invalid: expected an object");
  }
  for (const auto& [name, value] : j.items()) {
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    if (sections.count(key)) {
      check_known_keys(value, key, leaves, sections);
    } else if (!leaves.count(key)) {
      throw std::runtime_error("config: unknown key '" + key + "' (value " + value.dump() + ")");
    }
  }
}

void check_sampling(const SamplingConfig& s, const std::string& prefix) {
  if (!(std::isfinite(s.temperature) && s.temperature >= 0)) {
    fail(prefix + ".temperature", shown(s.temperature), "must be a finite number >= 0");
  }
  if (!(s.top_p > 0 && s.top_p <= 1)) fail(prefix + ".top_p", shown(s.top_p), "must be in (0, 1]");
  if (s.top_k < 0) fail(prefix + ".top_k", shown(s.top_k), "must be >= 0 (0 = off)");
  if (s.max_new_tokens < 1)
    fail(prefix + ".max_new_tokens", shown(s.max_new_tokens), "must be >= 1");
}

template <class T>
void check_at_least(const std::string& key, T value, T low) {
  if (!(value >= low)) fail(key, shown(value), "must be >= " + shown(low));
}

void check_range(const std::string& key, double value, double low, double high) {
  if (!(value >= low && value <= high)) {
    fail(key, shown(value), "must be in [" + shown(low) + ", " + shown(high) + "]");
  }
}

void check_positive(const std::string& key, double value) {
  if (!(std::isfinite(value) && value > 0)) fail(key, shown(value), "must be a finite number > 0");
}

void check_non_negative(const std::string& key, double value) {
  if (!(std::isfinite(value) && value >= 0))
    fail(key, shown(value), "must be a finite number >= 0");
}

void check_question_placeholder(const std::string& key, const std::string& prompt) {
  if (prompt.find("{question}") == std::string::npos) {
    fail(key, shown(prompt), "must contain the placeholder {question}");
  }
}

}  // namespace

std::string to_string(UncertaintyReward v) { return enum_name(v); }
std::string to_string(DiversityScope v) { return enum_name(v); }
std::string to_string(QuestionerReward v) { return enum_name(v); }
std::string to_string(ReasonerReward v) { return enum_name(v); }
std::string to_string(BleuSymmetry v) { return enum_name(v); }
std::string to_string(AdvantageKind v) { return enum_name(v); }
std::string to_string(KlEstimator v) { return enum_name(v); }
std::string to_string(LossAggregation v) { return enum_name(v); }
std::string to_string(LabelSource v) { return enum_name(v); }

QuestionerRewardOptions RewardConfig::questioner_options() const {
  QuestionerRewardOptions o;
  o.uncertainty = uncertainty;
  o.diversity_scope = diversity_scope;
  o.combine = questioner;
  o.diversity_lambda = diversity_lambda;
  o.cluster_threshold = cluster_threshold;
  o.bleu_symmetry = bleu_symmetry;
  return o;
}

ReasonerRewardOptions RewardConfig::reasoner_options() const {
  ReasonerRewardOptions o;
  o.kind = reasoner;
  o.format_weight = format_weight;
  o.answer.both_contain_no_rule = answer_no_rule;
  return o;
}

void VisPlayConfig::validate() const {
  check_at_least("iterations", iterations, 1);
  check_at_least<int64_t>("seed", seed, 0);
  check_at_least("checkpoint_every", checkpoint_every, 1);
  check_at_least("questioner.group_size", questioner.group_size, 2);
  check_at_least("questioner.steps", questioner.steps, 0);
  check_sampling(questioner.rollout, "questioner.rollout");
  check_at_least("reasoner.group_size", reasoner.group_size, 2);
  check_at_least("reasoner.steps", reasoner.steps, 0);
  check_sampling(reasoner.rollout, "reasoner.rollout");
  check_range("reasoner.min_kept_fraction", reasoner.min_kept_fraction, 0.0, 1.0);
  check_at_least("uncertainty.samples", uncertainty.samples, 1);
  check_sampling(uncertainty.sampling, "uncertainty.sampling");
  check_at_least("data.candidate_images", data.candidate_images, 1);
  check_sampling(data.question_sampling, "data.question_sampling");
  check_at_least("data.vote_samples", data.vote_samples, 1);
  check_sampling(data.vote_sampling, "data.vote_sampling");
  check_range("data.band_low", data.band_low, 0.0, 1.0);
  check_range("data.band_high", data.band_high, 0.0, 1.0);
  if (data.band_low > data.band_high) {
    fail("data.band_low", shown(data.band_low),
         "greater than data.band_high = " + shown(data.band_high));
  }
  check_at_least("grpo.prompts_per_step", grpo.prompts_per_step, 1);
  check_at_least("grpo.prompts_per_update", grpo.prompts_per_update, 1);
  if (grpo.prompts_per_step % grpo.prompts_per_update != 0) {
    fail("grpo.prompts_per_update", shown(grpo.prompts_per_update),
         "must divide grpo.prompts_per_step = " + shown(grpo.prompts_per_step));
  }
  check_at_least("grpo.epochs", grpo.epochs, 1);
  check_at_least("grpo.max_nonfinite_updates", grpo.max_nonfinite_updates, 1);
  check_at_least("grpo.micro_batch_size", grpo.micro_batch_size, 1);
  check_positive("grpo.advantage_eps", grpo.advantage_eps);
  if (!(grpo.clip_eps_low >= 0 && grpo.clip_eps_low < 1)) {
    fail("grpo.clip_eps_low", shown(grpo.clip_eps_low), "must be in [0, 1)");
  }
  check_non_negative("grpo.clip_eps_high", grpo.clip_eps_high);
  if (!(std::isfinite(grpo.dual_clip) && grpo.dual_clip > 1)) {
    fail("grpo.dual_clip", shown(grpo.dual_clip), "must be a finite number > 1");
  }
  check_non_negative("grpo.kl_coef", grpo.kl_coef);
  check_positive("grpo.lr", grpo.lr);
  check_non_negative("grpo.weight_decay", grpo.weight_decay);
  if (!(grpo.adam_beta1 >= 0 && grpo.adam_beta1 < 1)) {
    fail("grpo.adam_beta1", shown(grpo.adam_beta1), "must be in [0, 1)");
  }
  if (!(grpo.adam_beta2 >= 0 && grpo.adam_beta2 < 1)) {
    fail("grpo.adam_beta2", shown(grpo.adam_beta2), "must be in [0, 1)");
  }
  check_positive("grpo.adam_eps", grpo.adam_eps);
  check_non_negative("grpo.grad_clip", grpo.grad_clip);
  check_at_least("grpo.generation_batch", grpo.generation_batch, 1);
  check_non_negative("rewards.diversity_lambda", rewards.diversity_lambda);
  check_non_negative("rewards.cluster_threshold", rewards.cluster_threshold);
  check_range("rewards.format_weight", rewards.format_weight, 0.0, 1.0);
  check_at_least<int64_t>("images.min_pixels", images.min_pixels, 1);
  if (images.max_pixels < images.min_pixels) {
    fail("images.max_pixels", shown(images.max_pixels),
         "less than images.min_pixels = " + shown(images.min_pixels));
  }
  if (prompts.questioner.empty()) fail("prompts.questioner", "\"\"", "must not be empty");
  check_question_placeholder("prompts.reasoner_direct", prompts.reasoner_direct);
  check_question_placeholder("prompts.reasoner_vote", prompts.reasoner_vote);
  check_question_placeholder("prompts.reasoner_train", prompts.reasoner_train);
}

json VisPlayConfig::to_json() const {
  json j = json::object();
  visit_fields(*this, [&](const std::string& key, const auto& value) {
    j[pointer_of(key)] = encode(value);
  });
  return j;
}

VisPlayConfig VisPlayConfig::from_json(const json& j) {
  VisPlayConfig config;
  std::set<std::string> leaves, sections;
  visit_fields(config, [&](const std::string& key, const auto&) {
    leaves.insert(key);
    for (size_t dot = key.find('.'); dot != std::string::npos; dot = key.find('.', dot + 1)) {
      sections.insert(key.substr(0, dot));
    }
  });
  check_known_keys(j, "", leaves, sections);
  visit_fields(config, [&](const std::string& key, auto& value) {
    const auto pointer = pointer_of(key);
    if (j.contains(pointer)) decode(j.at(pointer), key, value);
  });
  config.validate();
  return config;
}

VisPlayConfig VisPlayConfig::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("config file '" + path + "': cannot open");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    throw std::runtime_error("config file '" + path + "': not valid JSON: " + e.what());
  }
  try {
    return from_json(j);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error("config file '" + path + "': " + e.what());
  }
}

// Atomic (temporary file, fsync, rename): a run killed while saving keeps the old file, and
// `evolve --resume` reads it back.
void VisPlayConfig::save(const std::string& path) const {
  try {
    write_file_atomic(path, to_json().dump(2) + "\n");
  } catch (const std::exception& e) {
    throw std::runtime_error("config file '" + path + "': " + e.what());
  }
}

}  // namespace visplay::rl
