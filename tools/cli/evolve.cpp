// `visplay evolve`: the VisPlay self-evolution loop (rl/evolve.h) from a starting checkpoint on
// a folder of unlabeled images. One console line per GRPO step, progress bars with ETA on
// stderr, metrics in OUT/metrics.jsonl, checkpoints per role per iteration in OUT/iter-K/.
#include "rl/evolve.h"

#include <iostream>
#include <memory>
#include <string>

#include "rl/config.h"
#include "tools/cli/command.h"

namespace {

struct EvolveCliOptions {
  std::string config;
  std::string model;
  std::string images;
  std::string out;
  int iterations = -1;
  bool resume = false;
  bool quiet = false;
};

void setup_evolve(CLI::App& app) {
  auto opts = std::make_shared<EvolveCliOptions>();
  CLI::App* cmd =
      app.add_subcommand("evolve",
                         "Self-evolve a VLM on unlabeled images: Questioner GRPO, silver labels, "
                         "Reasoner GRPO, per iteration");
  cmd->add_option("--config", opts->config,
                  "VisPlay config JSON (any subset of keys; the rest are the paper's defaults, "
                  "see docs/evolve.md)");
  cmd->add_option("--model", opts->model,
                  "Starting checkpoint folder for both roles (model.safetensors, config.json, "
                  "tokenizer.json); not needed with --resume after an iteration");
  cmd->add_option("--images", opts->images,
                  "Folder of unlabeled images, or a ShapeWorld folder with scenes.jsonl (enables "
                  "oracle diagnostics)")
      ->required();
  cmd->add_option("--out", opts->out, "Output folder (created)")->required();
  cmd->add_option("--iterations", opts->iterations,
                  "Total iterations to reach (default: the config's `iterations`)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_flag("--resume", opts->resume,
                "Continue after the last complete iteration found in --out");
  cmd->add_flag("--quiet", opts->quiet, "No per-step lines and no progress bars");
  cmd->callback([opts] {
    visplay::rl::EvolveOptions o;
    o.config = opts->config.empty() ? visplay::rl::VisPlayConfig()
                                    : visplay::rl::VisPlayConfig::load(opts->config);
    o.model_dir = opts->model;
    o.images_dir = opts->images;
    o.out_dir = opts->out;
    o.iterations = opts->iterations;
    o.resume = opts->resume;
    if (!opts->quiet) {
      o.console = &std::cout;
      o.progress = &std::cerr;
    }
    visplay::rl::EvolveResult r = visplay::rl::run_evolve(o);
    std::cout << "evolve: iterations " << r.first_iteration << ".." << r.last_iteration
              << " complete in " << opts->out << std::endl;
  });
}

}  // namespace

VISPLAY_COMMAND(setup_evolve);
