// ViT patch embedding on the CPU: unfold P x P patches of images [B, C, H, W]
// (row-major patch order; each patch flattened as (c, ky, kx), the layout of a
// conv weight [E, C, P, P]) and multiply by weight [E, C*P*P], adding bias and
// the position embedding pos [N, E].
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// patches [B * N, C * P * P]
template <class T>
void unfold_patches(const T* images, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, T* patches);
// out [B, N, E]; pos may be null.
template <class T>
void patch_embed_forward(const T* images, const T* weight, const T* bias, const T* pos, int64_t B,
                         int64_t C, int64_t H, int64_t W, int64_t P, int64_t E, T* out);

}  // namespace visplay::kernels::cpu
