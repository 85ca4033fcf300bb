// The supervised warm start of the ShapeWorld base model (both roles, from the oracle's
// targets in data/sft.h) and the evaluation of a Reasoner on a benchmark folder.
// See docs/warmstart.md.
//
// Warm start: cross-entropy on response tokens only (prompt tokens are context, never
// targets), through VLM::token_logprobs; AdamW, linear warmup then cosine decay, global
// gradient clipping. Prompts come from rl/roles.h, the same builders the VisPlay loop
// uses, so the base sees at training time exactly the prompts it will see later.
//
// Evaluation: greedy decoding with the Reasoner's step-by-step prompt (ReasonerMode::train,
// the mode the loop trains), batched, scored with data/benchmark.h.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/benchmark.h"
#include "data/sft.h"
#include "model/image.h"
#include "model/policy.h"
#include "model/tokenizer.h"
#include "model/vlm.h"
#include "rl/roles.h"
#include "runtime/dist/data_parallel.h"
#include "runtime/metrics_log.h"

namespace visplay::rl {

// Size presets of the tiny ShapeWorld VLM: 64x64 images, 8x8 patches (64 patches, 16
// visual tokens after the 2x2 merger), a small ViT and a small Qwen2 decoder, the
// ShapeWorld vocabulary. "base-64" is "base" without the merger (each patch is a visual
// token: 64 per image). "tiny" is for tests (a few thousand parameters per layer).
VLMConfig shapeworld_model_config(const Tokenizer& tokenizer, const std::string& size = "base");

// An image as the model's input [3, H, W] (resized when its size differs from the
// config's, normalised with the config's mean/std).
Tensor image_to_pixels(const VLMConfig& config, const Image& image);
// The same for a rendered ShapeWorld scene.
Tensor scene_to_pixels(const VLMConfig& config, const world::Scene& scene);

// ---- supervised warm start ----------------------------------------------------------

struct PretrainOptions {
  int64_t steps = 3000;
  int64_t batch_size = 32;
  // Distinct training examples: example i of step s is number (s * batch + i) mod scenes of
  // the set seeded with `seed` (data/sft.h sample_example). Enough scenes: never repeated.
  int64_t scenes = 1000000;
  uint64_t seed = 1;  // data and initial weights
  double lr = 2e-3;
  double min_lr = 1e-4;
  int64_t warmup = 100;
  double weight_decay = 0.01;
  double grad_clip = 1.0;
  double adam_eps = 1e-8;
  sft::ExampleMix mix;
  // What step-by-step targets list (data/sft.h). Scene traces are longer: validation then
  // allows kSceneTraceMaxNewTokens reply tokens instead of EvalOptions' default.
  sft::TraceStyle trace = sft::TraceStyle::groups;
  int64_t eval_every = 500;      // 0: no periodic validation
  int64_t eval_questions = 240;  // validation benchmark (seed + 1000003), greedy
  int64_t eval_batch = 120;
  // Called after each validation (e.g. to save the checkpoint so far), when set; on rank 0
  // only, while the other ranks wait at a barrier.
  std::function<void(const VLM& model, int64_t step, double accuracy)> on_validation;
  // Crash-safe training state (rl/train_state.h), when state_path is not empty: the weights,
  // the AdamW moments and step, the step reached, the validation history and the metrics log
  // length, written atomically every state_every steps and after the last step. With resume
  // and an existing state file, training continues from the state's step and ends bit-identical
  // to an uninterrupted run (same options and CPU thread count). Options that decide the
  // weights must equal the state's (an error names the first that differs); the eval_* options
  // and state_every may change.
  std::string state_path;
  int64_t state_every = 50;
  bool resume = false;
  // Called after every step (steps done so far), before the state is saved; tests kill the
  // process here.
  std::function<void(int64_t steps_done)> after_step;
  // Data parallel over its ranks (null: one process): rank 0's weights are broadcast, each
  // rank takes its shard of every step's batch (dist::shard_range), the loss is normalised
  // by the whole batch's response tokens and gradients are summed over ranks before
  // clipping; validation questions are shared out too. Every rank gets the same result.
  // The training state (state_path) is written by rank 0 and read by every rank on resume;
  // under ZeRO-1 none is written and resume is an error.
  std::shared_ptr<dist::DataParallel> data_parallel;
};

struct PretrainStep {
  int64_t step = 0;
  double loss = 0;  // mean cross-entropy per response token
  double lr = 0;
  double grad_norm = 0;
  int64_t tokens = 0;  // response tokens in the batch
};

struct PretrainResult {
  int64_t first_step = 0;                              // > 0 when resumed from a saved state
  std::vector<PretrainStep> steps;                     // the steps this call ran
  std::vector<std::pair<int64_t, double>> validation;  // (step, greedy accuracy)
  double seconds = 0;
};

// One batch of supervised examples as model input: left-padded prompt + response, the
// next-token targets, and a mask that is 1 exactly where the target is a response token
// (its end-of-turn token included).
struct SupervisedBatch {
  VLMInput input;
  Tensor targets;  // [B, S] i64
  Tensor mask;     // [B, S] f32
  int64_t response_tokens = 0;
};
SupervisedBatch make_supervised_batch(const VLMConfig& config, const Tokenizer& tokenizer,
                                      const std::vector<sft::Example>& examples);
// The prompt an example's role is trained with (rl/roles.h builders, ShapeWorld prompts).
std::vector<int64_t> example_prompt(const VLMConfig& config, const Tokenizer& tokenizer,
                                    const sft::Example& example);

// Mean response-token cross-entropy of a batch (differentiable): the sum over its response
// tokens divided by `token_count` (<= 0: the batch's own response_tokens; data parallel: the
// whole batch's over every rank).
Tensor supervised_loss(const VLM& model, const SupervisedBatch& batch, int64_t token_count = 0);

// Trains `model` in place. Metrics (one line per step, and validation lines) go to `log`
// when given; a progress bar to `progress` when given.
PretrainResult pretrain(VLM& model, const Tokenizer& tokenizer, const PretrainOptions& options,
                        MetricsLog* log = nullptr, std::ostream* progress = nullptr);

// ---- evaluation -------------------------------------------------------------------------

// Reply length that holds the longest scene trace (6 objects, then a group of 6) and its
// answer: about 100 tokens.
constexpr int64_t kSceneTraceMaxNewTokens = 128;

struct EvalOptions {
  int64_t batch_size = 100;
  int64_t max_new_tokens = 80;
  ReasonerMode mode = ReasonerMode::train;  // step-by-step prompt
  // votes > 0: self-consistency (maj@votes) instead of greedy: `votes` replies sampled at
  // `temperature` per question, the reply kept is the first of the majority answer's bucket
  // (the silver label VisPlay would assign). Measures how far majority voting can lift the
  // model above its greedy answers (the ceiling of training on its own votes).
  int64_t votes = 0;
  double temperature = 0.7;
  double top_p = 1.0;  // nucleus of the vote sampling (1: the whole distribution)
  uint64_t seed = 1;
};

// Greedy replies (decoded text) of the Reasoner to questions about images, in order.
// `on_batch(done, total)` is called after every batch when given.
// pixels[i]: question i's image as the model prepares it (PolicyModel::prepare_image).
std::vector<std::string> answer_questions(
    const PolicyModel& model, const Tokenizer& tokenizer, const std::vector<Tensor>& pixels,
    const std::vector<std::string>& questions, const EvalOptions& options,
    const std::function<void(int64_t, int64_t)>& on_batch = nullptr);
std::vector<std::string> answer_questions(
    const VLM& model, const Tokenizer& tokenizer, const std::vector<Tensor>& pixels,
    const std::vector<std::string>& questions, const EvalOptions& options,
    const std::function<void(int64_t, int64_t)>& on_batch = nullptr);

struct EvalResult {
  ScoreReport report;
  ScoreReport blind;  // the blind baseline (type -> most common answer)
  std::vector<std::string> replies;
  double seconds = 0;
};

// Loads every image of a benchmark (an error names the image), answers, scores.
// Any PolicyModel: the demo VLM or Qwen2.5-VL (images prepared by the model).
EvalResult evaluate_benchmark(const PolicyModel& model, const Tokenizer& tokenizer,
                              const Benchmark& bench, const EvalOptions& options,
                              std::ostream* progress = nullptr);
EvalResult evaluate_benchmark(const VLM& model, const Tokenizer& tokenizer, const Benchmark& bench,
                              const EvalOptions& options, std::ostream* progress = nullptr);
// Same on in-memory benchmark items (validation during pretraining, tests). With `dp` over
// several ranks each rank answers its shard of the items and the replies are gathered, so
// every rank returns the whole report.
EvalResult evaluate_items(const VLM& model, const Tokenizer& tokenizer,
                          const std::vector<world::BenchmarkItem>& items,
                          const EvalOptions& options, dist::DataParallel* dp = nullptr);

// The report: {"accuracy", "per_type", "hallucination", "no_answer", "questions", ...the
// rest of ScoreReport::to_json(), "blind_baseline": {same fields}, "seconds"}.
nlohmann::json eval_report_json(const EvalResult& result);
// Console table: per type, the model's accuracy beside the blind baseline's.
std::string eval_table(const EvalResult& result);

}  // namespace visplay::rl
