// Rotary position embedding, rotate-half form (as Qwen2/LLaMA in Hugging Face):
// for i < D/2, with angle a = pos * base^(-2i/D),
//   y[i]       = x[i] cos a - x[i + D/2] sin a
//   y[i + D/2] = x[i + D/2] cos a + x[i] sin a
// The backward is the same rotation by -a.
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// x: [B, S, H, D] contiguous; positions: [B, S] (one position per token, so
// left-padded batches rotate each sequence from its own first real token).
// inverse = true applies the rotation by -a (the backward).
template <class T>
void rope_apply(const T* x, T* y, const int64_t* positions, int64_t B, int64_t S, int64_t H,
                int64_t D, double base, bool inverse);

}  // namespace visplay::kernels::cpu
