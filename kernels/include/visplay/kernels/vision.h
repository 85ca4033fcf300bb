// ViT kernels: fused patch embedding, fused bias + GELU.
// Declared for both builds of kernels/cuda/vision.cu: visplay::kernels::cuda (nvcc, device
// pointers) and visplay::kernels::sim (host emulator, host pointers).
#ifndef VISPLAY_KERNELS_DECLARE
#ifndef VISPLAY_KERNELS_VISION_H_
#define VISPLAY_KERNELS_VISION_H_
#include <cstdint>
#define VISPLAY_KERNELS_DECLARE
namespace visplay::kernels::cuda {
#include "visplay/kernels/vision.h"
}  // namespace visplay::kernels::cuda
namespace visplay::kernels::sim {
#include "visplay/kernels/vision.h"
}  // namespace visplay::kernels::sim
#undef VISPLAY_KERNELS_DECLARE
#endif
#else

// Patch embedding in one pass: unfold P x P patches (row-major patch order), multiply by
// weight[embed, channels * P * P] (a conv weight [embed, C, P, P] flattened), add
// bias[embed] and pos[num_patches, embed] (pos may be nullptr). out[batch, patches, embed].
// Input either float CHW images[batch, C, H, W] (image_u8 == nullptr), or uint8 HWC
// images[batch, H, W, C] (image_f32 == nullptr) normalised as (u / 255 - mean[c]) / std[c].
// H and W must be multiples of P.
void patch_embed_forward(const float* image_f32, const uint8_t* image_u8, const float* mean,
                         const float* std, int batch, int channels, int height, int width,
                         int patch, const float* weight, const float* bias, const float* pos,
                         int embed, float* out, void* stream);

// y = gelu(x + bias) with the tanh-form GELU (as the runtime op), x[rows, dim], bias[dim] or nullptr.
void bias_gelu_forward(const float* x, const float* bias, int rows, int dim, float* y,
                       void* stream);
// dx = dy * gelu'(x + bias); dbias[dim] (overwritten, may be nullptr) = column sums of dx.
void bias_gelu_backward(const float* x, const float* bias, const float* dy, int rows, int dim,
                        float* dx, float* dbias, void* stream);

#endif
