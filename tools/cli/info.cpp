// `visplay info`: what this build can do (backends, threads, versions).
#include <omp.h>

#include <cstdio>
#include <cstdlib>

#include "runtime/cuda_device.h"
#include "runtime/dist/process_group.h"
#include "tools/cli/command.h"

static void setup_info(CLI::App& app) {
  auto* cmd = app.add_subcommand("info", "Print the build's backends and settings");
  cmd->callback([] {
    std::printf("visplay 0.1.0\n");
    std::printf("  cpu backend : OpenMP, %d threads; OpenBLAS GEMM\n", omp_get_max_threads());
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    const char* spin = std::getenv("GOMP_SPINCOUNT");
    std::printf("  idle threads: OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s\n",
                policy ? policy : "(unset)", spin ? spin : "(unset)");
#ifdef VISPLAY_HAVE_CUDA
    std::printf("  cuda backend: built, %d GPU(s) visible\n", visplay::cuda_device_count());
#else
    std::printf("  cuda backend: not built into this binary\n");
#endif
    std::printf("  sim backend : built (CUDA kernels on the SIMT host emulator)\n");
    std::printf("  MPI         : %s\n", visplay::dist::mpi_available()
                                            ? "built (run under mpirun for data parallel)"
                                            : "not built");
  });
}
VISPLAY_COMMAND(setup_info);
