// `visplay pretrain`: the supervised warm start of the ShapeWorld base model (both
// roles, targets from the oracle; docs/warmstart.md). Writes a checkpoint folder
// (model.safetensors, config.json, tokenizer.json) that load_checkpoint reads, plus
// metrics.jsonl and pretrain.json (the options and the final validation accuracy).
#include "rl/pretrain.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "model/checkpoint.h"
#include "model/file_util.h"
#include "model/shapeworld_vocab.h"
#include "runtime/dist/data_parallel.h"
#include "tools/cli/command.h"

namespace {

struct PretrainCliOptions {
  std::string out;
  std::string size = "base";
  std::string init;  // continue from this checkpoint instead of fresh weights
  bool resume = false;
  bool zero1 = false;
  visplay::rl::PretrainOptions train;
};

void run_pretrain(const PretrainCliOptions& o) {
  using namespace visplay;
  // Under mpirun every rank trains on its share of each batch; rank 0 alone prints, logs and
  // writes the checkpoint and the training state (docs/distributed.md).
  std::shared_ptr<dist::DataParallel> dp = dist::world_data_parallel();
  dist::select_local_gpu(dp->cpu_group());
  dp->set_zero1(o.zero1);
  const bool main_rank = dp->is_main();
  if (main_rank) std::filesystem::create_directories(o.out);
  // The crash-safe training state; a run that left one is continued only on request. Every
  // rank reads it on --resume (OUT on a shared file system), rank 0 alone writes it.
  const std::string state_path = o.out + "/train_state.safetensors";
  // Rank 0's view decides (a rank that cannot see the file then fails loading it, by name).
  const bool has_state = dp->max(main_rank && std::filesystem::exists(state_path) ? 1.0 : 0.0) > 0;
  const bool resuming = o.resume && has_state;
  if (!o.resume && has_state) {
    throw std::runtime_error(o.out + " holds the training state of an earlier run (" + state_path +
                             "); pass --resume to continue it, or choose another folder");
  }
  if (resuming && o.zero1) {
    throw std::runtime_error(
        "pretrain --resume --zero1: ZeRO-1 shards the AdamW moments over the "
        "ranks and neither saves nor loads a training state (" +
        state_path + "); resume without --zero1 (docs/reliability.md)");
  }
  if (main_rank) remove_stale_temporaries(o.out);
  auto tokenizer = make_shapeworld_tokenizer();
  VLM model = o.init.empty() ? VLM(rl::shapeworld_model_config(*tokenizer, o.size))
                             : load_checkpoint(o.init);
  if (o.init.empty()) model.init_weights(o.train.seed);
  if (model.config().decoder.vocab_size != tokenizer->vocab_size()) {
    throw std::runtime_error(
        o.init + "/config.json: vocab_size " + std::to_string(model.config().decoder.vocab_size) +
        " is not the ShapeWorld vocabulary's " + std::to_string(tokenizer->vocab_size()));
  }
  if (main_rank) {
    std::printf("pretrain: %s model, %lld parameters, %lld steps x %lld examples, seed %llu",
                o.size.c_str(), static_cast<long long>(model.params().numel()),
                static_cast<long long>(o.train.steps), static_cast<long long>(o.train.batch_size),
                static_cast<unsigned long long>(o.train.seed));
    if (dp->distributed())
      std::printf(", %d ranks (%s)", dp->size(), dp->cpu_group().backend().c_str());
    std::printf("\n");
    if (resuming) std::printf("pretrain: resuming from %s\n", state_path.c_str());
    std::fflush(stdout);
  }
  std::unique_ptr<MetricsLog> log;
  if (main_rank) {
    log = std::make_unique<MetricsLog>(o.out + "/metrics.jsonl", /*truncate=*/!resuming);
    write_shapeworld_tokenizer_json(o.out + "/tokenizer.json");
  }
  // The checkpoint so far is saved at every validation, so a long run that is stopped
  // early still leaves a loadable model.
  rl::PretrainOptions train = o.train;
  train.state_path = state_path;
  train.resume = resuming;
  train.data_parallel = dp;
  train.on_validation = [&](const VLM& m, int64_t, double) { save_checkpoint(o.out, m); };
  rl::PretrainResult result =
      rl::pretrain(model, *tokenizer, train, log.get(), main_rank ? &std::cerr : nullptr);
  if (!main_rank) {
    dp->barrier();  // rank 0 writes the checkpoint
    return;
  }
  save_checkpoint(o.out, model);
  nlohmann::json summary = {
      {"command", "visplay pretrain"},
      {"size", o.size},
      {"init", o.init.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.init)},
      {"resumed_from_step", result.first_step},
      {"parameters", model.params().numel()},
      {"steps", o.train.steps},
      {"batch_size", o.train.batch_size},
      {"scenes", o.train.scenes},
      {"seed", o.train.seed},
      {"lr", o.train.lr},
      {"min_lr", o.train.min_lr},
      {"warmup", o.train.warmup},
      {"weight_decay", o.train.weight_decay},
      {"mix",
       {{"questioner", o.train.mix.questioner},
        {"reasoner_trace", o.train.mix.reasoner_trace},
        {"reasoner_direct", o.train.mix.reasoner_direct}}},
      {"trace", visplay::sft::trace_style_name(o.train.trace)},
      {"batch", o.train.batch_size},
      {"final_loss", result.steps.empty() ? 0.0 : result.steps.back().loss},
      {"seconds", result.seconds},
  };
  nlohmann::json validation = nlohmann::json::array();
  for (const auto& [step, acc] : result.validation)
    validation.push_back({{"step", step}, {"accuracy", acc}});
  summary["validation"] = validation;
  std::ofstream(o.out + "/pretrain.json") << summary.dump(2) << "\n";
  std::printf("pretrain: done in %.0f s, final loss %.4f", result.seconds,
              result.steps.empty() ? 0.0 : result.steps.back().loss);
  if (!result.validation.empty()) {
    std::printf(", validation accuracy %.1f%% (%lld greedy questions)",
                100.0 * result.validation.back().second,
                static_cast<long long>(o.train.eval_questions));
  }
  std::printf("\ncheckpoint: %s (model.safetensors, config.json, tokenizer.json)\n", o.out.c_str());
  std::fflush(stdout);
  dp->barrier();
}

void setup_pretrain(CLI::App& app) {
  auto opts = std::make_shared<PretrainCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "pretrain", "Supervised warm start of the ShapeWorld base model (questioner + reasoner)");
  cmd->add_option("--out", opts->out, "Checkpoint folder (created)")->required();
  cmd->add_option("--scenes", opts->train.scenes, "Distinct training examples (cycled)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--steps", opts->train.steps, "Optimizer steps")->check(CLI::PositiveNumber);
  cmd->add_option("--seed", opts->train.seed, "Seed of the data and the initial weights");
  cmd->add_option("--batch", opts->train.batch_size, "Examples per step")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lr", opts->train.lr, "Peak learning rate (cosine decay after warmup)");
  cmd->add_option("--min-lr", opts->train.min_lr, "Final learning rate");
  cmd->add_option("--warmup", opts->train.warmup, "Warmup steps");
  cmd->add_option("--weight-decay", opts->train.weight_decay, "AdamW weight decay");
  cmd->add_option("--questioner-share", opts->train.mix.questioner,
                  "Share of questioner examples (default 0.2)");
  cmd->add_option("--trace-share", opts->train.mix.reasoner_trace,
                  "Share of step-by-step reasoner examples (default 0.6)");
  cmd->add_option("--direct-share", opts->train.mix.reasoner_direct,
                  "Share of direct-answer reasoner examples (default 0.2)");
  cmd->add_option_function<std::string>(
         "--trace",
         [opts](const std::string& name) {
           opts->train.trace = visplay::sft::parse_trace_style(name);
         },
         "What step-by-step targets list: groups (the question's groups, default) or scene "
         "(every object, then the groups)")
      ->check(CLI::IsMember({"groups", "scene"}));
  cmd->add_option("--eval-every", opts->train.eval_every,
                  "Validation every K steps (greedy, in-memory benchmark); 0 = only none");
  cmd->add_option("--eval-questions", opts->train.eval_questions, "Validation questions");
  cmd->add_option("--init", opts->init,
                  "Continue from this checkpoint (a new warmup + cosine cycle) instead of "
                  "fresh weights");
  cmd->add_option("--state-every", opts->train.state_every,
                  "Save the crash-safe training state (OUT/train_state.safetensors: weights, "
                  "AdamW moments, step) every N steps and at the end")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--resume", opts->resume,
                "Continue the run in --out from its training state, bit-exactly (same options "
                "and thread count; docs/reliability.md)");
  cmd->add_flag("--zero1", opts->zero1,
                "ZeRO-1: shard the AdamW moments over the ranks (under mpirun)");
  cmd->add_option("--size", opts->size,
                  "Model size preset: base (16 visual tokens), base-64 (no 2x2 merger: 64 "
                  "visual tokens), tiny (tests)")
      ->check(CLI::IsMember({"base", "base-64", "tiny"}));
  cmd->callback([opts] { run_pretrain(*opts); });
}

}  // namespace

VISPLAY_COMMAND(setup_pretrain);
