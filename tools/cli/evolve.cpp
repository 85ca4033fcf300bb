// `visplay evolve`: the VisPlay self-evolution loop (rl/evolve.h) from a starting checkpoint on
// a folder of unlabeled images. One console line per GRPO step, progress bars with ETA on
// stderr, metrics in OUT/metrics.jsonl, checkpoints per role per iteration in OUT/iter-K/, the
// crash-safe training state in OUT/train_state.safetensors (--resume continues from it).
#include "rl/evolve.h"

#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include "model/tokenizer.h"
#include "rl/config.h"
#include "runtime/dist/data_parallel.h"
#include "tools/cli/command.h"

namespace {

struct EvolveCliOptions {
  std::string config;
  std::string preset = "auto";
  std::string model;
  std::string images;
  std::string out;
  int iterations = -1;
  int checkpoint_every = -1;  // -1: the config's checkpoint_every
  bool resume = false;
  bool quiet = false;
  bool zero1 = false;
};

// The preset's values, then every key of the config file on top (a JSON merge patch), then
// validation; errors name the file. With --resume and no --config: OUT/config.json.
visplay::rl::VisPlayConfig load_config(const EvolveCliOptions& opts) {
  // A resumed run without --config continues with the configuration the run saved.
  const std::filesystem::path saved = std::filesystem::path(opts.out) / "config.json";
  if (opts.resume && opts.config.empty() && std::filesystem::exists(saved)) {
    return visplay::rl::VisPlayConfig::load(saved.string());
  }
  std::string preset = opts.preset;
  if (preset == "auto") {
    preset = "paper";
    const std::filesystem::path tok = std::filesystem::path(opts.model) / "tokenizer.json";
    if (!opts.model.empty() && std::filesystem::exists(tok) &&
        visplay::load_tokenizer(tok.string())->kind() == "word_level") {
      preset = "shapeworld";
    }
  }
  visplay::rl::VisPlayConfig base = preset == "shapeworld" ? visplay::rl::shapeworld_evolve_config()
                                                           : visplay::rl::VisPlayConfig();
  if (opts.config.empty()) return base;
  std::ifstream in(opts.config);
  if (!in) throw std::runtime_error(opts.config + ": cannot open the config file");
  nlohmann::json file;
  try {
    file = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error(opts.config + ": invalid JSON: " + e.what());
  }
  if (!file.is_object()) throw std::runtime_error(opts.config + ": not a JSON object");
  nlohmann::json merged = base.to_json();
  merged.merge_patch(file);
  try {
    return visplay::rl::VisPlayConfig::from_json(merged);
  } catch (const std::exception& e) {
    throw std::runtime_error(opts.config + ": " + e.what());
  }
}

void setup_evolve(CLI::App& app) {
  auto opts = std::make_shared<EvolveCliOptions>();
  CLI::App* cmd =
      app.add_subcommand("evolve",
                         "Self-evolve a VLM on unlabeled images: Questioner GRPO, silver labels, "
                         "Reasoner GRPO, per iteration");
  cmd->add_option("--config", opts->config,
                  "VisPlay config JSON (any subset of keys; the rest are the paper's defaults, "
                  "see docs/evolve.md)");
  cmd->add_option("--preset", opts->preset,
                  "Defaults under the config file: paper (the paper's sizes), shapeworld (the "
                  "tiny ShapeWorld model on a CPU), auto (shapeworld when --model has a "
                  "word-level tokenizer)")
      ->check(CLI::IsMember({"auto", "paper", "shapeworld"}));
  cmd->add_option("--model", opts->model,
                  "Starting checkpoint folder for both roles: a visplay checkpoint "
                  "(model.safetensors, config.json, tokenizer.json) or a Hugging Face Qwen2.5-VL "
                  "directory (config.json with model_type qwen2_5_vl, safetensors shards, "
                  "tokenizer.json, preprocessor_config.json; roles are saved in the same "
                  "layout); not needed with --resume after an iteration");
  cmd->add_option("--images", opts->images,
                  "Folder of unlabeled PNG/JPEG images (searched recursively), or a ShapeWorld "
                  "folder with scenes.jsonl (enables oracle diagnostics)")
      ->required();
  cmd->add_option("--out", opts->out, "Output folder (created)")->required();
  cmd->add_option("--iterations", opts->iterations,
                  "Total iterations to reach (default: the config's `iterations`)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--checkpoint-every", opts->checkpoint_every,
                  "Save the crash-safe training state every N GRPO steps / silver chunks (and "
                  "at each phase end); default: the config's checkpoint_every (5)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_flag("--resume", opts->resume,
                "Continue a killed or finished run in --out from its saved training state "
                "(bit-exact on the same machine and thread count; docs/reliability.md)");
  cmd->add_flag("--quiet", opts->quiet, "No per-step lines and no progress bars");
  cmd->add_flag("--zero1", opts->zero1,
                "ZeRO-1: shard the AdamW moments over the ranks (under mpirun)");
  cmd->callback([opts] {
    visplay::rl::EvolveOptions o;
    o.config = load_config(*opts);
    if (opts->checkpoint_every > 0) o.config.checkpoint_every = opts->checkpoint_every;
    o.model_dir = opts->model;
    o.images_dir = opts->images;
    o.out_dir = opts->out;
    o.iterations = opts->iterations;
    o.resume = opts->resume;
    // Under mpirun: data parallel over every rank, one GPU per rank (docs/distributed.md).
    o.data_parallel = visplay::dist::world_data_parallel();
    visplay::dist::select_local_gpu(o.data_parallel->cpu_group());
    o.data_parallel->set_zero1(opts->zero1);
    if (!opts->quiet) {
      o.console = &std::cout;
      o.progress = &std::cerr;
    }
    visplay::rl::EvolveResult r = visplay::rl::run_evolve(o);
    if (!o.data_parallel->is_main()) return;
    std::cout << "evolve: iterations " << r.first_iteration << ".." << r.last_iteration
              << " complete in " << opts->out << std::endl;
  });
}

}  // namespace

VISPLAY_COMMAND(setup_evolve);
