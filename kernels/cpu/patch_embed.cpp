#include "kernels/cpu/patch_embed.h"

#include <vector>

#include "kernels/cpu/gemm.h"

namespace visplay::kernels::cpu {

void unfold_patches(const float* images, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P,
                    float* patches) {
  int64_t px = W / P, N = (H / P) * px, K = C * P * P;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      int64_t y0 = (n / px) * P, x0 = (n % px) * P;
      float* row = patches + (b * N + n) * K;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t ky = 0; ky < P; ++ky)
          for (int64_t kx = 0; kx < P; ++kx)
            row[(c * P + ky) * P + kx] = images[((b * C + c) * H + y0 + ky) * W + x0 + kx];
    }
}

void patch_embed_forward(const float* images, const float* weight, const float* bias, const float* pos,
                         int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, int64_t E, float* out) {
  int64_t N = (H / P) * (W / P), K = C * P * P;
  std::vector<float> patches(B * N * K);  // (B*N, C*P*P)
  unfold_patches(images, B, C, H, W, P, patches.data());
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < B * N; ++r)
    for (int64_t e = 0; e < E; ++e) out[r * E + e] = bias[e] + (pos ? pos[(r % N) * E + e] : 0.0f);
  gemm<float>(false, true, B * N, E, K, 1.0f, patches.data(), K, weight, K, 1.0f, out, E);
}

}  // namespace visplay::kernels::cpu
