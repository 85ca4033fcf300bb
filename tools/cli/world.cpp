// `visplay world`: writes a ShapeWorld set. Labeled: a benchmark folder drawn by the
// spec's recipe (questions.jsonl + images/ + scenes.jsonl). Unlabeled: images only
// (images/ + scenes.jsonl as the listing; the scenes are for the oracle, not training).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "data/benchmark.h"
#include "tools/cli/command.h"

namespace {

struct WorldOptions {
  std::string out;
  int64_t scenes = 1000;
  uint64_t seed = 0;
  bool labeled = false;
  bool unlabeled = false;
};

std::chrono::steady_clock::time_point g_start;

// Prints "world: k/N (p%)" on stderr for sets of 1,000 or more: at most twice a
// second (so logs stay short), and always at the end.
void print_progress(int64_t done, int64_t total) {
  static double last_print = -1.0;
  if (total < 1000) return;
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
  if (done != total && last_print >= 0 && seconds - last_print < 0.5) return;
  last_print = seconds;
  std::fprintf(stderr, "world: %lld/%lld (%3.0f%%) %.1fs\n", static_cast<long long>(done),
               static_cast<long long>(total), 100.0 * done / total, seconds);
  std::fflush(stderr);
}

void setup_world(CLI::App& app) {
  auto opts = std::make_shared<WorldOptions>();
  CLI::App* cmd = app.add_subcommand(
      "world", "Generate a ShapeWorld set: a labeled benchmark folder or unlabeled images");
  cmd->add_option("--out", opts->out, "Output folder (created)")->required();
  cmd->add_option("--scenes", opts->scenes, "Number of images (one question each when labeled)")
      ->check(CLI::Range(int64_t{1}, int64_t{100000000}));
  cmd->add_option("--seed", opts->seed, "Seed (same seed, same set, bit for bit)");
  auto* labeled = cmd->add_flag("--labeled", opts->labeled,
                                "Benchmark folder with questions and answers (default)");
  auto* unlabeled = cmd->add_flag("--unlabeled", opts->unlabeled, "Images only");
  labeled->excludes(unlabeled);
  cmd->callback([opts]() {
    g_start = std::chrono::steady_clock::now();
    if (opts->unlabeled) {
      visplay::generate_pool(opts->out, opts->seed, opts->scenes, print_progress);
      std::printf("wrote %lld unlabeled images to %s/images (listing: %s/scenes.jsonl)\n",
                  static_cast<long long>(opts->scenes), opts->out.c_str(), opts->out.c_str());
    } else {
      visplay::generate_benchmark(opts->out, opts->seed, opts->scenes, print_progress);
      std::printf("wrote a benchmark of %lld questions to %s (questions.jsonl, images/)\n",
                  static_cast<long long>(opts->scenes), opts->out.c_str());
    }
  });
}

}  // namespace

VISPLAY_COMMAND(setup_world);
