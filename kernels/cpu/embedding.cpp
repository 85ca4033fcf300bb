#include "kernels/cpu/embedding.h"
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <cstring>

namespace visplay::kernels::cpu {

template <class T>
void embedding_forward(const T* weight, const int64_t* ids, T* out, int64_t n, int64_t D) {
#pragma omp parallel for schedule(static) if (n * D > kParallelMinElements)
  for (int64_t i = 0; i < n; ++i) std::memcpy(out + i * D, weight + ids[i] * D, D * sizeof(T));
}

template <class T>
void embedding_backward(const T* dout, const int64_t* ids, T* dweight, int64_t n, int64_t V,
                        int64_t D) {
  std::memset(dweight, 0, V * D * sizeof(T));
  constexpr int64_t kCols = 64;
  int64_t col_blocks = (D + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (n * D > kParallelMinElements)
  for (int64_t cb = 0; cb < col_blocks; ++cb) {
    int64_t c0 = cb * kCols, c1 = std::min(D, c0 + kCols);
    for (int64_t i = 0; i < n; ++i) {
      T* dst = dweight + ids[i] * D;
      const T* src = dout + i * D;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

template void embedding_forward<float>(const float*, const int64_t*, float*, int64_t, int64_t);
template void embedding_forward<double>(const double*, const int64_t*, double*, int64_t, int64_t);
template void embedding_backward<float>(const float*, const int64_t*, float*, int64_t, int64_t,
                                        int64_t);
template void embedding_backward<double>(const double*, const int64_t*, double*, int64_t, int64_t,
                                         int64_t);

}  // namespace visplay::kernels::cpu
