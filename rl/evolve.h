// The VisPlay self-evolution loop. Both roles start from one checkpoint; each iteration K:
//   1. Questioner GRPO for questioner.steps steps against the frozen Reasoner;
//   2. data building: the new Questioner asks one question per candidate image, the frozen
//      Reasoner votes, the majority is the silver label, the confidence band filters;
//   3. Reasoner GRPO for reasoner.steps steps on the kept questions (skipped, with the reason
//      logged, when the kept share is below reasoner.min_kept_fraction).
// Output folder:
//   config.json             the effective configuration
//   metrics.jsonl           one record per step / phase / iteration ("event" says which)
//   iter-K/questioner/      checkpoint (model.safetensors, config.json, tokenizer.json)
//   iter-K/reasoner/        checkpoint
//   iter-K/silver.jsonl     the candidate questions, their votes, labels, c, kept
//   iter-K/summary.json     written last: marks iteration K complete (resume starts after it)
// When the images folder has a ShapeWorld scenes.jsonl, oracle diagnostics are logged per
// iteration (silver-label accuracy, question validity, Reasoner accuracy, self-consistency
// margin); they never feed training.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rl/config.h"

namespace visplay::rl {

struct EvolveOptions {
  VisPlayConfig config;
  std::string model_dir;   // starting checkpoint for both roles (with tokenizer.json)
  std::string images_dir;  // images (recursively), or a ShapeWorld folder with scenes.jsonl
  std::string out_dir;
  int iterations = -1;               // iterations to reach in total; -1 = config.iterations
  bool resume = false;               // continue after the last complete iteration in out_dir
  std::ostream* console = nullptr;   // one line per step and phase; nullptr = silent
  std::ostream* progress = nullptr;  // progress bars with ETA; nullptr = none
};

struct EvolveResult {
  int first_iteration = 1;                // the first iteration this run performed
  int last_iteration = 0;                 // the last complete iteration (0: none)
  std::vector<nlohmann::json> summaries;  // one per iteration performed (iter-K/summary.json)
};

// Runs the loop. Throws std::runtime_error naming the file or option on bad input (missing
// checkpoint or tokenizer, no images, out_dir already holding iterations without resume).
EvolveResult run_evolve(const EvolveOptions& options);

// The last K for which out_dir/iter-K/summary.json exists (0 when none).
int last_complete_iteration(const std::string& out_dir);

}  // namespace visplay::rl
