// Embedding backward kernel (launcher: visplay/kernels/embedding.h).
#pragma once

#include "kernels/cuda/common.cuh"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

__global__ void embedding_backward_kernel(const int* ids, int tokens, const float* dy, int dim,
                                          int vocab, float* dtable);

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
