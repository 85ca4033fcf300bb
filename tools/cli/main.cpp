// The `visplay` binary: every subcommand lives in its own file in tools/cli/.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <vector>

#include "tools/cli/command.h"

namespace visplay::cli {

static std::vector<CommandSetup>& commands() {
  static std::vector<CommandSetup> list;
  return list;
}

int register_command(CommandSetup setup) {
  commands().push_back(setup);
  return 0;
}

}  // namespace visplay::cli

int main(int argc, char** argv) {
  // How idle OpenMP threads wait. GOMP's default spins for ~3 ms before it
  // sleeps, which slowed small ops 30-100x on a busy machine. Sleeping at once
  // (passive) costs each parallel region a wake-up instead, 60-100 us on a
  // small VM where an idle vCPU halts: there the demo ran no faster on 2
  // threads than on 1. A spin of 1,000 rounds (~10 us) before sleeping covers
  // the short gaps between regions: the demo 1.13-1.45x faster on an idle VM,
  // the same time as passive with another process busy (10,000 rounds was
  // 1.6x slower there; bench/results/2026-12-07-wait-policy.md). libgomp reads
  // these when it loads, before main, so when the user has set neither, set
  // them and start again once.
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv("GOMP_SPINCOUNT", "1000", 1);
    execv("/proc/self/exe", argv);  // returns only on failure: then carry on as we are
  }
  CLI::App app{"visplay: self-evolving vision-language models (VisPlay) in C++/CUDA"};
  app.require_subcommand(1);
  for (auto setup : visplay::cli::commands()) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "visplay: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
