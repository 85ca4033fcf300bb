#include "kernels/cpu/patch_embed.h"

#include <vector>

#include "kernels/cpu/gemm.h"

namespace visplay::kernels::cpu {

template <class T>
void unfold_patches(const T* images, int64_t B, int64_t C, int64_t H, int64_t W, int64_t P, T* patches) {
  int64_t px = W / P, N = (H / P) * px, K = C * P * P;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      int64_t y0 = (n / px) * P, x0 = (n % px) * P;
      T* row = patches + (b * N + n) * K;
      for (int64_t c = 0; c < C; ++c)
        for (int64_t ky = 0; ky < P; ++ky)
          for (int64_t kx = 0; kx < P; ++kx)
            row[(c * P + ky) * P + kx] = images[((b * C + c) * H + y0 + ky) * W + x0 + kx];
    }
}

template <class T>
void patch_embed_forward(const T* images, const T* weight, const T* bias, const T* pos, int64_t B,
                         int64_t C, int64_t H, int64_t W, int64_t P, int64_t E, T* out) {
  int64_t N = (H / P) * (W / P), K = C * P * P;
  std::vector<T> patches(B * N * K);  // (B*N, C*P*P)
  unfold_patches(images, B, C, H, W, P, patches.data());
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r = 0; r < B * N; ++r)
    for (int64_t e = 0; e < E; ++e) out[r * E + e] = bias[e] + (pos ? pos[(r % N) * E + e] : T(0));
  gemm<T>(false, true, B * N, E, K, T(1), patches.data(), K, weight, K, T(1), out, E);
}

#define INSTANTIATE(T)                                                                               \
  template void unfold_patches<T>(const T*, int64_t, int64_t, int64_t, int64_t, int64_t, T*);        \
  template void patch_embed_forward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, int64_t, \
                                       int64_t, int64_t, int64_t, T*);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace visplay::kernels::cpu
