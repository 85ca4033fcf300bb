// The device decode step over a shared prompt prefix (kernels/cuda/attention.cu's
// decode_attention_shared_prefix) on the sim backend: against a float64 reference over the
// concatenated keys and against the cpu kernel (f32 caches, to f32 rounding: the device
// folds tiles of 32 keys with an online softmax, the cpu one softmax over the whole row),
// against the float64 reference of bf16-rounded caches, and bit for bit against itself on
// private copies of the prefix (prefix_length 0, the prompt in each row's own slots), which is
// how an unshared device cache decodes. Inputs are seeded random values; outputs are
// NaN-poisoned; slots past the written lengths hold NaN so a kernel that reads them fails;
// each case runs under several barrier-release orders (simt seeds).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/attention.h"
#include "kernels/simt/simt.h"
#include "tests/kernels/reference.h"
#include "visplay/kernels/attention.h"

namespace {

namespace sim = visplay::kernels::sim;
namespace cpu = visplay::kernels::cpu;
using visplay::test::poisoned;
using visplay::test::random_floats;
using visplay::test::random_ints;

struct Case {
  int rows_per_prompt, prompts, prefix_length, prefix_capacity, length, capacity, H, Hkv, D;
  bool interleave;  // rows of one prompt not adjacent (b -> prompt b % P)
  std::string name() const {
    return "G" + std::to_string(rows_per_prompt) + " P" + std::to_string(prompts) + " prefix " +
           std::to_string(prefix_length) + " own " + std::to_string(length) + " H" +
           std::to_string(H) + "/" + std::to_string(Hkv) + " D" + std::to_string(D);
  }
};

const std::vector<Case>& cases() {
  static const std::vector<Case> all = {
      // G, P, prefix, prefix cap, own, cap, H, Hkv, D, interleave
      {8, 3, 25, 27, 7, 31, 4, 2, 32, false},   // mid-generation, prefix < one tile
      {8, 2, 25, 25, 0, 31, 4, 2, 32, false},   // first decode step: no own slot yet
      {3, 2, 0, 4, 9, 12, 4, 2, 32, false},     // no shared prefix at all
      {5, 3, 17, 20, 11, 16, 6, 3, 16, true},   // rows of a prompt interleaved
      {2, 2, 9, 9, 5, 6, 2, 2, 12, false},      // D not a multiple of 8, no GQA
      {4, 2, 45, 48, 21, 24, 4, 1, 80, true},   // D 80 (3 dims per lane), tiles across parts
      {3, 2, 70, 72, 40, 45, 8, 2, 128, true},  // D 128, several tiles of each part, 2 blocks
      {1, 4, 30, 30, 30, 32, 8, 2, 64, false},  // one sample per prompt
  };
  return all;
}

uint16_t bf16_bits(float f) { return visplay::test::to_bf16(f); }
float bf16_value(float f) {
  uint32_t u = static_cast<uint32_t>(bf16_bits(f)) << 16;
  float out;
  std::memcpy(&out, &u, 4);
  return out;
}

// A random problem: prompt p has p left-padding slots, the last prompt is all padding
// (and its rows' own slots too: zeros expected) when `empty_prompt`, own slots masked here
// and there, NaN in every unwritten slot. With `bf16` the caches hold bf16-representable
// values (the reference and the f32 copies use them exactly).
struct Problem {
  Case c;
  int B = 0;
  std::vector<float> q, pk, pv, k, v;
  std::vector<int32_t> pmask, mask;
  std::vector<int64_t> prefix_row;

  Problem(const Case& cs, uint64_t seed, bool empty_prompt, bool bf16) : c(cs) {
    B = c.rows_per_prompt * c.prompts;
    const int row = c.Hkv * c.D;
    q = random_floats(size_t(B) * c.H * c.D, seed, -2, 2);
    pk = random_floats(size_t(c.prompts) * c.prefix_capacity * row, seed + 1, -2, 2);
    pv = random_floats(size_t(c.prompts) * c.prefix_capacity * row, seed + 2);
    k = random_floats(size_t(B) * c.capacity * row, seed + 3, -2, 2);
    v = random_floats(size_t(B) * c.capacity * row, seed + 4);
    if (bf16)
      for (std::vector<float>* t : {&pk, &pv, &k, &v})
        for (float& x : *t) x = bf16_value(x);
    pmask.assign(size_t(c.prompts) * c.prefix_capacity, 1);
    for (int p = 0; p < c.prompts; ++p) {
      for (int j = 0; j < std::min(p, c.prefix_length); ++j) pmask[p * c.prefix_capacity + j] = 0;
      if (empty_prompt && p == c.prompts - 1)
        for (int j = 0; j < c.prefix_capacity; ++j) pmask[p * c.prefix_capacity + j] = 0;
      for (int j = c.prefix_length; j < c.prefix_capacity; ++j)
        for (int d = 0; d < row; ++d)
          pk[(size_t(p) * c.prefix_capacity + j) * row + d] =
              pv[(size_t(p) * c.prefix_capacity + j) * row + d] = NAN;
    }
    mask.assign(size_t(B) * c.capacity, 1);
    std::vector<int> drop = random_ints(size_t(B) * c.capacity, seed + 5, 0, 9);
    for (int b = 0; b < B; ++b) {
      for (int j = 0; j < c.length; ++j) mask[b * c.capacity + j] = drop[b * c.capacity + j] != 0;
      for (int j = c.length; j < c.capacity; ++j)
        for (int d = 0; d < row; ++d)
          k[(size_t(b) * c.capacity + j) * row + d] = v[(size_t(b) * c.capacity + j) * row + d] =
              NAN;
      prefix_row.push_back(c.interleave ? b % c.prompts : b / c.rows_per_prompt);
    }
    if (empty_prompt)
      for (int b = 0; b < B; ++b)
        if (prefix_row[b] == c.prompts - 1)
          for (int j = 0; j < c.capacity; ++j) mask[b * c.capacity + j] = 0;
  }

  // The sim kernel on these caches: f32, or the same values as bf16 bits. Rows grouped by
  // prompt as the runtime groups them (row order within a prompt).
  static std::vector<float> run_sim(const sim::PrefixDecodeShape& s, const std::vector<float>& q,
                                    const std::vector<float>& pk, const std::vector<float>& pv,
                                    const std::vector<int32_t>& pmask,
                                    const std::vector<int64_t>& prefix_row,
                                    const std::vector<float>& k, const std::vector<float>& v,
                                    const std::vector<int32_t>& mask) {
    std::vector<int> first(s.prefixes + 1, 0), members(s.batch);
    for (int64_t r : prefix_row) ++first[r + 1];
    sim::PrefixDecodeShape shape = s;
    shape.max_rows = 0;
    for (int p = 0; p < s.prefixes; ++p) {
      shape.max_rows = std::max(shape.max_rows, first[p + 1]);
      first[p + 1] += first[p];
    }
    std::vector<int> fill(first.begin(), first.end() - 1);
    for (int b = 0; b < s.batch; ++b) members[fill[prefix_row[b]]++] = b;
    std::vector<float> out = poisoned(q.size());
    if (!s.kv_bf16) {
      sim::decode_attention_shared_prefix(shape, q.data(), pk.data(), pv.data(), pmask.data(),
                                          members.data(), first.data(), k.data(), v.data(),
                                          mask.data(), out.data(), nullptr);
      return out;
    }
    auto bits = [](const std::vector<float>& x) {
      std::vector<uint16_t> b(x.size());
      for (size_t i = 0; i < x.size(); ++i) b[i] = bf16_bits(x[i]);  // NaN stays NaN
      return b;
    };
    std::vector<uint16_t> pkb = bits(pk), pvb = bits(pv), kb = bits(k), vb = bits(v);
    sim::decode_attention_shared_prefix(shape, q.data(), pkb.data(), pvb.data(), pmask.data(),
                                        members.data(), first.data(), kb.data(), vb.data(),
                                        mask.data(), out.data(), nullptr);
    return out;
  }

  sim::PrefixDecodeShape shape(bool bf16) const {
    sim::PrefixDecodeShape s;
    s.batch = B, s.q_heads = c.H, s.kv_heads = c.Hkv, s.head_dim = c.D;
    s.prefixes = c.prompts, s.prefix_capacity = c.prefix_capacity;
    s.prefix_length = c.prefix_length, s.capacity = c.capacity, s.length = c.length;
    s.scale = static_cast<float>(1.0 / std::sqrt(double(c.D)));
    s.kv_bf16 = bf16;
    return s;
  }

  std::vector<float> run(bool bf16) const {
    return run_sim(shape(bf16), q, pk, pv, pmask, prefix_row, k, v, mask);
  }

  // The same problem with a private copy of the prefix in front of each row's own slots:
  // every row its own "prompt" with no prefix slot read.
  std::vector<float> run_private_copies(bool bf16) const {
    const int row = c.Hkv * c.D, cap = c.prefix_length + c.length;
    std::vector<float> kc(size_t(B) * cap * row), vc(kc.size());
    std::vector<int32_t> mc(size_t(B) * cap);
    std::vector<int64_t> own(B);
    for (int b = 0; b < B; ++b) {
      own[b] = b;
      const int64_t p = prefix_row[b];
      for (int j = 0; j < c.prefix_length; ++j) {
        std::memcpy(&kc[(size_t(b) * cap + j) * row], &pk[(p * c.prefix_capacity + j) * row],
                    row * 4);
        std::memcpy(&vc[(size_t(b) * cap + j) * row], &pv[(p * c.prefix_capacity + j) * row],
                    row * 4);
        mc[b * cap + j] = pmask[p * c.prefix_capacity + j];
      }
      for (int j = 0; j < c.length; ++j) {
        std::memcpy(&kc[(size_t(b) * cap + c.prefix_length + j) * row],
                    &k[(size_t(b) * c.capacity + j) * row], row * 4);
        std::memcpy(&vc[(size_t(b) * cap + c.prefix_length + j) * row],
                    &v[(size_t(b) * c.capacity + j) * row], row * 4);
        mc[b * cap + c.prefix_length + j] = mask[b * c.capacity + j];
      }
    }
    sim::PrefixDecodeShape s = shape(bf16);
    s.prefixes = B, s.prefix_capacity = cap, s.prefix_length = 0;
    s.capacity = cap, s.length = cap;
    return run_sim(s, q, kc, vc, mc, own, kc, vc, mc);
  }

  std::vector<float> run_cpu() const {
    cpu::PrefixDecodeShape s{B,
                             c.H,
                             c.Hkv,
                             c.D,
                             c.prompts,
                             c.prefix_capacity,
                             c.prefix_length,
                             c.capacity,
                             c.length,
                             1.0 / std::sqrt(double(c.D))};
    std::vector<float> out = poisoned(q.size());
    cpu::decode_attention_shared_prefix(s, q.data(), pk.data(), pv.data(), pmask.data(),
                                        prefix_row.data(), k.data(), v.data(), mask.data(),
                                        out.data());
    return out;
  }

  // float64 attention of each (row, head) over its prompt's prefix slots then its own slots.
  std::vector<double> reference() const {
    const int row = c.Hkv * c.D, group = c.H / c.Hkv;
    const double scale = double(static_cast<float>(1.0 / std::sqrt(double(c.D))));
    std::vector<double> ref(q.size(), 0.0);
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < c.H; ++h) {
        const int hk = h / group;
        const int64_t p = prefix_row[b];
        std::vector<const float*> keys, values;
        for (int j = 0; j < c.prefix_length; ++j)
          if (pmask[p * c.prefix_capacity + j]) {
            keys.push_back(&pk[(p * c.prefix_capacity + j) * row + hk * c.D]);
            values.push_back(&pv[(p * c.prefix_capacity + j) * row + hk * c.D]);
          }
        for (int j = 0; j < c.length; ++j)
          if (mask[b * c.capacity + j]) {
            keys.push_back(&k[(size_t(b) * c.capacity + j) * row + hk * c.D]);
            values.push_back(&v[(size_t(b) * c.capacity + j) * row + hk * c.D]);
          }
        if (keys.empty()) continue;
        const float* qi = &q[(size_t(b) * c.H + h) * c.D];
        std::vector<double> sc(keys.size());
        double m = -INFINITY, z = 0;
        for (size_t j = 0; j < keys.size(); ++j) {
          double dot = 0;
          for (int d = 0; d < c.D; ++d) dot += double(qi[d]) * keys[j][d];
          sc[j] = dot * scale, m = std::max(m, sc[j]);
        }
        for (double& x : sc) z += (x = std::exp(x - m));
        for (size_t j = 0; j < keys.size(); ++j)
          for (int d = 0; d < c.D; ++d)
            ref[(size_t(b) * c.H + h) * c.D + d] += sc[j] / z * values[j][d];
      }
    return ref;
  }
};

// max |got - want| over max |want|; infinite for a non-finite output.
double relative_error(const std::vector<float>& got, const std::vector<double>& want) {
  double err = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return INFINITY;
    err = std::max(err, std::fabs(got[i] - want[i]));
    scale = std::max(scale, std::fabs(want[i]));
  }
  return scale > 0 ? err / scale : err;
}

class DecodePrefixSim : public ::testing::TestWithParam<uint64_t> {
 protected:
  void SetUp() override { simt::set_seed(GetParam()); }
};

// f32 caches: the float64 reference to 2e-6 of the largest output (f32 dots of up to 128
// terms, an online softmax over up to 4 tiles), the cpu kernel to the same bound.
TEST_P(DecodePrefixSim, MatchesFloat64ReferenceAndCpuKernel) {
  uint64_t seed = 100;
  double worst_ref = 0, worst_cpu = 0;
  for (const Case& c : cases()) {
    Problem pb(c, seed++, /*empty_prompt=*/false, /*bf16=*/false);
    const std::vector<float> got = pb.run(false);
    const std::vector<double> want = pb.reference();
    const std::vector<float> cpu_out = pb.run_cpu();
    std::vector<double> cpu64(cpu_out.begin(), cpu_out.end());
    const double to_ref = relative_error(got, want), to_cpu = relative_error(got, cpu64);
    EXPECT_LT(to_ref, 2e-6) << c.name();
    EXPECT_LT(to_cpu, 2e-6) << c.name();
    worst_ref = std::max(worst_ref, to_ref), worst_cpu = std::max(worst_cpu, to_cpu);
  }
  std::printf(
      "[measured] sim shared-prefix decode: max relative error %.3g vs float64, %.3g vs "
      "the cpu kernel\n",
      worst_ref, worst_cpu);
}

// bf16 caches (the values the f32 problem rounds to): the same bound against the float64
// reference of the rounded values, which the kernel widens exactly.
TEST_P(DecodePrefixSim, Bf16CachesMatchFloat64Reference) {
  uint64_t seed = 300;
  for (const Case& c : cases()) {
    Problem pb(c, seed++, false, /*bf16=*/true);
    EXPECT_LT(relative_error(pb.run(true), pb.reference()), 2e-6) << c.name();
    // And the f32 caches holding the same values give the same result bit for bit.
    std::vector<float> a = pb.run(true), b = pb.run(false);
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << c.name();
  }
}

// Shared prefix vs private copies: the same keys in the same order, so the same tiles and
// folds, bit for bit (f32 and bf16 caches).
TEST_P(DecodePrefixSim, BitIdenticalToPrivatePrefixCopies) {
  uint64_t seed = 500;
  for (const Case& c : cases())
    for (bool bf16 : {false, true}) {
      Problem pb(c, seed++, false, bf16);
      std::vector<float> shared = pb.run(bf16), copies = pb.run_private_copies(bf16);
      EXPECT_EQ(std::memcmp(shared.data(), copies.data(), shared.size() * 4), 0)
          << c.name() << (bf16 ? " bf16" : " f32");
    }
}

// A prompt whose prefix is all padding and whose rows' own slots are all masked: those rows
// get zeros, the others are unaffected.
TEST_P(DecodePrefixSim, RowsWithoutVisibleKeysGetZeros) {
  uint64_t seed = 700;
  for (const Case& c : cases()) {
    if (c.prompts < 2) continue;
    Problem pb(c, seed++, /*empty_prompt=*/true, false);
    const std::vector<float> got = pb.run(false);
    EXPECT_LT(relative_error(got, pb.reference()), 2e-6) << c.name();
    for (int b = 0; b < pb.B; ++b) {
      if (pb.prefix_row[b] != c.prompts - 1) continue;
      for (int i = 0; i < c.H * c.D; ++i)
        ASSERT_EQ(got[size_t(b) * c.H * c.D + i], 0.0f) << c.name();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, DecodePrefixSim, ::testing::ValuesIn(visplay::test::sim_seeds()));

TEST(DecodePrefixSimErrors, UnsupportedShapesThrow) {
  sim::PrefixDecodeShape s;
  s.batch = 1, s.prefixes = 1, s.max_rows = 1, s.capacity = 4, s.length = 1;
  s.head_dim = 129;
  EXPECT_THROW(
      sim::decode_attention_shared_prefix(s, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                          nullptr, nullptr, nullptr, nullptr, nullptr),
      std::invalid_argument);
  s.head_dim = 64;
  s.q_heads = 3, s.kv_heads = 2;
  EXPECT_THROW(
      sim::decode_attention_shared_prefix(s, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                          nullptr, nullptr, nullptr, nullptr, nullptr),
      std::invalid_argument);
  s.q_heads = 2, s.kv_heads = 2, s.length = 5;  // more slots read than the cache has
  EXPECT_THROW(
      sim::decode_attention_shared_prefix(s, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                          nullptr, nullptr, nullptr, nullptr, nullptr),
      std::invalid_argument);
}

}  // namespace
