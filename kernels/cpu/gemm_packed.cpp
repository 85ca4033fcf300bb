// A packed, register-blocked f32 GEMM for the small and medium shapes of the
// demo-size models (M in the tens to thousands, N and K in the hundreds).
// At these sizes OpenBLAS's per-call overhead (thread dispatch, its own
// packing buffers) and its AVX2 (Haswell) kernel on AVX-512 machines leave
// most of the core idle; this kernel packs op(B) (and op(A) = A^T) into
// panels, reads a row-major A in place, and runs an MR x NR micro-kernel
// whose accumulators live in vector registers (GCC vector extensions: zmm
// with AVX-512, pairs of ymm with AVX2).
//
// Determinism: every C element is one k-ordered chain of multiply-adds per
// K block (blocks added in order), whatever the thread count: threads split
// the output tiles, never the sum.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_math.h"

namespace visplay::kernels::cpu {

namespace {

// Tile shapes follow the machine's vector width: NR is two native vectors,
// and MR rows of them fill about three quarters of the register file with
// accumulators, leaving room for the two B vectors and the A broadcast.
// AVX-512 (32 zmm): 12 x 32 main tiles (24 accumulators; 14 loads per 24
// FMAs against 10 per 16 at 8 x 32), 8-row few-rows tiles (16). AVX2 (16
// ymm): 6 x 16 (12 accumulators); wider tiles than the registers hold, e.g.
// 16-float vectors as ymm pairs, spill every accumulator to the stack on
// every k (the training step was 17.8x slower on an AMD EPYC Zen 3).
// Without AVX, 4-float vectors.
// The tile shape does not change any result: each C element is still one
// k-ordered chain of multiply-adds per K block.
#if defined(__AVX512F__)
constexpr int64_t kLanes = 16;
constexpr int64_t kMRMain = 12;  // rows of C per micro-tile of the main path
constexpr int64_t kMR = 8;       // rows of C^T per micro-tile of the few-rows form
#else
#if defined(__AVX__)
constexpr int64_t kLanes = 8;
#else
constexpr int64_t kLanes = 4;
#endif
constexpr int64_t kMRMain = 6;
constexpr int64_t kMR = 6;
#endif
constexpr int64_t kNR = 2 * kLanes;  // columns of C per micro-tile (two vectors)
// Accumulators + two B vectors + the broadcast must fit the vector registers.
constexpr int64_t kVectorRegisters = kLanes == 16 ? 32 : 16;
static_assert(2 * kMRMain + 3 <= kVectorRegisters && 2 * kMR + 3 <= kVectorRegisters,
              "micro-tiles larger than the register file spill on every k");
// K block. Part of the summation order (each block is its own chain, blocks
// added to C in order): changing it changes the results.
constexpr int64_t kKC = 256;
constexpr int64_t kFewRows = 96;  // M up to this (x B^T, N >= 2M): the transposed form

typedef float vecw __attribute__((vector_size(kLanes * sizeof(float))));

inline vecw loadw(const float* p) {
  vecw v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void storew(float* p, const vecw& v) { std::memcpy(p, &v, sizeof(v)); }

// op(A)[0:M, k0+k] for op(A) = A^T (op(A)[i][k] = A[k][i]) and the ks
// [kg, kg + kn) of the K block [k0, k0 + kc), into MR-row panels (panel t at
// dst + t * MR * kc, each kc groups of MR floats, zero rows past M). The
// panels lie MR * kc floats apart (12 KiB at kc = 256: the same L1 set), so
// one k at a time across all panels wrote a partial line into each of up to
// 32 lines of one set and thrashed it; kn (up to 8) consecutive ks per panel
// fill its lines whole before the next panel, while A's kn rows (each read
// once, MR floats per panel) stay in L1. A itself (no transpose) is never
// packed: the micro-kernel reads its rows in place.
template <int64_t MR>
void pack_a_transposed_rows(const float* A, int64_t lda, int64_t M, int64_t k0, int64_t kc,
                            int64_t kg, int64_t kn, float* dst) {
  const int64_t full_tiles = M / MR, rest = M - full_tiles * MR;
  const float* src = A + (k0 + kg) * lda;
  for (int64_t t = 0; t < full_tiles; ++t) {
    float* d = dst + t * MR * kc + kg * MR;
    for (int64_t k = 0; k < kn; ++k)
      std::memcpy(d + k * MR, src + k * lda + t * MR, MR * sizeof(float));
  }
  if (rest > 0) {
    float* d = dst + full_tiles * MR * kc + kg * MR;
    for (int64_t k = 0; k < kn; ++k) {
      for (int64_t r = 0; r < rest; ++r) d[k * MR + r] = src[k * lda + full_tiles * MR + r];
      for (int64_t r = rest; r < MR; ++r) d[k * MR + r] = 0.0f;
    }
  }
}
constexpr int64_t kPackAGroup = 8;  // ks per pack_a_transposed_rows call

// op(B)[k0:k0+kc, j0:j0+NR] as kc groups of NR floats (zero columns past N).
void pack_b(bool trans, const float* B, int64_t ldb, int64_t j0, int64_t cols, int64_t k0,
            int64_t kc, float* dst) {
  if (!trans) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = B + (k0 + k) * ldb + j0;
      float* d = dst + k * kNR;
      if (cols == kNR) {  // a fixed-size copy, inlined (a libc call per row cost ~8%)
        std::memcpy(d, src, kNR * sizeof(float));
        continue;
      }
      std::memcpy(d, src, cols * sizeof(float));
      for (int64_t c = cols; c < kNR; ++c) d[c] = 0.0f;
    }
    return;
  }
  // op(B)[k][j] = B[j][k]: 8 x 8 blocks transposed in registers, then the
  // leftover columns / k rows one element at a time.
  const int64_t c_full = cols / 8 * 8, k_full = kc / 8 * 8;
  for (int64_t c = 0; c < c_full; c += 8)
    for (int64_t k = 0; k < k_full; k += 8)
      transpose8x8(B + (j0 + c) * ldb + k0 + k, ldb, dst + k * kNR + c, kNR);
  for (int64_t c = 0; c < cols; ++c) {
    const float* src = B + (j0 + c) * ldb + k0;
    for (int64_t k = c < c_full ? k_full : 0; k < kc; ++k) dst[k * kNR + c] = src[k];
  }
  for (int64_t c = cols; c < kNR; ++c)
    for (int64_t k = 0; k < kc; ++k) dst[k * kNR + c] = 0.0f;
}

// C[0:rows, 0:cols] = alpha * (op(A) . Bp) + (first ? beta : 1) * C, for an
// MR-row sliver of op(A) whose element (r, k) is a_rows + r * row_step +
// k * k_step: the packed panel (row_step 1, k_step MR), or with kDirectA the
// rows of a row-major A read in place (row_step lda, k_step 1; rows past
// `rows` repeat the last one and are dropped). Both read the same values in
// the same k order, so the results are identical bit for bit.
// The prior values come from c_in with row stride ldc_in: C itself, or a bias
// row (ldc_in 0) that the first K block adds in the same expression (so
// `bias + sum` rounds exactly as a bias filled into C before did).
// With beta == 0 on the first K block C is never read (it may hold NaNs).
template <int64_t MR, bool kDirectA>
void micro_kernel(int64_t kc, const float* a_rows, int64_t row_step, const float* __restrict bp,
                  float* c, int64_t ldc, const float* c_in, int64_t ldc_in, int64_t rows,
                  int64_t cols, float alpha, float beta) {
  constexpr int64_t k_step = kDirectA ? 1 : MR;
  const float* a_row[MR];
  for (int64_t r = 0; r < MR; ++r)
    a_row[r] = a_rows + (kDirectA ? std::min(r, rows - 1) : r) * row_step;
  vecw acc[MR][2];
#pragma GCC unroll 16
  for (int64_t r = 0; r < MR; ++r) acc[r][0] = vecw{}, acc[r][1] = vecw{};
  for (int64_t k = 0; k < kc; ++k) {
    vecw b0 = loadw(bp), b1 = loadw(bp + kLanes);
#pragma GCC unroll 16
    for (int64_t r = 0; r < MR; ++r) {
      float a = a_row[r][k * k_step];
      acc[r][0] = madd_broadcast(acc[r][0], a, b0);
      acc[r][1] = madd_broadcast(acc[r][1], a, b1);
    }
    bp += kNR;
  }
  if (rows == MR && cols == kNR) {
#pragma GCC unroll 16
    for (int64_t r = 0; r < MR; ++r) {
      float* cr = c + r * ldc;
      const float* cr_in = c_in + r * ldc_in;
      vecw y0 = alpha == 1.0f ? acc[r][0] : alpha * acc[r][0];
      vecw y1 = alpha == 1.0f ? acc[r][1] : alpha * acc[r][1];
      if (beta != 0.0f) {
        y0 += beta * loadw(cr_in);
        y1 += beta * loadw(cr_in + kLanes);
      }
      storew(cr, y0);
      storew(cr + kLanes, y1);
    }
    return;
  }
  float tile[MR][kNR];
  for (int64_t r = 0; r < MR; ++r) {
    storew(&tile[r][0], acc[r][0]);
    storew(&tile[r][kLanes], acc[r][1]);
  }
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) {
      float y = alpha == 1.0f ? tile[r][j] : alpha * tile[r][j];
      if (beta != 0.0f) y += beta * c_in[r * ldc_in + j];
      c[r * ldc + j] = y;
    }
}

// The transposed formulation's micro-kernel: rows of A read in place (row r
// at a + r * lda, k contiguous; rows past `rows` repeat the last one and are
// dropped), so a weight matrix used by few rows of activations is never
// packed. The tile is C^T: element (r, j) goes to c[j * ldc + r], its prior
// value comes from c_in[j * ldc_in + r] (C, or a bias with ldc_in 0).
void micro_kernel_direct_a_transposed_c(int64_t kc, const float* a, int64_t lda,
                                        const float* __restrict bp, float* c, int64_t ldc,
                                        const float* c_in, int64_t ldc_in, int64_t rows,
                                        int64_t cols, float alpha, float beta) {
  const float* a_row[kMR];
  for (int64_t r = 0; r < kMR; ++r) a_row[r] = a + std::min(r, rows - 1) * lda;
  vecw acc[kMR][2];
#pragma GCC unroll 8
  for (int64_t r = 0; r < kMR; ++r) acc[r][0] = vecw{}, acc[r][1] = vecw{};
  for (int64_t k = 0; k < kc; ++k) {
    vecw b0 = loadw(bp), b1 = loadw(bp + kLanes);
#pragma GCC unroll 8
    for (int64_t r = 0; r < kMR; ++r) {
      float av = a_row[r][k];
      acc[r][0] = madd_broadcast(acc[r][0], av, b0);
      acc[r][1] = madd_broadcast(acc[r][1], av, b1);
    }
    bp += kNR;
  }
  float tile[kMR][kNR];
  for (int64_t r = 0; r < kMR; ++r) {
    storew(&tile[r][0], acc[r][0]);
    storew(&tile[r][kLanes], acc[r][1]);
  }
  if constexpr (kMR == 8) {
    if (rows == kMR && alpha == 1.0f && beta == 0.0f) {
      // Whole 8-wide rows of C: 8 x 8 register transposes.
      const int64_t full = cols / 8 * 8;
      for (int64_t j = 0; j < full; j += 8) transpose8x8(&tile[0][j], kNR, c + j * ldc, ldc);
      for (int64_t j = full; j < cols; ++j)
        for (int64_t r = 0; r < kMR; ++r) c[j * ldc + r] = tile[r][j];
      return;
    }
  }
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t r = 0; r < rows; ++r) {
      float y = alpha == 1.0f ? tile[r][j] : alpha * tile[r][j];
      if (beta != 0.0f) y += beta * c_in[j * ldc_in + r];
      c[j * ldc + r] = y;
    }
}

// C = alpha * A B^T + beta * C for few rows of A (M <= kFewRows) against a
// larger row-major B [N, K] (a linear layer's weight during decoding), as
// C^T = B A^T: the small A^T is packed into NR-wide panels and B's rows are
// read in place by the micro-kernel. The packed path would re-pack all of B
// on every call, which for M = 64 costs a fifth of the multiply itself.
void gemm_few_rows_bt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
                      const float* B, int64_t ldb, float beta, float* C, int64_t ldc,
                      const float* bias, float* panel_buffer, bool parallel) {
  const int64_t i_tiles = (M + kNR - 1) / kNR, j_tiles = (N + kMR - 1) / kMR;
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const float block_beta = k0 == 0 ? beta : 1.0f;
    // A^T panels: [k][i0 .. i0 + NR), i.e. op(B) of the transposed problem.
    for (int64_t it = 0; it < i_tiles; ++it)
      pack_b(true, A, lda, it * kNR, std::min(kNR, M - it * kNR), k0, kc,
             panel_buffer + it * kNR * kc);
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
    for (int64_t jt = 0; jt < j_tiles; ++jt)
      for (int64_t it = 0; it < i_tiles; ++it) {
        const int64_t j0 = jt * kMR, i0 = it * kNR;
        float* c = C + i0 * ldc + j0;
        const bool from_bias = bias != nullptr && k0 == 0;
        micro_kernel_direct_a_transposed_c(kc, B + j0 * ldb + k0, ldb, panel_buffer + it * kNR * kc,
                                           c, ldc, from_bias ? bias + j0 : c, from_bias ? 0 : ldc,
                                           std::min(kMR, N - j0), std::min(kNR, M - i0), alpha,
                                           block_beta);
      }
  }
}

}  // namespace

void gemm_f32_packed(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
                     int64_t ldc, const float* bias) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // C = beta * C0 (never reading C0 when beta is 0)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        const float c0 = bias != nullptr ? bias[j] : C[i * ldc + j];
        C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c0;
      }
    return;
  }
  if (!trans_a && trans_b && M <= kFewRows && N >= 2 * M) {
    static thread_local std::vector<float> panels;
    const int64_t need = (M + kNR - 1) / kNR * kNR * std::min(K, kKC);
    if (static_cast<int64_t>(panels.size()) < need) panels.resize(need);
    gemm_few_rows_bt(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, bias, panels.data(),
                     M * N * K > kGemmFewRowsParallelMinMultiplyAdds);
    return;
  }
  const bool parallel = M * N * K > kGemmParallelMinMultiplyAdds;
  constexpr int64_t MR = kMRMain;
  const int64_t m_tiles = (M + MR - 1) / MR, n_tiles = (N + kNR - 1) / kNR;
  // A row-major (no transpose): the micro-kernel reads its rows in place.
  // Packing them cost ~7% of the demo training step and measured ~16%
  // slower per GEMM on an AVX-512 Xeon (the broadcasts read L1/L2 either way).
  // op(A) = A^T stays packed: in place, each k would touch a new cache line.
  const bool direct_a = !trans_a;
  const int64_t kc_max = std::min(K, kKC);
  // A^T panels, shared by the team: two buffers (even and odd K blocks), so a
  // thread packing block b + 1 never overwrites panels another thread still
  // reads in block b (it cannot reach block b + 2's packing before everyone
  // has passed block b + 1's packing, i.e. finished block b).
  static thread_local std::vector<float> a_pack;
  const int64_t a_panels = m_tiles * MR * kc_max, a_buffers = K > kKC ? 2 : 1;
  if (!direct_a && static_cast<int64_t>(a_pack.size()) < a_buffers * a_panels)
    a_pack.resize(a_buffers * a_panels);
  float* ap_all = a_pack.data();
  const int64_t tiles = n_tiles * m_tiles;
  // One parallel region for all K blocks, and no barrier in it where A is
  // read in place (one per K block for the shared A^T panels): each fork,
  // join or barrier wakes the other thread, which on a loaded machine may
  // wait for a core. Each thread owns a fixed, contiguous run of tiles in
  // (column panel, row sliver) order for every K block (so a C tile's blocks
  // are added by one thread, in order) and packs the B panels of its run
  // itself, one at a time, just before using them (a panel shared by two
  // runs is packed by both). Who computes a tile does not change its value.
#pragma omp parallel if (parallel)
  {
    int64_t team = 1, me = 0;
#if defined(_OPENMP)
    team = omp_get_num_threads();
    me = omp_get_thread_num();
#endif
    const int64_t first = tiles * me / team, last = tiles * (me + 1) / team;
    static thread_local std::vector<float> b_panel;
    if (static_cast<int64_t>(b_panel.size()) < kNR * kc_max) b_panel.resize(kNR * kc_max);
    float* bp = b_panel.data();
    for (int64_t k0 = 0; k0 < K; k0 += kKC) {
      const int64_t kc = std::min(kKC, K - k0);
      const float block_beta = k0 == 0 ? beta : 1.0f;
      float* ap = ap_all + (k0 / kKC % 2) * a_panels;
      if (!direct_a) {
        // The closing barrier: every sliver is packed before any is read.
#pragma omp for schedule(static)
        for (int64_t kg = 0; kg < kc; kg += kPackAGroup)
          pack_a_transposed_rows<MR>(A, lda, M, k0, kc, kg, std::min(kPackAGroup, kc - kg), ap);
      }
      // Column panel outer (its packed B stays in L1), row slivers inner.
      for (int64_t t = first; t < last;) {
        const int64_t jt = t / m_tiles, it_end = std::min(m_tiles, t % m_tiles + (last - t));
        const int64_t j0 = jt * kNR, cols = std::min(kNR, N - j0);
        pack_b(trans_b, B, ldb, j0, cols, k0, kc, bp);
        for (int64_t it = t % m_tiles; it < it_end; ++it, ++t) {
          const int64_t i0 = it * MR, rows = std::min(MR, M - i0);
          float* c = C + i0 * ldc + j0;
          const bool from_bias = bias != nullptr && k0 == 0;
          const float* c_in = from_bias ? bias + j0 : c;
          const int64_t ldc_in = from_bias ? 0 : ldc;
          if (direct_a)
            micro_kernel<MR, true>(kc, A + i0 * lda + k0, lda, bp, c, ldc, c_in, ldc_in, rows, cols,
                                   alpha, block_beta);
          else
            micro_kernel<MR, false>(kc, ap + it * MR * kc, 1, bp, c, ldc, c_in, ldc_in, rows, cols,
                                    alpha, block_beta);
        }
      }
    }
  }
}

}  // namespace visplay::kernels::cpu
