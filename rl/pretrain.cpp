// Supervised warm start and benchmark evaluation (see rl/pretrain.h).
#include "rl/pretrain.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <span>
#include <sstream>
#include <stdexcept>

#include "model/sampler.h"
#include "rl/train_state.h"
#include "rl/vote.h"
#include "runtime/dist/zero.h"
#include "runtime/optim.h"
#include "runtime/progress.h"

namespace visplay::rl {

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Stacks [3, H, W] tensors into [N, 3, H, W].
Tensor stack_pixels(const std::vector<Tensor>& images) {
  std::vector<Tensor> parts;
  parts.reserve(images.size());
  for (const Tensor& t : images) parts.push_back(t.unsqueeze(0));
  return concat(parts, 0);
}

// The seed of the validation benchmark used during pretraining: far from any seed a
// user would give the training data.
uint64_t validation_seed(uint64_t seed) { return seed + 1000003; }

}  // namespace

VLMConfig shapeworld_model_config(const Tokenizer& tokenizer, const std::string& size) {
  VLMConfig c;
  c.has_vision = true;
  c.vision.image_size = world::kCanvasSize;
  c.vision.patch_size = 8;
  c.vision.num_channels = 3;
  c.vision.spatial_merge_size = 2;
  // Background-centred pixels: the (240, 240, 240) background maps to 0, so the patch
  // features of empty canvas are the same for every image and all the variation a visual
  // token carries comes from the objects (with mean/std 0.5 the background dominated the
  // visual tokens, which then stayed nearly identical across images during training).
  const float background = world::kBackground / 255.0f;
  c.vision.image_mean = {background, background, background};
  c.vision.image_std = {0.25f, 0.25f, 0.25f};
  c.decoder.vocab_size = tokenizer.vocab_size();
  c.decoder.tie_word_embeddings = true;
  c.decoder.max_position_embeddings = 512;
  if (size == "base" || size == "base-64") {
    // base-64: the same widths without the 2x2 merger, so every 8 x 8 patch is its own
    // visual token (64 per image instead of 16).
    if (size == "base-64") c.vision.spatial_merge_size = 1;
    c.vision.hidden_size = 96;
    c.vision.depth = 3;
    c.vision.num_heads = 4;
    c.vision.mlp_ratio = 2.0;
    c.vision.projector_hidden_size = 256;
    c.decoder.hidden_size = 128;
    c.decoder.intermediate_size = 320;
    c.decoder.num_hidden_layers = 4;
    c.decoder.num_attention_heads = 4;
    c.decoder.num_key_value_heads = 2;
  } else if (size == "tiny") {
    c.vision.hidden_size = 16;
    c.vision.depth = 1;
    c.vision.num_heads = 2;
    c.vision.mlp_ratio = 2.0;
    c.vision.projector_hidden_size = 32;
    c.decoder.hidden_size = 32;
    c.decoder.intermediate_size = 64;
    c.decoder.num_hidden_layers = 1;
    c.decoder.num_attention_heads = 2;
    c.decoder.num_key_value_heads = 1;
  } else {
    throw std::runtime_error("shapeworld_model_config: unknown size '" + size +
                             "' (expected base, base-64 or tiny)");
  }
  const SpecialTokenIds& s = tokenizer.special_ids();
  c.image_pad_token_id = s.image_pad;
  c.vision_start_token_id = s.vision_start;
  c.vision_end_token_id = s.vision_end;
  c.eos_token_id = s.im_end;
  c.pad_token_id = s.pad >= 0 ? s.pad : 0;
  c.validate("shapeworld_model_config");
  return c;
}

Tensor image_to_pixels(const VLMConfig& config, const Image& image) {
  const int size = static_cast<int>(config.vision.image_size);
  const Image& sized =
      (image.width == size && image.height == size) ? image : resize_bilinear(image, size, size);
  std::vector<float> chw =
      to_chw_normalized(sized, config.vision.image_mean.data(), config.vision.image_std.data());
  return Tensor::from_vector(chw, {3, size, size});
}

Tensor scene_to_pixels(const VLMConfig& config, const world::Scene& scene) {
  return image_to_pixels(config, world::render_scene(scene));
}

// ---- supervised warm start ----------------------------------------------------------

std::vector<int64_t> example_prompt(const VLMConfig& config, const Tokenizer& tokenizer,
                                    const sft::Example& example) {
  static const PromptConfig prompts = shapeworld_prompts();
  const ChatFormat format = ChatFormat::shapeworld();
  const int64_t visual = config.vision.num_visual_tokens();
  switch (example.role) {
    case sft::Role::questioner:
      return build_questioner_prompt(format, tokenizer, visual, prompts);
    case sft::Role::reasoner_trace:
      return build_reasoner_prompt(format, tokenizer, visual, example.question, ReasonerMode::train,
                                   prompts);
    case sft::Role::reasoner_direct:
      return build_reasoner_prompt(format, tokenizer, visual, example.question,
                                   ReasonerMode::direct, prompts);
  }
  throw std::logic_error("example_prompt: unknown role");
}

// Sequence b = [pad ... pad, prompt, response, stop]; the target at position s is token
// s + 1, counted (mask 1) only when token s + 1 belongs to the response.
SupervisedBatch make_supervised_batch(const VLMConfig& config, const Tokenizer& tokenizer,
                                      const std::vector<sft::Example>& examples) {
  if (examples.empty()) throw std::runtime_error("make_supervised_batch: no examples");
  const int64_t B = static_cast<int64_t>(examples.size());
  std::vector<std::vector<int64_t>> sequences(examples.size());
  std::vector<size_t> prompt_lengths(examples.size());
  std::vector<Tensor> images;
  size_t S = 0;
  for (size_t b = 0; b < examples.size(); ++b) {
    std::vector<int64_t> seq = example_prompt(config, tokenizer, examples[b]);
    prompt_lengths[b] = seq.size();
    std::vector<int64_t> response = encode_response(tokenizer, examples[b].target);
    seq.insert(seq.end(), response.begin(), response.end());
    S = std::max(S, seq.size());
    sequences[b] = std::move(seq);
    images.push_back(scene_to_pixels(config, examples[b].scene));
  }
  std::vector<int64_t> ids(B * S, config.pad_token_id), targets(B * S, 0);
  std::vector<int32_t> attention(B * S, 0);
  std::vector<float> mask(B * S, 0.0f);
  SupervisedBatch batch;
  for (int64_t b = 0; b < B; ++b) {
    const std::vector<int64_t>& seq = sequences[b];
    const size_t pad = S - seq.size();
    for (size_t i = 0; i < seq.size(); ++i) {
      ids[b * S + pad + i] = seq[i];
      attention[b * S + pad + i] = 1;
      if (i + 1 < seq.size()) {
        targets[b * S + pad + i] = seq[i + 1];
        if (i + 1 >= prompt_lengths[b]) {
          mask[b * S + pad + i] = 1.0f;
          batch.response_tokens++;
        }
      }
    }
  }
  const int64_t s = static_cast<int64_t>(S);
  batch.input.input_ids = Tensor::from_vector(ids, {B, s});
  batch.input.attention_mask = Tensor::from_vector(attention, {B, s});
  batch.input.pixels = stack_pixels(images);
  batch.targets = Tensor::from_vector(targets, {B, s});
  batch.mask = Tensor::from_vector(mask, {B, s});
  return batch;
}

Tensor supervised_loss(const VLM& model, const SupervisedBatch& batch, int64_t token_count) {
  TokenLogprobs lp = model.token_logprobs(batch.input, batch.targets);
  Tensor total = sum(mul(lp.logprobs, batch.mask));
  const int64_t tokens = token_count > 0 ? token_count : batch.response_tokens;
  return scale(total, -1.0 / static_cast<double>(std::max<int64_t>(1, tokens)));
}

namespace {

// The options that decide the trained weights: a resumed run must use the same ones.
nlohmann::json pretrain_state_options(const PretrainOptions& o) {
  return {{"steps", o.steps},
          {"batch_size", o.batch_size},
          {"scenes", o.scenes},
          {"seed", o.seed},
          {"lr", o.lr},
          {"min_lr", o.min_lr},
          {"warmup", o.warmup},
          {"weight_decay", o.weight_decay},
          {"grad_clip", o.grad_clip},
          {"mix", {o.mix.questioner, o.mix.reasoner_trace, o.mix.reasoner_direct}},
          {"trace", sft::trace_style_name(o.trace)}};
}

}  // namespace

PretrainResult pretrain(VLM& model, const Tokenizer& tokenizer, const PretrainOptions& o,
                        MetricsLog* log, std::ostream* progress) {
  if (o.steps <= 0 || o.batch_size <= 0 || o.scenes <= 0) {
    throw std::runtime_error("pretrain: steps, batch_size and scenes must be positive (got " +
                             std::to_string(o.steps) + ", " + std::to_string(o.batch_size) + ", " +
                             std::to_string(o.scenes) + ")");
  }
  if (!o.state_path.empty() && o.state_every <= 0) {
    throw std::runtime_error("pretrain: state_every = " + std::to_string(o.state_every) +
                             " must be positive");
  }
  const auto start = std::chrono::steady_clock::now();
  std::shared_ptr<dist::DataParallel> dp =
      o.data_parallel ? o.data_parallel : std::make_shared<dist::DataParallel>();
  if (dp->size() > o.batch_size) {
    throw std::runtime_error("pretrain: batch_size " + std::to_string(o.batch_size) +
                             " is smaller than the " + std::to_string(dp->size()) +
                             " ranks (each rank needs an example per step)");
  }
  const dist::Range shard = dist::shard_range(o.batch_size, dp->rank(), dp->size());
  dp->broadcast_parameters(model.params().tensors());
  model.params().set_requires_grad(true);
  std::vector<Tensor> params = model.params().tensors();
  const AdamWOptions adam{o.lr, 0.9, 0.95, o.adam_eps, o.weight_decay};
  // ZeRO-1: the sharded optimizer holds the moments; the plain one then has no parameters.
  std::unique_ptr<dist::ZeroAdamW> zero;
  if (dp->zero1()) zero = std::make_unique<dist::ZeroAdamW>(params, adam, dp);
  AdamW optimizer(zero ? std::vector<Tensor>{} : params, adam);
  std::vector<world::BenchmarkItem> validation;
  if (o.eval_every > 0 && o.eval_questions > 0) {
    validation = world::sample_benchmark(validation_seed(o.seed), o.eval_questions);
  }
  std::unique_ptr<ProgressBar> bar;
  if (progress) bar = std::make_unique<ProgressBar>("pretrain", o.steps, *progress);

  PretrainResult result;
  double smoothed = 0;
  // Resume: weights, optimizer, position and history from the saved state; the metrics
  // logged after it belong to steps that are redone, so they are cut off.
  const nlohmann::json state_options = pretrain_state_options(o);
  // Rank 0's view of the folder decides; every rank then loads the same file.
  const bool load_state =
      o.resume && !o.state_path.empty() &&
      dp->max(dp->is_main() && std::filesystem::exists(o.state_path) ? 1.0 : 0.0) > 0;
  if (load_state) {
    if (zero) {
      throw std::runtime_error("pretrain --resume with ZeRO-1 (--zero1): the training state " +
                               o.state_path +
                               " holds no sharded AdamW moments; resume without --zero1 "
                               "(docs/reliability.md)");
    }
    const nlohmann::json info = read_train_state_info(o.state_path);
    if (info.value("kind", "") != "pretrain") {
      throw std::runtime_error(o.state_path + ": not a pretrain training state");
    }
    nlohmann::json saved = info.value("options", nlohmann::json::object());
    // States written before trace styles existed were trained on the groups traces.
    if (!saved.contains("trace")) saved["trace"] = sft::trace_style_name(sft::TraceStyle::groups);
    for (auto it = state_options.begin(); it != state_options.end(); ++it) {
      if (!saved.contains(it.key()) || saved[it.key()] != it.value()) {
        throw std::runtime_error(
            "pretrain --resume: option " + it.key() + " = " + it.value().dump() +
            " differs from the saved state's " +
            (saved.contains(it.key()) ? saved[it.key()].dump() : std::string("(missing)")) + " (" +
            o.state_path + "); resume with the same options");
      }
    }
    load_train_state(o.state_path, &model, &optimizer);
    result.first_step = info.at("step").get<int64_t>();
    smoothed = info.at("smoothed_loss").get<double>();
    for (const nlohmann::json& v : info.at("validation")) {
      result.validation.push_back({v.at(0).get<int64_t>(), v.at(1).get<double>()});
    }
    if (log && std::filesystem::exists(log->path())) {
      const uintmax_t bytes = info.at("metrics_bytes").get<uintmax_t>();
      if (std::filesystem::file_size(log->path()) > bytes) {
        std::filesystem::resize_file(log->path(), bytes);
      }
    }
    if (info.value("threads", 0) != cpu_thread_count() && progress) {
      *progress << "pretrain: warning: the saved state was made with " << info.value("threads", 0)
                << " CPU threads, this run has " << cpu_thread_count()
                << "; the result is not guaranteed bit-identical" << std::endl;
    }
    if (bar) bar->set(result.first_step);
  }
  // Rank 0 alone writes the state (every rank holds the same weights and moments); the others
  // wait for it so that no rank runs ahead of a state that may still be incomplete. Under
  // ZeRO-1 no state is written: each rank holds only its block of the moments.
  auto save_state = [&](int64_t steps_done) {
    if (zero) return;
    nlohmann::json validation_so_far = nlohmann::json::array();
    for (const auto& [at, acc] : result.validation) validation_so_far.push_back({at, acc});
    const nlohmann::json info = {
        {"kind", "pretrain"},
        {"step", steps_done},
        {"options", state_options},
        {"smoothed_loss", smoothed},
        {"validation", validation_so_far},
        {"threads", cpu_thread_count()},
        {"metrics_bytes", log ? std::filesystem::file_size(log->path()) : uintmax_t{0}}};
    if (dp->is_main()) save_train_state(o.state_path, info, &model, &optimizer);
    dp->barrier();
  };
  for (int64_t step = result.first_step; step < o.steps; ++step) {
    std::vector<sft::Example> examples;
    for (int64_t i = shard.begin; i < shard.end; ++i) {  // this rank's share of the batch
      const uint64_t index = static_cast<uint64_t>((step * o.batch_size + i) % o.scenes);
      examples.push_back(sft::sample_example(o.seed, index, o.mix, o.trace));
    }
    SupervisedBatch batch = make_supervised_batch(model.config(), tokenizer, examples);
    const double lr = lr_at(LrSchedule::cosine, o.lr, step, o.steps, o.warmup, o.min_lr);
    const int64_t tokens =
        static_cast<int64_t>(dp->sum(static_cast<double>(batch.response_tokens)));
    optimizer.zero_grad();
    if (zero) zero->zero_grad();
    Tensor loss = supervised_loss(model, batch, tokens);
    loss.backward();
    double norm = 0;
    if (zero) {
      norm = zero->reduce_gradients();
      if (o.grad_clip <= 0) norm = 0;
    } else {
      dp->all_reduce_gradients(params);
      norm = o.grad_clip > 0 ? clip_grad_norm(params, o.grad_clip) : 0.0;
    }
    // Each rank's loss is its share of the global mean.
    PretrainStep record{step, dp->sum(loss.item()), lr, norm, tokens};
    // Stop before a NaN/Inf can reach the weights; the checkpoint of the last
    // validation (written atomically) stays the last good one.
    if (!std::isfinite(record.loss) || !std::isfinite(norm)) {
      throw std::runtime_error("pretrain: non-finite " +
                               std::string(std::isfinite(record.loss) ? "gradient norm" : "loss") +
                               " at step " + std::to_string(step) +
                               "; the last saved checkpoint is intact");
    }
    if (zero) {
      zero->step(o.grad_clip, lr);
    } else {
      optimizer.step(lr);
    }
    result.steps.push_back(record);
    smoothed = step == 0 ? record.loss : 0.95 * smoothed + 0.05 * record.loss;
    if (log) {
      log->write({{"phase", "pretrain"},
                  {"step", step},
                  {"loss", record.loss},
                  {"lr", lr},
                  {"grad_norm", norm},
                  {"tokens", record.tokens},
                  {"seconds", seconds_since(start)}});
    }
    const bool last = step + 1 == o.steps;
    if (!validation.empty() && ((step + 1) % o.eval_every == 0 || last)) {
      EvalOptions eval;
      eval.batch_size = o.eval_batch;
      if (o.trace == sft::TraceStyle::scene) eval.max_new_tokens = kSceneTraceMaxNewTokens;
      model.params().set_requires_grad(false);
      EvalResult r = evaluate_items(model, tokenizer, validation, eval, dp.get());
      model.params().set_requires_grad(true);
      result.validation.push_back({step + 1, r.report.overall.value()});
      if (bar) bar->set_field("val_acc", r.report.overall.value(), 3);
      if (o.on_validation && dp->is_main())
        o.on_validation(model, step + 1, r.report.overall.value());
      dp->barrier();
      if (log) {
        nlohmann::json line = eval_report_json(r);
        line["phase"] = "pretrain_validation";
        line["step"] = step + 1;
        log->write(line);
      }
    }
    if (bar) {
      bar->set_field("loss", smoothed, 4);
      bar->set(step + 1);
    }
    if (o.after_step) o.after_step(step + 1);
    if (!o.state_path.empty() && ((step + 1) % o.state_every == 0 || last)) save_state(step + 1);
  }
  if (bar) bar->finish();
  model.params().set_requires_grad(false);
  result.seconds = seconds_since(start);
  return result;
}

// ---- evaluation -------------------------------------------------------------------------

std::vector<std::string> answer_questions(const VLM& model, const Tokenizer& tokenizer,
                                          const std::vector<Tensor>& pixels,
                                          const std::vector<std::string>& questions,
                                          const EvalOptions& options,
                                          const std::function<void(int64_t, int64_t)>& on_batch) {
  return answer_questions(VLMPolicy(model), tokenizer, pixels, questions, options, on_batch);
}

std::vector<std::string> answer_questions(const PolicyModel& model, const Tokenizer& tokenizer,
                                          const std::vector<Tensor>& pixels,
                                          const std::vector<std::string>& questions,
                                          const EvalOptions& options,
                                          const std::function<void(int64_t, int64_t)>& on_batch) {
  if (pixels.size() != questions.size()) {
    throw std::runtime_error("answer_questions: " + std::to_string(pixels.size()) + " images for " +
                             std::to_string(questions.size()) + " questions");
  }
  if (options.batch_size <= 0) throw std::runtime_error("answer_questions: batch_size <= 0");
  NoGradGuard no_grad;
  static const PromptConfig prompts = shapeworld_prompts();
  const ChatFormat format = ChatFormat::for_tokenizer(tokenizer);
  const PromptConfig used = format.style == ChatStyle::shapeworld ? prompts : PromptConfig{};
  SamplingOptions sampling;
  sampling.greedy = options.votes <= 0;
  sampling.temperature = static_cast<float>(options.temperature);
  sampling.top_p = options.top_p;
  sampling.max_new_tokens = options.max_new_tokens;
  const int64_t samples = std::max<int64_t>(1, options.votes);
  sampling.stop_tokens = {stop_token_id(tokenizer)};
  const int64_t total = static_cast<int64_t>(questions.size());
  std::vector<std::string> replies;
  replies.reserve(questions.size());
  const std::vector<uint64_t> all_seeds =
      options.votes > 0 ? derive_seeds(options.seed, total * samples) : std::vector<uint64_t>{};
  for (int64_t begin = 0; begin < total; begin += options.batch_size) {
    const int64_t end = std::min(total, begin + options.batch_size);
    std::vector<PromptInput> batch;
    for (int64_t i = begin; i < end; ++i) {
      batch.push_back({build_reasoner_prompt(format, tokenizer, model.visual_tokens(pixels[i]),
                                             questions[i], options.mode, used),
                       pixels[i]});
    }
    // Sample j of question i is seeded by all_seeds[i * samples + j], so a reply does not
    // depend on the batch size.
    std::vector<uint64_t> seeds(batch.size() * samples, 0);
    if (options.votes > 0) {
      seeds.assign(all_seeds.begin() + begin * samples, all_seeds.begin() + end * samples);
    }
    std::vector<int64_t> rows;
    for (int64_t p = 0; p < static_cast<int64_t>(batch.size()); ++p)
      rows.insert(rows.end(), static_cast<size_t>(samples), p);
    std::vector<Generation> out = model.sample(batch, rows, sampling, seeds);
    // A reply ends at its first stop token: whatever a sampler appends after it is not
    // part of the reply.
    const int64_t stop = stop_token_id(tokenizer);
    std::vector<std::string> sampled;
    for (const Generation& g : out) {
      auto end_of_reply = std::find(g.tokens.begin(), g.tokens.end(), stop);
      if (end_of_reply != g.tokens.end()) ++end_of_reply;
      std::vector<int64_t> reply(g.tokens.begin(), end_of_reply);
      sampled.push_back(decode_response(tokenizer, reply));
    }
    if (options.votes <= 0) {
      for (std::string& reply : sampled) replies.push_back(std::move(reply));
    } else {
      for (size_t q = 0; q < batch.size(); ++q) {
        std::span<const std::string> group(sampled.data() + q * samples, samples);
        const VoteResult vote = majority_vote_responses(group);
        size_t pick = 0;  // no answer at all: the first reply (scored wrong)
        if (vote.has_label) {
          while (vote.bucket_of[pick] != vote.winner) ++pick;
        }
        replies.push_back(group[pick]);
      }
    }
    if (on_batch) on_batch(end, total);
  }
  return replies;
}

EvalResult evaluate_benchmark(const VLM& model, const Tokenizer& tokenizer, const Benchmark& bench,
                              const EvalOptions& options, std::ostream* progress) {
  return evaluate_benchmark(VLMPolicy(model), tokenizer, bench, options, progress);
}

EvalResult evaluate_benchmark(const PolicyModel& model, const Tokenizer& tokenizer,
                              const Benchmark& bench, const EvalOptions& options,
                              std::ostream* progress) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<Tensor> pixels;
  std::vector<std::string> questions;
  for (const BenchmarkQuestion& q : bench.questions) {
    if (!q.answer) {
      throw std::runtime_error(bench.dir + "/questions.jsonl:" + std::to_string(q.line) +
                               ": question " + q.id + " has no answer (unlabeled set)");
    }
    const std::string path = bench.image_path(q);
    Image image;
    try {
      image = load_image(path);
    } catch (const std::exception& e) {
      throw std::runtime_error(bench.dir + "/questions.jsonl:" + std::to_string(q.line) +
                               ": image " + q.image + ": " + e.what());
    }
    pixels.push_back(model.prepare_image(image));
    questions.push_back(q.question);
  }
  std::unique_ptr<ProgressBar> bar;
  if (progress) {
    ProgressOptions po;
    po.unit = "q";
    bar = std::make_unique<ProgressBar>("eval", static_cast<int64_t>(questions.size()), *progress,
                                        po);
  }
  EvalResult result;
  result.replies =
      answer_questions(model, tokenizer, pixels, questions, options, [&](int64_t done, int64_t) {
        if (bar) bar->set(done);
      });
  if (bar) bar->finish();
  result.report = score_replies(bench.questions, result.replies);
  result.blind = blind_baseline(bench.questions);
  result.seconds = seconds_since(start);
  return result;
}

EvalResult evaluate_items(const VLM& model, const Tokenizer& tokenizer,
                          const std::vector<world::BenchmarkItem>& items,
                          const EvalOptions& options, dist::DataParallel* dp) {
  const auto start = std::chrono::steady_clock::now();
  std::vector<Tensor> pixels;
  std::vector<std::string> questions;
  std::vector<BenchmarkQuestion> labeled;
  for (const world::BenchmarkItem& item : items) {
    pixels.push_back(scene_to_pixels(model.config(), item.scene));
    questions.push_back(item.question.text);
    BenchmarkQuestion q;
    q.id = item.id;
    q.question = item.question.text;
    q.answer = item.question.answer;
    q.type = world::type_name(item.question.type);
    labeled.push_back(q);
  }
  EvalResult result;
  if (dp && dp->distributed()) {
    // Each rank answers its shard; the replies travel as one JSON array per rank.
    const dist::Range r =
        dist::shard_range(static_cast<int64_t>(items.size()), dp->rank(), dp->size());
    std::vector<Tensor> my_pixels(pixels.begin() + r.begin, pixels.begin() + r.end);
    std::vector<std::string> my_questions(questions.begin() + r.begin, questions.begin() + r.end);
    std::vector<std::string> mine =
        my_questions.empty() ? std::vector<std::string>{}
                             : answer_questions(model, tokenizer, my_pixels, my_questions, options);
    for (const std::string& part : dp->all_gather_strings(
             nlohmann::json(mine).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))) {
      for (const auto& reply : nlohmann::json::parse(part)) result.replies.push_back(reply);
    }
  } else {
    result.replies = answer_questions(model, tokenizer, pixels, questions, options);
  }
  result.report = score_replies(labeled, result.replies);
  result.blind = blind_baseline(labeled);
  result.seconds = seconds_since(start);
  return result;
}

nlohmann::json eval_report_json(const EvalResult& result) {
  nlohmann::json j = nlohmann::json::parse(result.report.to_json());
  j["blind_baseline"] = nlohmann::json::parse(result.blind.to_json());
  j["seconds"] = result.seconds;
  return j;
}

std::string eval_table(const EvalResult& result) {
  std::ostringstream out;
  char line[160];
  std::snprintf(line, sizeof line, "%-14s %9s %8s %8s\n", "type", "questions", "model", "blind");
  out << line;
  auto row = [&](const std::string& name, const Accuracy& model, const Accuracy& blind) {
    std::snprintf(line, sizeof line, "%-14s %9lld %7.1f%% %7.1f%%\n", name.c_str(),
                  static_cast<long long>(model.total), 100.0 * model.value(),
                  100.0 * blind.value());
    out << line;
  };
  for (const auto& [type, acc] : result.report.per_type) {
    auto it = result.blind.per_type.find(type);
    row(type, acc, it == result.blind.per_type.end() ? Accuracy{} : it->second);
  }
  row("hallucination", result.report.hallucination, result.blind.hallucination);
  row("all", result.report.overall, result.blind.overall);
  std::snprintf(line, sizeof line, "replies without \\boxed{}: %lld of %lld\n",
                static_cast<long long>(result.report.no_answer),
                static_cast<long long>(result.report.overall.total));
  out << line;
  return out.str();
}

}  // namespace visplay::rl
