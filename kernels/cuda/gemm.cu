// Hand-written GEMMs: the sim backend's plain GEMM and a tensor-core example that the
// emulator can run. The cuda backend sends gemm_f32/gemm_bf16 to cuBLASLt
// (gemm_nvcc.cu); these kernels remain callable there as *_tiled.
#include <stdexcept>
#include <string>

#include "kernels/cuda/gemm.cuh"
#include "visplay/kernels/gemm.h"

namespace visplay::kernels::VISPLAY_KERNELS_NS {

// 256 threads as 16x16, each computing a 2x2 patch of the 32x32 tile of C; k-slices of
// 16 staged through shared memory (zero-filled past the edges).
__global__ void gemm_f32_tiled_kernel(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                      const float* A, int lda, const float* B, int ldb, float beta,
                                      float* C, int ldc) {
  __shared__ float a_tile[kGemmTile][kGemmF32K + 1];
  __shared__ float b_tile[kGemmF32K][kGemmTile + 1];
  int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  int row0 = blockIdx.y * kGemmTile, col0 = blockIdx.x * kGemmTile;
  float acc[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
  for (int k0 = 0; k0 < K; k0 += kGemmF32K) {
    for (int e = threadIdx.x; e < kGemmTile * kGemmF32K; e += blockDim.x) {
      int r = e / kGemmF32K, k = e % kGemmF32K;  // A tile: 32 rows x 16 k
      a_tile[r][k] =
          (row0 + r < M && k0 + k < K) ? load_op(A, trans_a, lda, row0 + r, k0 + k) : 0.0f;
      int kb = e / kGemmTile, c = e % kGemmTile;  // B tile: 16 k x 32 columns
      b_tile[kb][c] =
          (k0 + kb < K && col0 + c < N) ? load_op(B, trans_b, ldb, k0 + kb, col0 + c) : 0.0f;
    }
    __syncthreads();
    for (int k = 0; k < kGemmF32K; ++k)
      for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) acc[i][j] += a_tile[ty * 2 + i][k] * b_tile[k][tx * 2 + j];
    __syncthreads();
  }
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j) {
      int r = row0 + ty * 2 + i, c = col0 + tx * 2 + j;
      if (r < M && c < N) {
        float* out = &C[static_cast<long>(r) * ldc + c];
        *out = alpha * acc[i][j] + (beta != 0.0f ? beta * *out : 0.0f);
      }
    }
}

// 4 warps in a 2x2 arrangement, each computing a 16x16 quarter of the tile as two
// m16n8k16 mma's per k-step. Fragments are read from shared memory following the PTX
// ISA layout (group g = lane / 4, t = lane % 4): A rows g and g+8, columns 2t, 2t+1 and
// 2t+8, 2t+9; B k-rows 2t, 2t+1 (and +8), column g.
__global__ void gemm_bf16_tiled_kernel(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                                       const __nv_bfloat16* A, int lda, const __nv_bfloat16* B,
                                       int ldb, float beta, float* C, int ldc) {
  __shared__ unsigned short a_tile[kGemmTile][kGemmBf16K + 2];
  __shared__ unsigned short b_tile[kGemmBf16K][kGemmTile + 2];
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  int warp_row = (warp / 2) * 16, warp_col = (warp % 2) * 16;
  int row0 = blockIdx.y * kGemmTile, col0 = blockIdx.x * kGemmTile;
  float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
  for (int k0 = 0; k0 < K; k0 += kGemmBf16K) {
    for (int e = threadIdx.x; e < kGemmTile * kGemmBf16K; e += blockDim.x) {
      int r = e / kGemmBf16K, k = e % kGemmBf16K;
      a_tile[r][k] = (row0 + r < M && k0 + k < K)
                         ? __bfloat16_as_ushort(load_op(A, trans_a, lda, row0 + r, k0 + k))
                         : 0;
      int kb = e / kGemmTile, c = e % kGemmTile;
      b_tile[kb][c] = (k0 + kb < K && col0 + c < N)
                          ? __bfloat16_as_ushort(load_op(B, trans_b, ldb, k0 + kb, col0 + c))
                          : 0;
    }
    __syncthreads();
    auto pack = [](unsigned short lo, unsigned short hi) {
      return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    };
    uint32_t a[4];
    a[0] = pack(a_tile[warp_row + g][2 * t], a_tile[warp_row + g][2 * t + 1]);
    a[1] = pack(a_tile[warp_row + g + 8][2 * t], a_tile[warp_row + g + 8][2 * t + 1]);
    a[2] = pack(a_tile[warp_row + g][2 * t + 8], a_tile[warp_row + g][2 * t + 9]);
    a[3] = pack(a_tile[warp_row + g + 8][2 * t + 8], a_tile[warp_row + g + 8][2 * t + 9]);
    for (int j = 0; j < 2; ++j) {
      int n = warp_col + j * 8 + g;
      uint32_t b[2] = {pack(b_tile[2 * t][n], b_tile[2 * t + 1][n]),
                       pack(b_tile[2 * t + 8][n], b_tile[2 * t + 9][n])};
      mma_m16n8k16_bf16(acc[j], a, b, acc[j]);
    }
    __syncthreads();
  }
  for (int j = 0; j < 2; ++j)
    for (int i = 0; i < 4; ++i) {
      int r = row0 + warp_row + g + (i / 2) * 8, c = col0 + warp_col + j * 8 + 2 * t + (i % 2);
      if (r < M && c < N) {
        float* out = &C[static_cast<long>(r) * ldc + c];
        *out = alpha * acc[j][i] + (beta != 0.0f ? beta * *out : 0.0f);
      }
    }
}

static void check_gemm_shape(const char* what, bool trans_a, bool trans_b, int M, int N, int K,
                             int lda, int ldb, int ldc) {
  bool ok = M >= 0 && N >= 0 && K >= 0 && lda >= (trans_a ? M : K) && lda >= 1 &&
            ldb >= (trans_b ? K : N) && ldb >= 1 && ldc >= N && ldc >= 1;
  if (!ok)
    throw std::invalid_argument(
        std::string(what) + ": bad shape M=" + std::to_string(M) + " N=" + std::to_string(N) +
        " K=" + std::to_string(K) + " lda=" + std::to_string(lda) + " ldb=" + std::to_string(ldb) +
        " ldc=" + std::to_string(ldc) + (trans_a ? " trans_a" : "") + (trans_b ? " trans_b" : ""));
}

void gemm_f32_tiled(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                    int lda, const float* B, int ldb, float beta, float* C, int ldc, void* stream) {
  check_gemm_shape("gemm_f32_tiled", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  dim3 grid(ceil_div(N, kGemmTile), ceil_div(M, kGemmTile));
  SIMT_LAUNCH(gemm_f32_tiled_kernel, grid, 256, 0, stream)
  (trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  simt::check_launch("gemm_f32_tiled");
}

void gemm_bf16_tiled(bool trans_a, bool trans_b, int M, int N, int K, float alpha,
                     const uint16_t* A, int lda, const uint16_t* B, int ldb, float beta, float* C,
                     int ldc, void* stream) {
  check_gemm_shape("gemm_bf16_tiled", trans_a, trans_b, M, N, K, lda, ldb, ldc);
  if (M == 0 || N == 0) return;
  dim3 grid(ceil_div(N, kGemmTile), ceil_div(M, kGemmTile));
  SIMT_LAUNCH(gemm_bf16_tiled_kernel, grid, 128, 0, stream)
  (trans_a, trans_b, M, N, K, alpha, reinterpret_cast<const __nv_bfloat16*>(A), lda,
   reinterpret_cast<const __nv_bfloat16*>(B), ldb, beta, C, ldc);
  simt::check_launch("gemm_bf16_tiled");
}

#ifndef __CUDACC__
// The sim backend has no cuBLASLt: its plain GEMMs are the tiled kernels. (The cuda
// backend's gemm_f32/gemm_bf16 are in gemm_nvcc.cu.)
void gemm_f32(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
              const float* B, int ldb, float beta, float* C, int ldc, void* stream) {
  gemm_f32_tiled(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t* A,
               int lda, const uint16_t* B, int ldb, float beta, float* C, int ldc, void* stream) {
  gemm_bf16_tiled(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, stream);
}
#endif

}  // namespace visplay::kernels::VISPLAY_KERNELS_NS
