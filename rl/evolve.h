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
#include "runtime/dist/data_parallel.h"

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
  // Data parallel over its ranks (null: one process). Every rank runs the loop on the same
  // folders: each GRPO step's prompts are shared out over the ranks (each rank generates and
  // scores its own; the Reasoner's votes for a question stay on the rank that asked it), the
  // candidate images of the data phase too, and the silver set is gathered so every rank
  // holds all of it. Rank 0 alone prints, logs and writes files; the others wait at a
  // barrier after each iteration's checkpoints. Resume needs out_dir on a shared file system.
  std::shared_ptr<dist::DataParallel> data_parallel;
};

struct EvolveResult {
  int first_iteration = 1;                // the first iteration this run performed
  int last_iteration = 0;                 // the last complete iteration (0: none)
  std::vector<nlohmann::json> summaries;  // one per iteration performed (iter-K/summary.json)
};

// The defaults for the tiny ShapeWorld model on a CPU: ShapeWorld prompts, short responses
// (questions ~12 tokens, direct answers ~4, reasoning traces a few dozen), 16 images per GRPO
// step, 512 candidate images, a learning rate for a ~1M-parameter model. The method's numbers
// (G = 8, m = 10 / 9, the band, the clips, the KL) stay the paper's.
VisPlayConfig shapeworld_evolve_config();

// Runs the loop. Throws std::runtime_error naming the file or option on bad input (missing
// checkpoint or tokenizer, no images, out_dir already holding iterations without resume).
EvolveResult run_evolve(const EvolveOptions& options);

// The last K for which out_dir/iter-K/summary.json exists (0 when none).
int last_complete_iteration(const std::string& out_dir);

}  // namespace visplay::rl
