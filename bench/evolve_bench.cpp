// One whole VisPlay evolve iteration on the shipped ShapeWorld base
// (models/shapeworld-base, 1.1M parameters): Questioner GRPO, data building
// (questions, Reasoner votes, silver labels), Reasoner GRPO, checkpoints and
// metrics, exactly as `visplay demo` runs it, at a reduced size so that one
// iteration takes seconds: 2 GRPO steps per role of 16 prompts (G = 8),
// 32 candidate images, the demo's response lengths and sampling.
//
//   evolve_bench [google benchmark flags]    (use --benchmark_format=json)
//
// Each timed iteration starts from the same checkpoint in a fresh output
// folder (cleanup is outside the timing), so every repetition does the same
// work for a fixed thread count.
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "data/benchmark.h"
#include "rl/evolve.h"
#include "rl/roles.h"

namespace fs = std::filesystem;
using namespace visplay;

namespace {

constexpr int kQuestionerSteps = 2, kReasonerSteps = 2;
constexpr int64_t kCandidates = 32;
constexpr uint64_t kPoolSeed = 5;

// The demo's loop settings (tools/cli/demo.cpp) with fewer steps and images.
rl::VisPlayConfig bench_config() {
  rl::VisPlayConfig c;
  c.prompts = rl::shapeworld_prompts();
  c.iterations = 1;
  c.seed = 1234;
  c.questioner.steps = kQuestionerSteps;
  c.reasoner.steps = kReasonerSteps;
  c.questioner.rollout.max_new_tokens = 32;
  c.reasoner.rollout.max_new_tokens = 80;
  c.uncertainty.sampling.max_new_tokens = 12;
  c.data.candidate_images = static_cast<int>(kCandidates);
  c.data.question_sampling.max_new_tokens = 32;
  c.data.vote_sampling.max_new_tokens = 80;
  c.grpo.prompts_per_step = 16;
  c.grpo.prompts_per_update = 16;
  c.grpo.micro_batch_size = 32;
  c.grpo.lr = 1e-5;
  c.validate();
  return c;
}

fs::path base_model_dir() {
  const fs::path dir = fs::path(VISPLAY_SOURCE_DIR) / "models" / "shapeworld-base";
  if (!fs::exists(dir / "model.safetensors") || !fs::exists(dir / "tokenizer.json"))
    throw std::runtime_error("evolve_bench: " + dir.string() +
                             " lacks model.safetensors or tokenizer.json");
  return dir;
}

void BM_evolve_iteration(benchmark::State& state) {
  const fs::path root =
      fs::temp_directory_path() / ("visplay_evolve_bench_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root);
  generate_pool((root / "images").string(), kPoolSeed, kCandidates);
  rl::EvolveOptions o;
  o.config = bench_config();
  o.model_dir = base_model_dir().string();
  o.images_dir = (root / "images").string();
  int64_t runs = 0;
  for (auto _ : state) {
    state.PauseTiming();
    o.out_dir = (root / ("out-" + std::to_string(runs++))).string();
    fs::remove_all(o.out_dir);
    state.ResumeTiming();
    rl::EvolveResult r = rl::run_evolve(o);
    if (r.last_iteration != 1) state.SkipWithError("the iteration did not complete");
    state.PauseTiming();
    fs::remove_all(o.out_dir);
    state.ResumeTiming();
  }
  fs::remove_all(root);
  state.counters["questioner_steps"] = kQuestionerSteps;
  state.counters["reasoner_steps"] = kReasonerSteps;
  state.counters["candidate_images"] = static_cast<double>(kCandidates);
}
BENCHMARK(BM_evolve_iteration)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->Iterations(1);

}  // namespace

BENCHMARK_MAIN();
