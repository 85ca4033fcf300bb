// When a CPU kernel's loop is worth spreading over threads. Waking an OpenMP
// team costs microseconds (much more on a loaded machine), so loops over fewer
// elements than this run on the calling thread. Results do not depend on it:
// every parallel loop writes disjoint outputs.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {
inline constexpr int64_t kParallelMinElements = 1 << 15;
}  // namespace visplay::kernels::cpu
