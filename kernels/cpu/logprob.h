// Fused LM head + log-softmax + gather on the CPU, chunked over the
// vocabulary: the logits exist one (N, chunk) block at a time.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// hidden [N, D], weight [V, D], targets [N] in [0, V). Writes logprob[N],
// entropy[N] and lse[N] (kept for the backward).
void token_logprobs_forward(const float* hidden, const float* weight, const int64_t* targets,
                            float* logprob, float* entropy, float* lse, int64_t N, int64_t D,
                            int64_t V, int64_t chunk);
// Given dlogprob[N], writes dhidden [N, D] and dweight [V, D] (overwritten;
// either may be null).
void token_logprobs_backward(const float* hidden, const float* weight, const int64_t* targets,
                             const float* lse, const float* dlogprob, float* dhidden, float* dweight,
                             int64_t N, int64_t D, int64_t V, int64_t chunk);

}  // namespace visplay::kernels::cpu
