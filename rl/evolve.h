// The VisPlay self-evolution loop. Both roles start from one checkpoint; each iteration K:
//   1. Questioner GRPO for questioner.steps steps against the frozen Reasoner;
//   2. data building: the new Questioner asks one question per candidate image, the frozen
//      Reasoner votes, the majority is the silver label, the confidence band filters;
//   3. Reasoner GRPO for reasoner.steps steps on the kept questions (skipped, with the reason
//      logged, when the kept share is below reasoner.min_kept_fraction).
// Output folder:
//   config.json             the effective configuration
//   metrics.jsonl           one record per step / phase / iteration ("event" says which)
//   iter-K/questioner/      checkpoint (model.safetensors, config.json, tokenizer.json; for a
//                           Qwen2.5-VL start, the Hugging Face layout in f32 with the tokenizer
//                           and processor files), written when the questioner phase ends
//   iter-K/reasoner/        checkpoint
//   iter-K/silver.jsonl     the candidate questions, their votes, labels, c, kept
//   iter-K/summary.json     written last: marks iteration K complete
//   train_state.safetensors the crash-safe training state (rl/train_state.h): the loop position
//                           (iteration, phase, step, data position), the trained role's
//                           weights and AdamW state, RNG stream counters, the silver set of the
//                           current iteration; written atomically every config.checkpoint_every
//                           steps (or silver chunks) and at each phase end. --resume continues
//                           from it bit-exactly (docs/reliability.md).
// When the images folder has a ShapeWorld scenes.jsonl, oracle diagnostics are logged per
// iteration (silver-label accuracy, question validity, Reasoner accuracy, self-consistency
// margin); they never feed training.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rl/config.h"
#include "runtime/dist/data_parallel.h"

namespace visplay::rl {

struct EvolveOptions {
  VisPlayConfig config;
  // Starting checkpoint for both roles (with tokenizer.json): a visplay checkpoint or a Hugging
  // Face Qwen2.5-VL directory (model/policy.h's load_policy decides by config.json).
  std::string model_dir;
  std::string
      images_dir;  // PNG/JPEG images (recursively), or a ShapeWorld folder with scenes.jsonl
  std::string out_dir;
  int iterations = -1;               // iterations to reach in total; -1 = config.iterations
  bool resume = false;               // continue from the training state (or last iteration)
  std::ostream* console = nullptr;   // one line per step and phase; nullptr = silent
  std::ostream* progress = nullptr;  // progress bars with ETA; nullptr = none
  // Called after every GRPO step (phase "questioner" / "reasoner", step = steps done) and every
  // silver-label chunk (phase "silver", step = candidates done), before the state is saved.
  // Tests use it to kill the process at a chosen point; nullptr = none.
  std::function<void(int iteration, const std::string& phase, int64_t step)> after_step;
  // Data parallel over its ranks (null: one process). Every rank runs the loop on the same
  // folders: each GRPO step's prompts are shared out over the ranks (each rank generates and
  // scores its own; the Reasoner's votes for a question stay on the rank that asked it), the
  // candidate images of the data phase too, and the silver set is gathered so every rank
  // holds all of it (gathered at every training-state save, too). Rank 0 alone prints, logs
  // and writes files (checkpoints, the training state); the others wait at a barrier after
  // each. Resume: every rank reads the state, so out_dir must be on a shared file system.
  // Under ZeRO-1 (dp->zero1()) no state is saved inside a GRPO phase (the AdamW moments are
  // sharded), and resuming a mid-GRPO state with it is an error.
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
// checkpoint or tokenizer, no images, out_dir already holding a run without resume, a resumed
// run whose configuration differs from the saved state's).
EvolveResult run_evolve(const EvolveOptions& options);

// The last K for which out_dir/iter-K/summary.json exists (0 when none).
int last_complete_iteration(const std::string& out_dir);

// out_dir/train_state.safetensors.
std::string evolve_state_path(const std::string& out_dir);

}  // namespace visplay::rl
