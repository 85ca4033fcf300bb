// decode_attention_shared_prefix (the decode step when the G samples of a
// prompt share its cached prefix) against a float64 reference over the
// concatenated keys, bit for bit against decode_attention on private copies of
// the prefix, and across thread counts. Inputs are seeded random values;
// outputs are NaN-poisoned; slots past the written lengths hold NaN (with
// their mask set) so a kernel that reads them fails.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "tests/kernels/reference.h"

using namespace visplay::kernels::cpu;
using visplay::test::poisoned;
using visplay::test::random_floats;
using visplay::test::random_ints;

namespace {

struct Case {
  int64_t rows_per_prompt, prompts, prefix_length, prefix_capacity, length, capacity, H, Hkv, D;
  bool interleave;  // rows of one prompt not adjacent (b -> prompt b % P)
  std::string name() const {
    return "G" + std::to_string(rows_per_prompt) + " P" + std::to_string(prompts) + " prefix " +
           std::to_string(prefix_length) + " suffix " + std::to_string(length) + " H" +
           std::to_string(H) + "/" + std::to_string(Hkv) + " D" + std::to_string(D);
  }
};

// A random problem: left padding in each prompt's prefix (prompt p has p
// padding slots), one prompt entirely padding when `empty_prompt`, an own
// slot masked here and there, NaN in every unwritten slot.
struct Problem {
  PrefixDecodeShape s;
  std::vector<float> q, pk, pv, k, v;
  std::vector<int32_t> pmask, mask;
  std::vector<int64_t> prefix_row;

  Problem(const Case& c, uint64_t seed, bool empty_prompt) {
    const int64_t B = c.rows_per_prompt * c.prompts;
    s = PrefixDecodeShape{B,
                          c.H,
                          c.Hkv,
                          c.D,
                          c.prompts,
                          c.prefix_capacity,
                          c.prefix_length,
                          c.capacity,
                          c.length,
                          1.0 / std::sqrt(double(c.D))};
    const int64_t row = c.Hkv * c.D;
    q = random_floats(B * c.H * c.D, seed, -2, 2);
    pk = random_floats(c.prompts * c.prefix_capacity * row, seed + 1, -2, 2);
    pv = random_floats(c.prompts * c.prefix_capacity * row, seed + 2);
    k = random_floats(B * c.capacity * row, seed + 3, -2, 2);
    v = random_floats(B * c.capacity * row, seed + 4);
    pmask.assign(c.prompts * c.prefix_capacity, 1);
    for (int64_t p = 0; p < c.prompts; ++p) {
      for (int64_t j = 0; j < std::min(p, c.prefix_length); ++j)
        pmask[p * c.prefix_capacity + j] = 0;
      if (empty_prompt && p == c.prompts - 1)
        for (int64_t j = 0; j < c.prefix_capacity; ++j) pmask[p * c.prefix_capacity + j] = 0;
      for (int64_t j = c.prefix_length; j < c.prefix_capacity; ++j)
        for (int64_t d = 0; d < row; ++d)
          pk[(p * c.prefix_capacity + j) * row + d] = pv[(p * c.prefix_capacity + j) * row + d] =
              NAN;
    }
    mask.assign(B * c.capacity, 1);
    std::vector<int> drop = random_ints(B * c.capacity, seed + 5, 0, 9);
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t j = 0; j < c.length; ++j)
        mask[b * c.capacity + j] = drop[b * c.capacity + j] != 0;
      for (int64_t j = c.length; j < c.capacity; ++j)
        for (int64_t d = 0; d < row; ++d)
          k[(b * c.capacity + j) * row + d] = v[(b * c.capacity + j) * row + d] = NAN;
      prefix_row.push_back(c.interleave ? b % c.prompts : b / c.rows_per_prompt);
    }
    if (empty_prompt)  // the last prompt's rows see nothing at all: zeros expected
      for (int64_t b = 0; b < B; ++b)
        if (prefix_row[b] == c.prompts - 1)
          for (int64_t j = 0; j < c.capacity; ++j) mask[b * c.capacity + j] = 0;
  }

  std::vector<float> run() const {
    std::vector<float> out = poisoned(q.size());
    decode_attention_shared_prefix(s, q.data(), pk.data(), pv.data(), pmask.data(),
                                   prefix_row.data(), k.data(), v.data(), mask.data(), out.data());
    return out;
  }

  // float64 attention of each (row, head) over its prompt's prefix slots then its own slots.
  std::vector<double> reference() const {
    const int64_t row = s.Hkv * s.D, group = s.H / s.Hkv;
    std::vector<double> ref(q.size(), 0.0);
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h) {
        const int64_t hk = h / group, p = prefix_row[b];
        std::vector<const float*> keys, values;
        for (int64_t j = 0; j < s.prefix_length; ++j)
          if (pmask[p * s.prefix_capacity + j]) {
            keys.push_back(&pk[(p * s.prefix_capacity + j) * row + hk * s.D]);
            values.push_back(&pv[(p * s.prefix_capacity + j) * row + hk * s.D]);
          }
        for (int64_t j = 0; j < s.length; ++j)
          if (mask[b * s.capacity + j]) {
            keys.push_back(&k[(b * s.capacity + j) * row + hk * s.D]);
            values.push_back(&v[(b * s.capacity + j) * row + hk * s.D]);
          }
        if (keys.empty()) continue;
        const float* qi = &q[(b * s.H + h) * s.D];
        std::vector<double> sc(keys.size());
        double m = -INFINITY, z = 0;
        for (size_t j = 0; j < keys.size(); ++j) {
          double dot = 0;
          for (int64_t d = 0; d < s.D; ++d) dot += double(qi[d]) * keys[j][d];
          sc[j] = dot * s.scale, m = std::max(m, sc[j]);
        }
        for (double& x : sc) z += (x = std::exp(x - m));
        for (size_t j = 0; j < keys.size(); ++j)
          for (int64_t d = 0; d < s.D; ++d)
            ref[(b * s.H + h) * s.D + d] += sc[j] / z * values[j][d];
      }
    return ref;
  }

  // The same problem with a private copy of the prefix in front of each row's
  // own slots, through decode_attention.
  std::vector<float> run_private_copies() const {
    const int64_t row = s.Hkv * s.D, cap = s.prefix_length + s.length;
    std::vector<float> kc(s.B * cap * row), vc(s.B * cap * row);
    std::vector<int32_t> mc(s.B * cap);
    for (int64_t b = 0; b < s.B; ++b) {
      const int64_t p = prefix_row[b];
      for (int64_t j = 0; j < s.prefix_length; ++j) {
        std::memcpy(&kc[(b * cap + j) * row], &pk[(p * s.prefix_capacity + j) * row], row * 4);
        std::memcpy(&vc[(b * cap + j) * row], &pv[(p * s.prefix_capacity + j) * row], row * 4);
        mc[b * cap + j] = pmask[p * s.prefix_capacity + j];
      }
      for (int64_t j = 0; j < s.length; ++j) {
        std::memcpy(&kc[(b * cap + s.prefix_length + j) * row], &k[(b * s.capacity + j) * row],
                    row * 4);
        std::memcpy(&vc[(b * cap + s.prefix_length + j) * row], &v[(b * s.capacity + j) * row],
                    row * 4);
        mc[b * cap + s.prefix_length + j] = mask[b * s.capacity + j];
      }
    }
    std::vector<float> out = poisoned(q.size());
    decode_attention(q.data(), kc.data(), vc.data(), mc.data(), out.data(), s.B, s.H, s.Hkv, s.D,
                     cap, cap, s.scale);
    return out;
  }
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // G, P, prefix, prefix cap, suffix, cap, H, Hkv, D, interleave
      {8, 3, 25, 27, 7, 31, 4, 2, 32, false},   // the demo's shape, mid-generation
      {8, 2, 25, 25, 0, 31, 4, 2, 32, false},   // first decode step: no own slot yet
      {3, 2, 0, 4, 9, 12, 4, 2, 32, false},     // no shared prefix at all
      {5, 3, 17, 20, 11, 16, 6, 3, 16, true},   // rows of a prompt interleaved
      {2, 2, 9, 9, 5, 6, 2, 2, 12, false},      // D not a multiple of 8, no GQA
      {4, 2, 13, 16, 3, 8, 4, 1, 80, true},     // D > 64 (partial key blocks via scratch)
      {1, 4, 30, 30, 30, 32, 8, 2, 64, false},  // one sample per prompt
  };
  return all;
}

}  // namespace

TEST(SharedPrefixDecode, MatchesFloat64Reference) {
  uint64_t seed = 100;
  for (const Case& c : cases())
    for (bool empty_prompt : {false, true}) {
      SCOPED_TRACE(c.name() + (empty_prompt ? " (last prompt fully masked)" : ""));
      Problem pr(c, seed += 10, empty_prompt);
      std::vector<float> out = pr.run();
      std::vector<double> ref = pr.reference();
      for (size_t i = 0; i < out.size(); ++i) {
        const double err = std::fabs(out[i] - ref[i]);
        ASSERT_TRUE(err <= 2e-6 + 1e-5 * std::fabs(ref[i]))
            << "element " << i << ": got " << out[i] << ", reference " << ref[i];
      }
      if (empty_prompt)
        for (int64_t b = 0; b < pr.s.B; ++b)
          if (pr.prefix_row[b] == c.prompts - 1)
            for (int64_t i = 0; i < pr.s.H * pr.s.D; ++i)
              ASSERT_EQ(out[b * pr.s.H * pr.s.D + i], 0.0f);
    }
}

// Sharing the prefix must not change a single bit of the decode step: the
// model-level generation tests rely on it.
TEST(SharedPrefixDecode, BitIdenticalToPrivatePrefixCopies) {
  uint64_t seed = 500;
  for (const Case& c : cases()) {
    SCOPED_TRACE(c.name());
    Problem pr(c, seed += 10, false);
    std::vector<float> shared = pr.run(), copies = pr.run_private_copies();
    ASSERT_EQ(0, std::memcmp(shared.data(), copies.data(), shared.size() * sizeof(float)));
  }
}

// Large enough to take the OpenMP path; outputs are split across threads, never sums.
TEST(SharedPrefixDecode, BitIdenticalAcrossThreadCounts) {
  Problem pr({16, 4, 100, 104, 60, 64, 8, 2, 64, true}, 900, false);
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  std::vector<float> one = pr.run();
  omp_set_num_threads(2);
  std::vector<float> two = pr.run();
  omp_set_num_threads(before);
  ASSERT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)));
  std::vector<double> ref = pr.reference();
  for (size_t i = 0; i < one.size(); ++i)
    ASSERT_NEAR(one[i], ref[i], 2e-6 + 1e-5 * std::fabs(ref[i])) << "element " << i;
}
