// Fused LM head + log-softmax + gather, chunked over the vocabulary: the tokens x vocab
// logits never exist in memory.
// Declared for both builds of kernels/cuda/logprob.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_LOGPROB_H_
#define VISPLAY_KERNELS_LOGPROB_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/logprob.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/logprob.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

// hidden[tokens, dim], weight[vocab, dim] (the LM head, nn.Linear layout), targets[tokens].
// Per token: logprob = z[target] - logsumexp(z) (always <= 0), entropy = -sum p log p, and
// lse = logsumexp(z) saved for the backward, where z = weight hidden. A negative target
// is padding (logprob 0); a target >= vocab gives NaN. entropy may be nullptr.
void logprob_forward(const float* hidden, const float* weight, const int* targets, int tokens,
                     int dim, int vocab, float* logprob, float* entropy, float* lse, void* stream);

// The same forward on tensor cores (mma.sync m16n8k16) from bf16 hidden and head weights
// (raw bits), f32 accumulate: for scoring rollouts (old and reference log-probs) where no
// gradient is needed. dim must be a multiple of 16.
void logprob_forward_bf16(const uint16_t* hidden, const uint16_t* weight, const int* targets,
                          int tokens, int dim, int vocab, float* logprob, float* entropy,
                          float* lse, void* stream);

// Given d loss / d logprob (and d loss / d entropy, or nullptr for none) per token, writes
// dhidden[tokens, dim] and dweight[vocab, dim] (both overwritten, deterministic: each
// element is summed by one thread in a fixed order). Recomputes the logits chunk by
// chunk. entropy is the forward's output (needed only when dentropy is given).
void logprob_backward(const float* hidden, const float* weight, const int* targets, int tokens,
                      int dim, int vocab, const float* lse, const float* entropy,
                      const float* dlogprob, const float* dentropy, float* dhidden, float* dweight,
                      void* stream);

#endif
