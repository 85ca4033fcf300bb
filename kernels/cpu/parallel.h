// When a CPU kernel's loop is worth spreading over threads. Waking an OpenMP
// team costs microseconds (much more on a loaded machine, where the other
// thread may wait for a core: every fork and join then costs a scheduler
// slice), so loops over fewer elements than this run on the calling thread.
// At 2^15 every norm, residual add and AdamW parameter of the demo model
// (~80-100 K elements) opened a region; at 2^17 they run on one thread and
// only the MLP-wide ops split: the 2-thread training step used ~7% less CPU
// time, wall time level or slightly better (bench/results/2026-12-07-train-step-3.md).
// Results do not depend on it: every parallel loop writes disjoint outputs.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {
inline constexpr int64_t kParallelMinElements = 1 << 17;
// The packed GEMM splits its tiles over threads above this many multiply-adds.
inline constexpr int64_t kGemmParallelMinMultiplyAdds = int64_t{1} << 21;
}  // namespace visplay::kernels::cpu
