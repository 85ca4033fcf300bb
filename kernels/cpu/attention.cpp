#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/cpu/vec_math.h"

namespace visplay::kernels::cpu {

namespace {

constexpr int64_t kBlockQ = 16;
constexpr int64_t kBlockK = 64;

// Row pointers into the [B, S, heads, D] layouts.
struct Rows {
  const AttentionShape& s;
  int64_t q_off(int64_t b, int64_t i, int64_t h) const { return ((b * s.Sq + i) * s.H + h) * s.D; }
  int64_t kv_off(int64_t b, int64_t j, int64_t hk) const {
    return ((b * s.Sk + j) * s.Hkv + hk) * s.D;
  }
  int64_t lse_off(int64_t b, int64_t h, int64_t i) const { return (b * s.H + h) * s.Sq + i; }
};

inline bool key_visible(const AttentionShape& s, const int32_t* key_mask, int64_t b, int64_t i,
                        int64_t j) {
  if (s.causal && j > i + (s.Sk - s.Sq)) return false;
  if (key_mask && key_mask[b * s.Sk + j] == 0) return false;
  return true;
}

template <class T>
inline T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
  for (int64_t d = 0; d < n; ++d) acc += a[d] * b[d];
  return acc;
}

// Additive mask of keys [j0, j0 + n) for query i: 0 where visible, -inf
// where not. Branch-free, so the loops that add it vectorise; `key_bias` is
// the padding part (0 / -inf per key) already gathered for the tile.
template <class T>
inline void visibility_bias(const AttentionShape& s, const T* key_bias, int64_t i, int64_t j0,
                            int64_t n, T* bias) {
  int64_t last = s.causal ? i + (s.Sk - s.Sq) - j0 : n;  // keys past this tile offset are hidden
  for (int64_t j = 0; j < n; ++j) bias[j] = j > last ? static_cast<T>(-INFINITY) : key_bias[j];
}

// The padding part of the mask for keys [j0, j0 + n) of batch row b.
template <class T>
inline void key_padding_bias(const AttentionShape& s, const int32_t* key_mask, int64_t b,
                             int64_t j0, int64_t n, T* key_bias) {
  for (int64_t j = 0; j < n; ++j)
    key_bias[j] = key_mask && key_mask[b * s.Sk + j0 + j] == 0 ? static_cast<T>(-INFINITY) : T(0);
}

// The last key index (exclusive) any query in [i0, i1) can see.
inline int64_t key_end(const AttentionShape& s, int64_t i1) {
  return s.causal ? std::min(s.Sk, i1 + (s.Sk - s.Sq)) : s.Sk;
}

// Short sequences (Sq * Sk <= kWholeRowMaxScores, e.g. the demo model's 40
// tokens or 64 patches): whole score rows instead of tiles. Per (batch, kv
// head) K and V are transposed once and shared by the group's query heads;
// the backward keeps P and dS for a head and computes scores once (the tiled
// path recomputes them in each of its two passes). Threads split (batch, kv
// head) pairs, which own their dq, dk and dv rows: no races, and each sum
// runs in a fixed order whatever the thread count.
constexpr int64_t kWholeRowMaxScores = 128 * 128;

// Query rows per group: their scores (and P.V) come from one pass over the
// transposed keys (values) with 4 x 4 accumulator chains (accumulate_rows_n);
// one row at a time its 4 chains were latency bound. Each score and output
// element sums in the same order as a single row's would (keys past a row's
// last visible key get weight 0, and a zero product leaves a finite sum's
// bits as they were), so the values are the same bit for bit.
constexpr int64_t kRowGroup = 4;

// flatten: with the grouped loops GCC stopped inlining fast_exp here and ran
// the exp loops as scalar calls (54% of the forward). Forcing it inline in
// vec_math.h instead would change where other kernels fuse multiply-adds
// around it, and with that their bits.
template <class T>
__attribute__((flatten)) void attention_forward_rows(const AttentionShape& s, const T* q,
                                                     const T* k, const T* v,
                                                     const int32_t* key_mask, T* out, T* lse) {
  Rows rows{s};
  const int64_t group = s.H / s.Hkv, Sk = s.Sk, D = s.D, q_stride = s.H * s.D;
  const T scale = static_cast<T>(s.scale);
#pragma omp parallel if (s.B * s.H * s.Sq * s.Sk * s.D > kParallelMinElements)
  {
    std::vector<T> k_t(D * Sk), key_bias(Sk), sc(kRowGroup * Sk), bias(Sk), acc(kRowGroup * D);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t hk = 0; hk < s.Hkv; ++hk) {
        transpose_into(k + rows.kv_off(b, 0, hk), s.Hkv * D, Sk, D, k_t.data(), Sk);
        key_padding_bias(s, key_mask, b, 0, Sk, key_bias.data());
        for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
          for (int64_t i0 = 0; i0 < s.Sq; i0 += kRowGroup) {
            const int64_t nq = std::min(kRowGroup, s.Sq - i0);
            const int64_t nk_max = std::max<int64_t>(0, key_end(s, i0 + nq));
            T m_row[kRowGroup], sum_row[kRowGroup];
            accumulate_rows_n(nq, sc.data(), Sk, nk_max, q + rows.q_off(b, i0, h), q_stride,
                              k_t.data(), Sk, D, /*from_zero=*/true);
            for (int64_t r = 0; r < nq; ++r) {
              const int64_t i = i0 + r, nk = std::max<int64_t>(0, key_end(s, i + 1));
              T* sc_i = &sc[r * Sk];
              visibility_bias(s, key_bias.data(), i, 0, nk, bias.data());
              for (int64_t j = 0; j < nk; ++j) sc_i[j] = sc_i[j] * scale + bias[j];
              // f32: max in eight lanes (exact, so the same value) and the
              // normaliser in eight double lanes: a one-lane chain of dependent
              // adds and maxes was a third of this loop's time.
              T m = -INFINITY;
              if constexpr (std::is_same_v<T, float>) {
                m = max_lanes8(sc_i, nk);
              } else {
                for (int64_t j = 0; j < nk; ++j) m = std::max(m, sc_i[j]);
              }
              m_row[r] = m;
              if (m == -INFINITY) {  // sees no key: weight 0 everywhere
                std::fill(sc_i, sc_i + nk_max, T(0));
                continue;
              }
              T sum = 0;
              if constexpr (std::is_same_v<T, float>) {
                sum = static_cast<T>(sum_exp(sc_i, nk, m, sc_i));  // hidden keys: 0
              } else {
                for (int64_t j = 0; j < nk; ++j) sc_i[j] = k_exp(sc_i[j] - m);
                for (int64_t j = 0; j < nk; ++j) sum += sc_i[j];
              }
              sum_row[r] = sum;
              std::fill(sc_i + nk, sc_i + nk_max, T(0));  // keys the group's later rows see
            }
            accumulate_rows_n(nq, acc.data(), D, D, sc.data(), Sk, v + rows.kv_off(b, 0, hk),
                              s.Hkv * D, nk_max, /*from_zero=*/true);
            for (int64_t r = 0; r < nq; ++r) {
              T* oi = out + rows.q_off(b, i0 + r, h);
              if (m_row[r] == -INFINITY) {
                std::fill(oi, oi + D, T(0));
                lse[rows.lse_off(b, h, i0 + r)] = static_cast<T>(-INFINITY);
                continue;
              }
              for (int64_t d = 0; d < D; ++d) oi[d] = acc[r * D + d] / sum_row[r];
              lse[rows.lse_off(b, h, i0 + r)] = m_row[r] + std::log(sum_row[r]);
            }
          }
      }
  }
}

template <class T>
__attribute__((flatten)) void attention_backward_rows(const AttentionShape& s, const T* q,
                                                      const T* k, const T* v,
                                                      const int32_t* key_mask, const T* out,
                                                      const T* lse, const T* dout, T* dq, T* dk,
                                                      T* dv) {
  Rows rows{s};
  const int64_t group = s.H / s.Hkv, Sq = s.Sq, Sk = s.Sk, D = s.D, q_stride = s.H * s.D;
  const T scale = static_cast<T>(s.scale);
#pragma omp parallel if (s.B * s.H * s.Sq * s.Sk * s.D > kParallelMinElements)
  {
    std::vector<T> k_t(D * Sk), v_t(D * Sk), key_bias(Sk), bias(Sk);
    std::vector<T> sc(kRowGroup * Sk), dp(kRowGroup * Sk);
    std::vector<T> p(Sq * Sk), ds(Sq * Sk), p_t(Sk * Sq), ds_t(Sk * Sq);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t hk = 0; hk < s.Hkv; ++hk) {
        transpose_into(k + rows.kv_off(b, 0, hk), s.Hkv * D, Sk, D, k_t.data(), Sk);
        transpose_into(v + rows.kv_off(b, 0, hk), s.Hkv * D, Sk, D, v_t.data(), Sk);
        key_padding_bias(s, key_mask, b, 0, Sk, key_bias.data());
        for (int64_t h = hk * group; h < (hk + 1) * group; ++h) {
          // Rows of P and dS, and dq, kRowGroup query rows at a time (rows
          // that see no key keep P = dS = 0 and a zero dq).
          for (int64_t i0 = 0; i0 < Sq; i0 += kRowGroup) {
            const int64_t nq = std::min(kRowGroup, Sq - i0);
            const int64_t nk_max = std::max<int64_t>(0, key_end(s, i0 + nq));
            accumulate_rows_n(nq, sc.data(), Sk, nk_max, q + rows.q_off(b, i0, h), q_stride,
                              k_t.data(), Sk, D, /*from_zero=*/true);
            accumulate_rows_n(nq, dp.data(), Sk, nk_max, dout + rows.q_off(b, i0, h), q_stride,
                              v_t.data(), Sk, D, /*from_zero=*/true);
            // the softmax backward's row terms (independent chains, so they overlap)
            T di[kRowGroup];
            for (int64_t r = 0; r < nq; ++r)
              di[r] = dot(dout + rows.q_off(b, i0 + r, h), out + rows.q_off(b, i0 + r, h), D);
            for (int64_t r = 0; r < nq; ++r) {
              const int64_t i = i0 + r;
              const T l = lse[rows.lse_off(b, h, i)];
              T* p_i = p.data() + i * Sk;
              T* ds_i = ds.data() + i * Sk;
              if (l == -INFINITY) {  // the row sees no key: zero gradient
                std::fill(p_i, p_i + Sk, T(0));
                std::fill(ds_i, ds_i + Sk, T(0));
                continue;
              }
              const int64_t nk = std::max<int64_t>(0, key_end(s, i + 1));
              // Keys past nk stay 0 (only they are filled: the whole rows'
              // fill was ~10% of the ViT's backward, where nk = Sk).
              std::fill(p_i + nk, p_i + Sk, T(0));
              std::fill(ds_i + nk, ds_i + Sk, T(0));
              const T* sc_i = &sc[r * Sk];
              const T* dp_i = &dp[r * Sk];
              visibility_bias(s, key_bias.data(), i, 0, nk, bias.data());
              for (int64_t j = 0; j < nk; ++j) p_i[j] = k_exp(sc_i[j] * scale - l + bias[j]);
              for (int64_t j = 0; j < nk; ++j) ds_i[j] = p_i[j] * (dp_i[j] - di[r]) * scale;
            }
            accumulate_rows_n(nq, dq + rows.q_off(b, i0, h), q_stride, D, ds.data() + i0 * Sk, Sk,
                              k + rows.kv_off(b, 0, hk), s.Hkv * D, nk_max, /*from_zero=*/true);
          }
          // dk_j += sum_i dS[i][j] q_i and dv_j += sum_i P[i][j] dO_i, from
          // the transposed matrices so each key's weights are contiguous.
          transpose_into(p.data(), Sk, Sq, Sk, p_t.data(), Sq);
          transpose_into(ds.data(), Sk, Sq, Sk, ds_t.data(), Sq);
          // The group's first head starts dk and dv from zero (as a zero fill
          // would), the others add to them in head order.
          const bool first_head = h == hk * group;
          accumulate_rows_n(Sk, dv + rows.kv_off(b, 0, hk), s.Hkv * D, D, p_t.data(), Sq,
                            dout + rows.q_off(b, 0, h), q_stride, Sq, first_head);
          accumulate_rows_n(Sk, dk + rows.kv_off(b, 0, hk), s.Hkv * D, D, ds_t.data(), Sq,
                            q + rows.q_off(b, 0, h), q_stride, Sq, first_head);
        }
      }
  }
}

}  // namespace

template <class T>
void attention_forward(const AttentionShape& s, const T* q, const T* k, const T* v,
                       const int32_t* key_mask, T* out, T* lse) {
  if (s.Sq * s.Sk <= kWholeRowMaxScores) {
    attention_forward_rows(s, q, k, v, key_mask, out, lse);
    return;
  }
  Rows rows{s};
  int64_t group = s.H / s.Hkv;
  int64_t q_blocks = (s.Sq + kBlockQ - 1) / kBlockQ;
  const T scale = static_cast<T>(s.scale);
#pragma omp parallel for collapse(3) \
    schedule(dynamic) if (s.B * s.H * s.Sq * s.Sk * s.D > kParallelMinElements)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t qb = 0; qb < q_blocks; ++qb) {
        int64_t hk = h / group;
        int64_t i0 = qb * kBlockQ, i1 = std::min(s.Sq, i0 + kBlockQ);
        T scores[kBlockQ][kBlockK];                 // (BLOCK_Q, BLOCK_K)
        std::vector<T> k_t(s.D * kBlockK);          // (D, BLOCK_K): K tile, transposed
        std::vector<T> acc((i1 - i0) * s.D, T(0));  // (BLOCK_Q, D)
        T row_max[kBlockQ], row_sum[kBlockQ];
        for (int64_t i = 0; i < i1 - i0; ++i) row_max[i] = -INFINITY, row_sum[i] = 0;
        int64_t kend = key_end(s, i1);
        for (int64_t j0 = 0; j0 < kend; j0 += kBlockK) {
          int64_t j1 = std::min(kend, j0 + kBlockK), nk = j1 - j0;
          // Transposing the K tile turns the score loop into independent
          // multiply-adds along j, which vectorise without reassociation.
          for (int64_t j = j0; j < j1; ++j) {
            const T* kj = k + rows.kv_off(b, j, hk);
            for (int64_t d = 0; d < s.D; ++d) k_t[d * kBlockK + (j - j0)] = kj[d];
          }
          T key_bias[kBlockK];
          key_padding_bias(s, key_mask, b, j0, nk, key_bias);
          for (int64_t i = i0; i < i1; ++i) {
            const T* qi = q + rows.q_off(b, i, h);
            T* sc = scores[i - i0];
            for (int64_t j = 0; j < nk; ++j) sc[j] = T(0);
            accumulate_rows(sc, nk, qi, k_t.data(), kBlockK, s.D);
            T bias[kBlockK], p[kBlockK];
            visibility_bias(s, key_bias, i, j0, nk, bias);
            T tile_max = -INFINITY;
            for (int64_t j = 0; j < nk; ++j) sc[j] = sc[j] * scale + bias[j];
            for (int64_t j = 0; j < nk; ++j) tile_max = std::max(tile_max, sc[j]);
            if (tile_max == -INFINITY) continue;  // nothing visible in this tile
            // Online softmax: rescale what was accumulated under the old max.
            T new_max = std::max(row_max[i - i0], tile_max);
            T correction = k_exp(row_max[i - i0] - new_max);
            for (int64_t j = 0; j < nk; ++j) p[j] = k_exp(sc[j] - new_max);  // hidden keys: 0
            T* __restrict ai = acc.data() + (i - i0) * s.D;
            T tile_sum = 0;
            for (int64_t j = 0; j < nk; ++j) tile_sum += p[j];
            row_sum[i - i0] = row_sum[i - i0] * correction + tile_sum;
            for (int64_t d = 0; d < s.D; ++d) ai[d] *= correction;
            accumulate_rows(ai, s.D, p, v + rows.kv_off(b, j0, hk), s.Hkv * s.D, nk);
            row_max[i - i0] = new_max;
          }
        }
        for (int64_t i = i0; i < i1; ++i) {
          T* oi = out + rows.q_off(b, i, h);
          const T* ai = acc.data() + (i - i0) * s.D;
          T l = row_sum[i - i0];
          if (l == T(0)) {
            std::fill(oi, oi + s.D, T(0));
            lse[rows.lse_off(b, h, i)] = static_cast<T>(-INFINITY);
          } else {
            for (int64_t d = 0; d < s.D; ++d) oi[d] = ai[d] / l;
            lse[rows.lse_off(b, h, i)] = row_max[i - i0] + std::log(l);
          }
        }
      }
}

template <class T>
void attention_backward(const AttentionShape& s, const T* q, const T* k, const T* v,
                        const int32_t* key_mask, const T* out, const T* lse, const T* dout, T* dq,
                        T* dk, T* dv) {
  if (s.Sq * s.Sk <= kWholeRowMaxScores) {
    attention_backward_rows(s, q, k, v, key_mask, out, lse, dout, dq, dk, dv);
    return;
  }
  Rows rows{s};
  int64_t group = s.H / s.Hkv;
  const T scale = static_cast<T>(s.scale);
  // delta[b,h,i] = dout_i . out_i, the softmax backward's row term.
  std::vector<T> delta(s.B * s.H * s.Sq);
#pragma omp parallel for collapse(2) \
    schedule(static) if (s.B * s.H * s.Sq * s.D > kParallelMinElements)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t i = 0; i < s.Sq; ++i)
      for (int64_t h = 0; h < s.H; ++h)
        delta[rows.lse_off(b, h, i)] =
            dot(dout + rows.q_off(b, i, h), out + rows.q_off(b, i, h), s.D);

  // Both passes recompute scores tile by tile. Transposed (D, BLOCK) copies of
  // the other side's rows make the score and dP loops independent
  // multiply-adds along the tile, which vectorise without reassociation.

  // Pass 1: dq, one block of query rows against every key tile.
  int64_t q_blocks = (s.Sq + kBlockQ - 1) / kBlockQ;
#pragma omp parallel for collapse(3) \
    schedule(dynamic) if (s.B * s.H * s.Sq * s.Sk * s.D > kParallelMinElements)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t qb = 0; qb < q_blocks; ++qb) {
        int64_t hk = h / group;
        int64_t i0 = qb * kBlockQ, i1 = std::min(s.Sq, i0 + kBlockQ);
        std::vector<T> k_t(s.D * kBlockK), v_t(s.D * kBlockK);  // (D, BLOCK_K)
        T sc[kBlockK], dp[kBlockK];
        for (int64_t i = i0; i < i1; ++i)
          std::fill(dq + rows.q_off(b, i, h), dq + rows.q_off(b, i, h) + s.D, T(0));
        int64_t kend = key_end(s, i1);
        for (int64_t j0 = 0; j0 < kend; j0 += kBlockK) {
          int64_t j1 = std::min(kend, j0 + kBlockK), nk = j1 - j0;
          for (int64_t j = j0; j < j1; ++j) {
            const T* kj = k + rows.kv_off(b, j, hk);
            const T* vj = v + rows.kv_off(b, j, hk);
            for (int64_t d = 0; d < s.D; ++d) {
              k_t[d * kBlockK + (j - j0)] = kj[d];
              v_t[d * kBlockK + (j - j0)] = vj[d];
            }
          }
          T key_bias[kBlockK];
          key_padding_bias(s, key_mask, b, j0, nk, key_bias);
          for (int64_t i = i0; i < i1; ++i) {
            T l = lse[rows.lse_off(b, h, i)];
            if (l == -INFINITY) continue;  // the row sees no key: zero gradient
            const T* qi = q + rows.q_off(b, i, h);
            const T* doi = dout + rows.q_off(b, i, h);
            for (int64_t j = 0; j < nk; ++j) sc[j] = T(0), dp[j] = T(0);
            accumulate_rows(sc, nk, qi, k_t.data(), kBlockK, s.D);
            accumulate_rows(dp, nk, doi, v_t.data(), kBlockK, s.D);
            T di = delta[rows.lse_off(b, h, i)];
            T* __restrict dqi = dq + rows.q_off(b, i, h);
            T bias[kBlockK], ds[kBlockK];
            visibility_bias(s, key_bias, i, j0, nk, bias);
            // Hidden keys get p = exp(-inf) = 0, so ds = 0 (vectorised).
            for (int64_t j = 0; j < nk; ++j)
              ds[j] = k_exp(sc[j] * scale - l + bias[j]) * (dp[j] - di) * scale;
            accumulate_rows(dqi, s.D, ds, k + rows.kv_off(b, j0, hk), s.Hkv * s.D, nk);
          }
        }
      }

  // Pass 2: dk and dv, one block of key rows against every query tile of the
  // query heads that share their kv head.
  int64_t k_blocks = (s.Sk + kBlockQ - 1) / kBlockQ;
#pragma omp parallel for collapse(3) \
    schedule(dynamic) if (s.B * s.H * s.Sq * s.Sk * s.D > kParallelMinElements)
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t hk = 0; hk < s.Hkv; ++hk)
      for (int64_t kb = 0; kb < k_blocks; ++kb) {
        int64_t j0 = kb * kBlockQ, j1 = std::min(s.Sk, j0 + kBlockQ);
        std::vector<T> q_t(s.D * kBlockK), do_t(s.D * kBlockK);  // (D, BLOCK_Q tile)
        T sc[kBlockK], dp[kBlockK];
        for (int64_t j = j0; j < j1; ++j) {
          std::fill(dk + rows.kv_off(b, j, hk), dk + rows.kv_off(b, j, hk) + s.D, T(0));
          std::fill(dv + rows.kv_off(b, j, hk), dv + rows.kv_off(b, j, hk) + s.D, T(0));
        }
        // Causal: queries before this one cannot see any key of the block.
        int64_t i_start = s.causal ? std::max<int64_t>(0, j0 - (s.Sk - s.Sq)) : 0;
        for (int64_t h = hk * group; h < (hk + 1) * group; ++h)
          for (int64_t i0 = i_start; i0 < s.Sq; i0 += kBlockK) {
            int64_t i1 = std::min(s.Sq, i0 + kBlockK), nq = i1 - i0;
            // Per query of the tile: its lse (+inf for a row that sees no
            // key, so its p is exp(-inf) = 0) and its delta.
            T lse_t[kBlockK], delta_t[kBlockK];
            for (int64_t i = i0; i < i1; ++i) {
              const T* qi = q + rows.q_off(b, i, h);
              const T* doi = dout + rows.q_off(b, i, h);
              for (int64_t d = 0; d < s.D; ++d) {
                q_t[d * kBlockK + (i - i0)] = qi[d];
                do_t[d * kBlockK + (i - i0)] = doi[d];
              }
              T l = lse[rows.lse_off(b, h, i)];
              lse_t[i - i0] = l == -INFINITY ? static_cast<T>(INFINITY) : l;
              delta_t[i - i0] = delta[rows.lse_off(b, h, i)];
            }
            for (int64_t j = j0; j < j1; ++j) {
              if (key_mask && key_mask[b * s.Sk + j] == 0) continue;  // a padding key: zero grads
              const T* kj = k + rows.kv_off(b, j, hk);
              const T* vj = v + rows.kv_off(b, j, hk);
              for (int64_t i = 0; i < nq; ++i) sc[i] = T(0), dp[i] = T(0);
              accumulate_rows(sc, nq, kj, q_t.data(), kBlockK, s.D);
              accumulate_rows(dp, nq, vj, do_t.data(), kBlockK, s.D);
              T* __restrict dkj = dk + rows.kv_off(b, j, hk);
              T* __restrict dvj = dv + rows.kv_off(b, j, hk);
              // Causal: local queries before `first` cannot see key j.
              int64_t first = s.causal ? j - (s.Sk - s.Sq) - i0 : 0;
              T p[kBlockK], ds[kBlockK];
              for (int64_t i = 0; i < nq; ++i) {
                T e = k_exp(sc[i] * scale - lse_t[i]);
                p[i] = i < first ? T(0) : e;
              }
              for (int64_t i = 0; i < nq; ++i) ds[i] = p[i] * (dp[i] - delta_t[i]) * scale;
              int64_t start = std::max<int64_t>(first, 0);
              if (start < nq) {
                accumulate_rows(dvj, s.D, p + start, dout + rows.q_off(b, i0 + start, h), s.H * s.D,
                                nq - start);
                accumulate_rows(dkj, s.D, ds + start, q + rows.q_off(b, i0 + start, h), s.H * s.D,
                                nq - start);
              }
            }
          }
      }
}

template <class T>
void attention_forward_naive(const AttentionShape& s, const T* q, const T* k, const T* v,
                             const int32_t* key_mask, T* out) {
  Rows rows{s};
  int64_t group = s.H / s.Hkv;
  std::vector<double> scores(s.Sq * s.Sk);  // the full S x S matrix, on purpose
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h) {
      int64_t hk = h / group;
      for (int64_t i = 0; i < s.Sq; ++i)
        for (int64_t j = 0; j < s.Sk; ++j) {
          double acc = 0;
          const T* qi = q + rows.q_off(b, i, h);
          const T* kj = k + rows.kv_off(b, j, hk);
          for (int64_t d = 0; d < s.D; ++d) acc += static_cast<double>(qi[d]) * kj[d];
          scores[i * s.Sk + j] = key_visible(s, key_mask, b, i, j) ? acc * s.scale : -INFINITY;
        }
      for (int64_t i = 0; i < s.Sq; ++i) {
        double* row = &scores[i * s.Sk];
        double m = -INFINITY;
        for (int64_t j = 0; j < s.Sk; ++j) m = std::max(m, row[j]);
        T* oi = out + rows.q_off(b, i, h);
        if (m == -INFINITY) {
          std::fill(oi, oi + s.D, T(0));
          continue;
        }
        double sum = 0;
        for (int64_t j = 0; j < s.Sk; ++j) sum += (row[j] = std::exp(row[j] - m));
        for (int64_t d = 0; d < s.D; ++d) {
          double acc = 0;
          for (int64_t j = 0; j < s.Sk; ++j) acc += row[j] * v[rows.kv_off(b, j, hk) + d];
          oi[d] = static_cast<T>(acc / sum);
        }
      }
    }
}

namespace {

// q . k by eight lanes over d, summed ((0+1)+(2+3))+((4+5)+(6+7)): the
// decode kernels' dot for head sizes that are not a multiple of 8.
inline float dot_lanes8(const float* q, const float* k, int64_t D) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= D; d += 8)
    for (int u = 0; u < 8; ++u) lane[u] += q[d + u] * k[d + u];
  for (; d < D; ++d) lane[d & 7] += q[d] * k[d];
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// Dots of query rows q_rows[0..nq) (each D floats, at q + i * q_stride)
// against keys j < n (key j at k_row0 + j * kv_stride), scaled, masked keys
// -inf, query i's scores to scores + i * score_stride. Key blocks of 8 are the
// outer loop, so each block is read once and reused from L1 by every query;
// for D % 8 == 0 every dot goes through dot8_rows (a partial last block
// repeats its last key), otherwise through dot_lanes8. Each dot's value is the
// same whatever the block, the query count or the neighbouring keys, so the
// decode kernels agree bit for bit. When v_row0 is given, the matching value
// rows are prefetched for the P.V pass.
void score_keys(const float* q, int64_t q_stride, int64_t nq, const float* k_row0,
                const float* v_row0, int64_t kv_stride, const int32_t* mask, int64_t n, int64_t D,
                float scale, float* scores, int64_t score_stride) {
  for (int64_t j0 = 0; j0 < n; j0 += 8) {
    const int64_t m = std::min<int64_t>(8, n - j0);
    if (v_row0)
      for (int64_t r = 0; r < m; ++r)
        for (int64_t d = 0; d < D; d += 16) __builtin_prefetch(v_row0 + (j0 + r) * kv_stride + d);
    const float* rows[8];
    for (int64_t r = 0; r < 8; ++r) rows[r] = k_row0 + (j0 + std::min(r, m - 1)) * kv_stride;
    for (int64_t i = 0; i < nq; ++i) {
      const float* qi = q + i * q_stride;
      float* si = scores + i * score_stride + j0;
      float dots[8];
      if (D % 8 == 0) {
        dot8_rows(qi, rows, D, dots);
      } else {
        for (int64_t r = 0; r < m; ++r) dots[r] = dot_lanes8(qi, rows[r], D);
      }
      for (int64_t r = 0; r < m; ++r) si[r] = mask[j0 + r] ? dots[r] * scale : -INFINITY;
    }
  }
}

// Softmax weights of scores[0..n) into probs (fast_exp; masked: 0), the
// normaliser summed in eight double lanes (sum_exp); returns 1 / normaliser,
// or 0 when every key is masked.
float softmax_weights(const float* scores, int64_t n, float* probs) {
  const float mx = max_lanes8(scores, n);
  if (mx == -INFINITY) return 0.0f;
  return static_cast<float>(1.0 / sum_exp(scores, n, mx, probs));
}

}  // namespace

// The decode step's attention: scores by 8-lane dot products (vectorised
// without reassociation), exp over the whole score row (vectorised), P.V with
// the accumulators in registers. Scratch is per thread, allocated once per
// call, never per (row, head).
void decode_attention(const float* q, const float* k_cache, const float* v_cache,
                      const int32_t* key_mask, float* out, int64_t B, int64_t H, int64_t Hkv,
                      int64_t D, int64_t capacity, int64_t length, double scale) {
  const int64_t group = H / Hkv;
  const float scale_f = static_cast<float>(scale);
  const int64_t work = B * H * length * D;
#pragma omp parallel if (work > (1 << 18))
  {
    std::vector<float> scores(length), probs(length), acc(D);
#pragma omp for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t hk = h / group;
        const int64_t kv_stride = Hkv * D;
        const float* k_row0 = k_cache + (b * capacity * Hkv + hk) * D;  // slot 0 of this kv head
        const float* v_row0 = v_cache + (b * capacity * Hkv + hk) * D;
        score_keys(q + (b * H + h) * D, D, 1, k_row0, v_row0, kv_stride, key_mask + b * capacity,
                   length, D, scale_f, scores.data(), length);
        float* oi = out + (b * H + h) * D;
        const float inv = softmax_weights(scores.data(), length, probs.data());
        if (inv == 0.0f) {  // no visible key: zeros, like attention_forward
          std::fill(oi, oi + D, 0.0f);
          continue;
        }
        std::fill(acc.begin(), acc.end(), 0.0f);
        accumulate_rows(acc.data(), D, probs.data(), v_row0, kv_stride, length);
        for (int64_t d = 0; d < D; ++d) oi[d] = acc[d] * inv;
      }
  }
}

// One work item per (prompt, kv head): its queries (every row of the prompt x
// every query head of the kv head's group) score the shared prefix block by
// block (score_keys: the (queries, D) x (D, prefix) product reading each key
// once), then each query its own row's slots into the same score row, then
// one softmax over both parts and P.V over prefix rows then own rows, all in
// decode_attention's order (see the header).
void decode_attention_shared_prefix(const PrefixDecodeShape& s, const float* q,
                                    const float* prefix_k, const float* prefix_v,
                                    const int32_t* prefix_mask, const int64_t* prefix_row,
                                    const float* k_cache, const float* v_cache,
                                    const int32_t* key_mask, float* out) {
  const int64_t B = s.B, H = s.H, Hkv = s.Hkv, D = s.D, P = s.prefixes;
  const int64_t Lp = s.prefix_length, L = s.length, total = Lp + L;
  const int64_t group = H / Hkv, kv_stride = Hkv * D;
  const float scale_f = static_cast<float>(s.scale);
  // Rows of each prompt in row order: members[first[p] .. first[p + 1]).
  std::vector<int64_t> first(P + 1, 0), members(B);
  for (int64_t b = 0; b < B; ++b) ++first[prefix_row[b] + 1];
  for (int64_t p = 0; p < P; ++p) first[p + 1] += first[p];
  int64_t largest = 0;
  for (int64_t p = 0; p < P; ++p) largest = std::max(largest, first[p + 1] - first[p]);
  {
    std::vector<int64_t> fill(first.begin(), first.end() - 1);
    for (int64_t b = 0; b < B; ++b) members[fill[prefix_row[b]]++] = b;
  }
  const int64_t work = (P * Lp + B * L) * H * D;
#pragma omp parallel if (work > (1 << 18))
  {
    // Queries of one item: (member m, head g) at row m * group + g.
    const int64_t nq_max = largest * group;
    std::vector<float> queries(nq_max * D), scores(nq_max * total), probs(total), acc(D);
#pragma omp for collapse(2) schedule(static)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t hk = 0; hk < Hkv; ++hk) {
        const int64_t rows = first[p + 1] - first[p], nq = rows * group;
        if (rows == 0) continue;
        const int64_t* mine = members.data() + first[p];
        for (int64_t m = 0; m < rows; ++m)
          std::memcpy(queries.data() + m * group * D, q + (mine[m] * H + hk * group) * D,
                      group * D * sizeof(float));
        // (No pointer arithmetic on a part that is empty: its buffers may be null.)
        const float* pk_row0 = Lp > 0 ? prefix_k + (p * s.prefix_capacity * Hkv + hk) * D : nullptr;
        const float* pv_row0 = Lp > 0 ? prefix_v + (p * s.prefix_capacity * Hkv + hk) * D : nullptr;
        if (Lp > 0)
          score_keys(queries.data(), D, nq, pk_row0, pv_row0, kv_stride,
                     prefix_mask + p * s.prefix_capacity, Lp, D, scale_f, scores.data(), total);
        for (int64_t m = 0; m < rows; ++m) {
          const int64_t b = mine[m];
          const float* k_row0 = L > 0 ? k_cache + (b * s.capacity * Hkv + hk) * D : nullptr;
          const float* v_row0 = L > 0 ? v_cache + (b * s.capacity * Hkv + hk) * D : nullptr;
          if (L > 0)
            score_keys(queries.data() + m * group * D, D, group, k_row0, v_row0, kv_stride,
                       key_mask + b * s.capacity, L, D, scale_f,
                       scores.data() + m * group * total + Lp, total);
          for (int64_t g = 0; g < group; ++g) {
            const int64_t h = hk * group + g;
            float* oi = out + (b * H + h) * D;
            const float inv =
                softmax_weights(scores.data() + (m * group + g) * total, total, probs.data());
            if (inv == 0.0f) {
              std::fill(oi, oi + D, 0.0f);
              continue;
            }
            std::fill(acc.begin(), acc.end(), 0.0f);
            if (Lp > 0) accumulate_rows(acc.data(), D, probs.data(), pv_row0, kv_stride, Lp);
            if (L > 0) accumulate_rows(acc.data(), D, probs.data() + Lp, v_row0, kv_stride, L);
            for (int64_t d = 0; d < D; ++d) oi[d] = acc[d] * inv;
          }
        }
      }
  }
}

#define INSTANTIATE(T)                                                                           \
  template void attention_forward<T>(const AttentionShape&, const T*, const T*, const T*,        \
                                     const int32_t*, T*, T*);                                    \
  template void attention_backward<T>(const AttentionShape&, const T*, const T*, const T*,       \
                                      const int32_t*, const T*, const T*, const T*, T*, T*, T*); \
  template void attention_forward_naive<T>(const AttentionShape&, const T*, const T*, const T*,  \
                                           const int32_t*, T*);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE

}  // namespace visplay::kernels::cpu
