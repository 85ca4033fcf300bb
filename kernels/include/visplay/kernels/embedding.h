// Embedding lookup backward, deterministic (no float atomics).
// Declared for both builds of kernels/cuda/embedding.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_EMBEDDING_H_
#define VISPLAY_KERNELS_EMBEDDING_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/embedding.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/embedding.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

// dtable[vocab, dim] += sum over tokens t with ids[t] == v of dy[t, :]. Each vocabulary
// row is summed by one block in token order, so the result is bit-reproducible. ids
// outside [0, vocab) are skipped. Cost O(tokens^2) id comparisons (cheap next to dim).
void embedding_backward(const int* ids, int tokens, const float* dy, int dim, int vocab,
                        float* dtable, void* stream);

#endif
