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
// Its few-rows form (M <= 96 rows times a weight: decoding) only above this.
// Those products take ~50 us at the demo model's widths, less than waking a
// sleeping thread costs on a small VM (60-100 us): split at 2^21, they made
// 2-thread decoding 1.2-1.4x slower (bench/results/2026-12-07-wait-policy.md).
inline constexpr int64_t kGemmFewRowsParallelMinMultiplyAdds = int64_t{1} << 23;
}  // namespace visplay::kernels::cpu
