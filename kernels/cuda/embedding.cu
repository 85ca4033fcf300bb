// Deterministic embedding backward. Block t owns the vocabulary row ids[t] if t is the
// first token with that id; it then adds the gradients of all tokens with that id in
// token order. No two blocks write one row and the summation order is fixed, so the
// result is bit-reproducible without sorting or float atomics.
#include <stdexcept>
#include <string>

#include "kernels/cuda/embedding.cuh"
#include "visplay/kernels/embedding.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void embedding_backward_kernel(const int* ids, int tokens, const float* dy, int dim,
                                          int vocab, float* dtable) {
  __shared__ float scratch[32];
  int t = blockIdx.x, id = ids[t];
  float seen_before = 0.0f;
  for (int u = threadIdx.x; u < t; u += blockDim.x) seen_before += ids[u] == id ? 1.0f : 0.0f;
  seen_before = block_sum(seen_before, scratch);
  if (seen_before > 0.0f || id < 0 || id >= vocab) return;  // uniform over the block
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float acc = dtable[static_cast<long>(id) * dim + d];
    for (int u = t; u < tokens; ++u)
      if (ids[u] == id) acc += dy[static_cast<long>(u) * dim + d];
    dtable[static_cast<long>(id) * dim + d] = acc;
  }
}

void embedding_backward(const int* ids, int tokens, const float* dy, int dim, int vocab,
                        float* dtable, void* stream) {
  if (tokens < 0 || dim <= 0 || vocab <= 0)
    throw std::invalid_argument("embedding_backward: bad shape tokens=" + std::to_string(tokens) +
                                " dim=" + std::to_string(dim) + " vocab=" + std::to_string(vocab));
  if (tokens == 0) return;
  SIMT_LAUNCH(embedding_backward_kernel, tokens, 128, 0, stream)
  (ids, tokens, dy, dim, vocab, dtable);
  simt::check_launch("embedding_backward");
}

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
