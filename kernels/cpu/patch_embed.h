// ViT patch embedding on the CPU: unfold P x P patches of images [B, C, H, W]
// (row-major patch order; each patch flattened as (c, ky, kx), the layout of a
// conv weight [E, C, P, P]) and multiply by weight [E, C*P*P], adding bias and
// the position embedding pos [N, E].
#pragma once
#include <cstdint>

namespace visplay::kernels::cpu {

// patches [B * N, C * P * P]
void unfold_patches(const float* images, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P,
                    float* patches);
// out [B, N, E]; pos may be null.
void patch_embed_forward(const float* images, const float* weight, const float* bias, const float* pos,
                         int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t E, float* out);

}  // namespace visplay::kernels::cpu
