// `visplay info`: what this build can do (backends, threads, versions).
#include <omp.h>

#include <cstdio>

#include "runtime/allocator.h"
#include "tools/cli/command.h"

static void setup_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print the build's backends and settings");
  cmd->callback([] {
    std::printf("visplay 0.1.0\n");
    std::printf("  cpu backend : OpenMP, %d threads; OpenBLAS GEMM\n", omp_get_max_threads());
#ifdef VISPLAY_HAVE_CUDA
    std::printf("  cuda backend: built\n");
#else
    std::printf("  cuda backend: not built into this binary\n");
#endif
  });
}
VISPLAY_COMMAND(setup_info);
