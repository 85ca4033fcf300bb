// The sampler: KV-cache decoding against full recomputation, determinism,
// truncation sets, stop tokens and independence from batch composition.
#include "model/sampler.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

#include "kernels/cpu/vec_math.h"
#include "runtime/random.h"
#include "tests/model/reference.h"
#include "tests/runtime/test_util.h"

namespace visplay {
namespace {

struct Fixture {
  VLM model{ref::tiny_vlm_config()};
  std::vector<PromptInput> prompts;
  Fixture() {
    ref::randomize(model, 3, 0.35);
    const VLMConfig& c = model.config();
    auto with_image = [&](std::vector<int64_t> before, std::vector<int64_t> after, uint64_t seed) {
      PromptInput p;
      p.ids = before;
      p.ids.push_back(c.vision_start_token_id);
      for (int64_t t = 0; t < c.vision.num_visual_tokens(); ++t)
        p.ids.push_back(c.image_pad_token_id);
      p.ids.push_back(c.vision_end_token_id);
      p.ids.insert(p.ids.end(), after.begin(), after.end());
      p.pixels = test::random_tensor({3, 16, 16}, seed, DType::f32, -2, 2);
      return p;
    };
    prompts.push_back(with_image({1, 2, 3}, {4, 5}, 10));
    prompts.push_back(PromptInput{{6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17}, Tensor()});
    prompts.push_back(with_image({}, {18}, 11));
  }
};

// log softmax of a logits row, in double.
double log_softmax_at(const std::vector<double>& row, int64_t token) {
  double mx = *std::max_element(row.begin(), row.end()), z = 0;
  for (double v : row) z += std::exp(v - mx);
  return row[token] - mx - std::log(z);
}

// Recomputes every generated token's distribution with the full forward (no
// cache, batch of one, no padding) and checks the sampler's log-probs (and,
// for greedy, its choices) token by token.
void expect_matches_full_recompute(const VLM& m, const PromptInput& prompt, const Generation& g,
                                   bool greedy) {
  std::vector<int64_t> ids = prompt.ids;
  ids.insert(ids.end(), g.tokens.begin(), g.tokens.end());
  ids.pop_back();  // the last token is never fed back
  int64_t S = ids.size(), V = m.config().decoder.vocab_size, P = prompt.ids.size();
  Tensor logits;
  {
    NoGradGuard ng;
    Tensor px = prompt.pixels.defined() ? prompt.pixels.unsqueeze(0) : Tensor();
    logits = m.logits({Tensor::from_vector(ids, {1, S}), Tensor(), px});
  }
  std::vector<double> all = logits.to_vector<double>();
  for (size_t t = 0; t < g.tokens.size(); ++t) {
    std::vector<double> row(all.begin() + (P - 1 + t) * V, all.begin() + (P + t) * V);
    EXPECT_NEAR(g.logprobs[t], log_softmax_at(row, g.tokens[t]), 2e-5) << "token " << t;
    EXPECT_NE(g.tokens[t], m.config().image_pad_token_id) << "the image pad is never sampled";
    if (greedy) {
      row[m.config().image_pad_token_id] = -INFINITY;
      EXPECT_EQ(g.tokens[t], std::max_element(row.begin(), row.end()) - row.begin())
          << "token " << t;
    }
  }
}

TEST(Sampler, KvCacheGenerationEqualsFullRecomputation) {
  Fixture f;
  for (bool greedy : {true, false}) {
    SamplingOptions opt;
    opt.greedy = greedy;
    opt.temperature = 1.3;
    opt.max_new_tokens = 12;
    // A few stop tokens end some sequences early, which also exercises the
    // cache compaction of finished rows.
    opt.stop_tokens = {20, 21, 22, 23};
    int64_t n = greedy ? 1 : 4;
    std::vector<Generation> out = generate(f.model, f.prompts, n, opt, derive_seeds(42, 3 * n));
    ASSERT_EQ(out.size(), static_cast<size_t>(3 * n));
    int stopped = 0, full = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      SCOPED_TRACE("sequence " + std::to_string(i) + (greedy ? " greedy" : " sampled"));
      EXPECT_EQ(out[i].prompt_index, static_cast<int64_t>(i) / n);
      ASSERT_FALSE(out[i].tokens.empty());
      ASSERT_EQ(out[i].tokens.size(), out[i].logprobs.size());
      stopped += out[i].stopped;
      full += out[i].tokens.size() == 12;
      expect_matches_full_recompute(f.model, f.prompts[out[i].prompt_index], out[i], greedy);
    }
    if (!greedy) {
      EXPECT_TRUE(stopped > 0 && full > 0) << "want both early stops and full-length sequences";
    }
  }
}

TEST(Sampler, GreedyIsDeterministicAndIgnoresSeeds) {
  Fixture f;
  SamplingOptions opt;
  opt.greedy = true;
  opt.max_new_tokens = 8;
  std::vector<Generation> a = generate(f.model, f.prompts, 2, opt, derive_seeds(1, 6));
  std::vector<Generation> b = generate(f.model, f.prompts, 2, opt, derive_seeds(2, 6));
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].tokens, b[i].tokens);
    EXPECT_EQ(a[i].logprobs, b[i].logprobs);
    EXPECT_EQ(a[i].tokens, a[i - i % 2].tokens);  // both samples of a prompt agree
  }
  // temperature 0 is greedy too.
  opt.greedy = false;
  opt.temperature = 0;
  std::vector<Generation> c = generate(f.model, f.prompts, 2, opt, derive_seeds(3, 6));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_EQ(a[i].tokens, c[i].tokens);
}

TEST(Sampler, SameSeedSameSamplesWhateverTheBatch) {
  Fixture f;
  SamplingOptions opt;
  opt.temperature = 1.5;
  opt.top_p = 0.95;
  opt.max_new_tokens = 10;
  std::vector<uint64_t> seeds = derive_seeds(9, 12);
  std::vector<Generation> batch = generate(f.model, f.prompts, 4, opt, seeds);
  // Prompt 0 alone (no padding, other batch size) with the same four seeds.
  std::vector<Generation> alone =
      generate(f.model, {f.prompts[0]}, 4, opt, {seeds.begin(), seeds.begin() + 4});
  // Prompt 2 with prompt 1 in front of it, and its samples in another order.
  PrefixState prefix = prefill(f.model, {f.prompts[1], f.prompts[2]});
  std::vector<Generation> mixed =
      sample_from(f.model, prefix, {1, 0, 1}, opt, {seeds[9], seeds[0], seeds[8]});
  int differing_samples = 0;
  for (int j = 0; j < 4; ++j) {
    EXPECT_EQ(alone[j].tokens, batch[j].tokens) << "sample " << j;
    EXPECT_TRUE(test::all_close(
        std::vector<double>(alone[j].logprobs.begin(), alone[j].logprobs.end()),
        std::vector<double>(batch[j].logprobs.begin(), batch[j].logprobs.end()), 1e-5, 1e-5));
    differing_samples += batch[j].tokens != batch[0].tokens;
  }
  EXPECT_GT(differing_samples, 0) << "different seeds should give different samples";
  EXPECT_EQ(mixed[0].tokens, batch[9].tokens);
  EXPECT_EQ(mixed[2].tokens, batch[8].tokens);
  EXPECT_EQ(mixed[1].prompt_index, 0);
}

TEST(Sampler, TopKAndTopPNeverSampleOutsideTheirSet) {
  int64_t V = 50;
  Tensor logits_t = test::random_tensor({V}, 77, DType::f32, -3, 3);
  std::vector<float> logits = logits_t.to_vector<float>();
  std::vector<int64_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  for (double temperature : {0.5, 1.0, 2.0}) {
    // The nucleus at this temperature, computed here independently.
    std::vector<double> p(V);
    double z = 0;
    for (int64_t i = 0; i < V; ++i) z += p[i] = std::exp(logits[i] / temperature);
    SamplingOptions top_k;
    top_k.temperature = temperature;
    top_k.top_k = 5;
    SamplingOptions top_p;
    top_p.temperature = temperature;
    top_p.top_p = 0.6;
    std::set<int64_t> k_set(order.begin(), order.begin() + 5), p_set;
    double acc = 0;
    for (int64_t i : order) {
      p_set.insert(i);
      acc += p[i] / z;
      if (acc >= 0.6) break;
    }
    Rng rng(5);
    std::set<int64_t> seen_k, seen_p;
    for (int i = 0; i < 3000; ++i) {
      float lp = 0;
      int64_t t = sample_token(logits.data(), V, top_k, rng, &lp);
      ASSERT_TRUE(k_set.count(t)) << "top-k drew " << t;
      seen_k.insert(t);
      t = sample_token(logits.data(), V, top_p, rng, &lp);
      ASSERT_TRUE(p_set.count(t)) << "top-p drew " << t;
      seen_p.insert(t);
    }
    EXPECT_EQ(seen_k, k_set);  // and every member does come up
    EXPECT_EQ(seen_p, p_set);
    // A banned token never comes up, even as the greedy choice; top-k then
    // picks among the others.
    SamplingOptions banned = top_k;
    banned.banned_tokens = {order[0], order[2]};
    std::set<int64_t> allowed = {order[1], order[3], order[4], order[5], order[6]};
    for (int i = 0; i < 500; ++i) {
      float lp = 0;
      int64_t t = sample_token(logits.data(), V, banned, rng, &lp);
      ASSERT_TRUE(allowed.count(t)) << t;
    }
    banned.greedy = true;
    float lp = 0;
    EXPECT_EQ(sample_token(logits.data(), V, banned, rng, &lp), order[1]);
  }
}

// Truncation sorts only the prefix it can keep (growing stretches, a heap
// while short, a partition beyond 1,024). At a vocabulary of 20,000 the
// draws must be those of the plain definition: every candidate sorted by
// logit (ties by index), weights exp((l - max) / T), top-k first, then the
// smallest prefix holding top_p of the total, one uniform per token. The
// reference sums in double in index order; the weights are the sampler's own
// f32 exps recomputed here, so only a draw within rounding of a bucket edge
// could differ.
TEST(Sampler, TruncationDrawsEqualAFullSortReference) {
  const int64_t V = 20000;
  for (double spread : {1.0, 30.0}) {  // flat: nuclei of thousands; peaked: of a few
    Tensor logits_t = test::random_tensor({V}, 90 + int(spread), DType::f32, -spread, spread);
    std::vector<float> logits = logits_t.to_vector<float>();
    logits[123] = logits[456];  // a tie, broken by index
    std::vector<int64_t> order(V);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
    const float max_logit = logits[order[0]];
    for (int64_t top_k : {int64_t{0}, int64_t{3000}})
      for (double top_p : {1.0, 0.9, 0.3}) {
        if (top_k == 0 && top_p == 1.0) continue;
        SCOPED_TRACE("spread " + std::to_string(spread) + " top_k " + std::to_string(top_k) +
                     " top_p " + std::to_string(top_p));
        SamplingOptions opt;
        opt.temperature = top_k > 0 ? 1.0 : 0.8;  // 1: the sampler reuses the raw exps
        opt.top_k = top_k;
        opt.top_p = top_p;
        const float inv_t = static_cast<float>(1.0 / opt.temperature);
        std::vector<double> w(V);
        for (int64_t i = 0; i < V; ++i)
          w[i] = kernels::cpu::fast_exp((logits[i] - max_logit) * inv_t);
        const int64_t limit = top_k > 0 ? top_k : V;
        double total = 0;
        if (top_k > 0)
          for (int64_t i = 0; i < limit; ++i) total += w[order[i]];
        else
          for (int64_t i = 0; i < V; ++i) total += w[i];
        int64_t keep = limit;
        double acc = 0;
        for (int64_t i = 0; i < limit; ++i) {
          acc += w[order[i]];
          if (acc >= top_p * total) {
            keep = i + 1;
            break;
          }
        }
        if (top_k == 0 && top_p == 0.9) {
          if (spread == 1.0) {
            EXPECT_GT(keep, 1024) << "the partition path";
          } else {
            EXPECT_LT(keep, 1024) << "the heap path";
          }
        }
        Rng rng(31), ref_rng(31);
        for (int draw = 0; draw < 100; ++draw) {
          float lp = 0;
          const int64_t got = sample_token(logits.data(), V, opt, rng, &lp);
          const double u = ref_rng.uniform() * acc;
          double run = 0;
          int64_t want = order[keep - 1];
          for (int64_t i = 0; i < keep; ++i) {
            run += w[order[i]];
            if (u < run) {
              want = order[i];
              break;
            }
          }
          ASSERT_EQ(got, want) << "draw " << draw;
        }
      }
  }
}

// A big batch over a big vocabulary (rows x vocabulary >= 2^20) samples its
// rows on all threads: the same draws at 1, 2 and 3 threads, stopped rows
// skipped, finished rows compacted away. A mock decoder (no layers, so one
// slice) gives each row logits that depend only on its own last token and
// position.
TEST(Sampler, ParallelSamplingSameAtOneTwoAndThreeThreads) {
  const int64_t V = 70000, P = 3, R = 24;
  auto row_logits = [V](int64_t token, int64_t pos, float* out) {
    uint64_t z = static_cast<uint64_t>(token * 1000003 + pos * 7919 + 17);
    for (int64_t j = 0; j < V; ++j) {
      z = z * 6364136223846793005ull + 1442695040888963407ull;
      out[j] = static_cast<float>((z >> 40) % 8000) / 1000.0f - 4.0f;
    }
    for (int64_t j = 0; j < 8; ++j) out[(token * 31 + pos * 17 + j * 5) % 50] += 9.0f;
  };
  CachedDecoder mock;
  mock.vocab_size = V;
  mock.decode_step = [&](const std::vector<int64_t>& tokens, KVCache* cache) {
    const int64_t n = static_cast<int64_t>(tokens.size());
    Tensor out = Tensor::empty({n, V});
    for (int64_t r = 0; r < n; ++r)
      row_logits(tokens[r], cache->next_position[r]++, out.data<float>() + r * V);
    return out;
  };
  PrefixState prefix;
  prefix.cache.key_mask = Tensor::zeros({P, 1}, DType::i32);
  prefix.cache.next_position = {5, 7, 9};
  prefix.last_logits = Tensor::empty({P, V});
  for (int64_t p = 0; p < P; ++p) row_logits(p, 0, prefix.last_logits.data<float>() + p * V);
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < R; ++i) rows.push_back(i % P);
  const std::vector<uint64_t> seeds = derive_seeds(41, R);
  SamplingOptions opt;
  opt.top_p = 0.9;
  opt.max_new_tokens = 12;
  opt.stop_tokens = {3, 11, 20, 33, 47};
  const int before = omp_get_max_threads();
  std::vector<std::vector<Generation>> runs;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    runs.push_back(sample_from(mock, prefix, rows, opt, seeds));
  }
  omp_set_num_threads(before);
  int stopped = 0;
  for (const Generation& g : runs[0]) stopped += g.stopped;
  EXPECT_GT(stopped, R / 2) << "most rows should stop early (a compaction)";
  EXPECT_LT(stopped, R) << "some rows should run to max_new_tokens";
  for (size_t t = 1; t < runs.size(); ++t)
    for (int64_t i = 0; i < R; ++i) {
      EXPECT_EQ(runs[0][i].tokens, runs[t][i].tokens) << "row " << i << ", " << t + 1 << " threads";
      EXPECT_EQ(runs[0][i].logprobs, runs[t][i].logprobs) << "row " << i;
    }
}

TEST(Sampler, SampledFrequenciesFollowTheTemperedSoftmax) {
  std::vector<float> logits = {1.0f, 0.2f, -0.5f, 2.0f, 0.0f, -1.0f};
  int64_t V = logits.size();
  SamplingOptions opt;
  opt.temperature = 0.7;
  Rng rng(123);
  std::vector<int> count(V, 0);
  int draws = 40000;
  for (int i = 0; i < draws; ++i) {
    float lp = 0;
    int64_t t = sample_token(logits.data(), V, opt, rng, &lp);
    ++count[t];
    // The returned log-prob is at temperature 1, untruncated.
    double z = 0;
    for (float l : logits) z += std::exp(l);
    ASSERT_NEAR(lp, logits[t] - std::log(z), 1e-6);
  }
  double z = 0;
  for (float l : logits) z += std::exp(l / 0.7);
  for (int64_t i = 0; i < V; ++i) {
    double want = std::exp(logits[i] / 0.7) / z;
    EXPECT_NEAR(count[i] / double(draws), want, 4 * std::sqrt(want * (1 - want) / draws) + 1e-3)
        << "token " << i;
  }
}

// At temperature 1 the sampler reuses the exps of its log-probs (the raw
// distribution) and zeroes the banned tokens, unless a banned token holds the
// largest logit (then it recomputes them from the masked logits). Either way
// a banned token never comes up, the others follow the softmax without it,
// and the log-prob still counts it.
TEST(Sampler, BannedTokensNeverDrawnAtTemperatureOne) {
  const std::vector<float> logits = {3.0f, 1.0f, 0.5f, 0.0f, -1.0f};
  const int64_t V = logits.size();
  double z_all = 0;
  for (float l : logits) z_all += std::exp(l);
  for (int64_t banned : {int64_t{2}, int64_t{0}}) {  // reused exps; the largest logit banned
    SCOPED_TRACE("banned token " + std::to_string(banned));
    SamplingOptions opt;
    opt.banned_tokens = {banned};
    Rng rng(8);
    std::vector<int> count(V, 0);
    const int draws = 20000;
    for (int i = 0; i < draws; ++i) {
      float lp = 0;
      const int64_t t = sample_token(logits.data(), V, opt, rng, &lp);
      ++count[t];
      ASSERT_NEAR(lp, logits[t] - std::log(z_all), 1e-6);
    }
    EXPECT_EQ(count[banned], 0);
    const double z_allowed = z_all - std::exp(logits[banned]);
    for (int64_t i = 0; i < V; ++i) {
      if (i == banned) continue;
      const double want = std::exp(logits[i]) / z_allowed;
      EXPECT_NEAR(count[i] / double(draws), want, 4 * std::sqrt(want * (1 - want) / draws) + 1e-3)
          << "token " << i;
    }
  }
}

TEST(Sampler, StopTokensEndSequencesAndMaxNewTokensCapsThem) {
  Fixture f;
  SamplingOptions opt;
  opt.temperature = 1.0;
  opt.max_new_tokens = 6;
  for (int64_t t = 0; t < 20; ++t) opt.stop_tokens.push_back(t);
  std::vector<Generation> out = generate(f.model, f.prompts, 5, opt, derive_seeds(4, 15));
  std::set<int64_t> stop(opt.stop_tokens.begin(), opt.stop_tokens.end());
  for (const Generation& g : out) {
    ASSERT_FALSE(g.tokens.empty());
    ASSERT_LE(g.tokens.size(), 6u);
    for (size_t i = 0; i + 1 < g.tokens.size(); ++i) EXPECT_FALSE(stop.count(g.tokens[i]));
    EXPECT_EQ(g.stopped, stop.count(g.tokens.back()) == 1);
    if (!g.stopped) {
      EXPECT_EQ(g.tokens.size(), 6u);
    }
  }
  opt.max_new_tokens = 0;
  out = generate(f.model, f.prompts, 1, opt, derive_seeds(4, 3));
  for (const Generation& g : out) EXPECT_TRUE(g.tokens.empty());
  EXPECT_THROW(generate(f.model, f.prompts, 1, opt, derive_seeds(4, 2)),
               std::runtime_error);  // seed count
}

// Feeding a padded batch through the cache in chunks (3, then 2, then 1
// tokens) gives the hidden states of one full forward.
TEST(Sampler, ChunkedCacheDecodingEqualsOneFullForward) {
  Fixture f;
  const VLM& m = f.model;
  NoGradGuard g;
  int64_t B = 2, S = 6, D = 32;
  Tensor emb = test::random_tensor({B, S, D}, 7, DType::f32);
  Tensor mask =
      Tensor::from_vector(std::vector<int32_t>{0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, {B, S});
  Tensor pos = positions_from_mask(mask);
  std::vector<double> full = m.decode(emb, pos, mask).to_vector<double>();
  KVCache cache = KVCache::allocate(m.config().decoder, B, S);
  std::vector<double> chunked;
  std::vector<Tensor> parts;
  for (auto [a, b] : std::vector<std::pair<int64_t, int64_t>>{{0, 3}, {3, 5}, {5, 6}})
    parts.push_back(m.decode(emb.slice(1, a, b).contiguous(), pos.slice(1, a, b).contiguous(),
                             mask.slice(1, a, b).contiguous(), &cache));
  EXPECT_EQ(cache.length, S);
  std::vector<double> got = concat(parts, 1).to_vector<double>();
  // Compare real tokens only (a pad query sees no key in either path).
  std::vector<int32_t> m32 = mask.to_vector<int32_t>();
  std::vector<double> got_real, full_real;
  for (int64_t i = 0; i < B * S; ++i)
    if (m32[i])
      for (int64_t d = 0; d < D; ++d)
        got_real.push_back(got[i * D + d]), full_real.push_back(full[i * D + d]);
  EXPECT_TRUE(test::all_close(got_real, full_real, 1e-4, 1e-5));
}

TEST(Sampler, CacheCapacityIsChecked) {
  Fixture f;
  NoGradGuard g;
  KVCache cache = KVCache::allocate(f.model.config().decoder, 1, 3);
  Tensor emb = test::random_tensor({1, 4, 32}, 1, DType::f32);
  Tensor pos = Tensor::from_vector(std::vector<int64_t>{0, 1, 2, 3}, {1, 4});
  Tensor mask = Tensor::full({1, 4}, 1.0, DType::i32);
  EXPECT_THROW(f.model.decode(emb, pos, mask, &cache), std::runtime_error);
}

// ---- the shared prompt prefix (KVCache::share_prefix) ----

// Generation with the samples reading their prompt's prefix in place must give
// exactly what private copies give: same tokens, bit-equal log-probs, for
// greedy and sampled decoding, with stop tokens ending rows early (the cache
// is compacted mid-generation, its shared prefix carried along), and the
// greedy tokens must match a full forward.
TEST(Sampler, SharedPrefixGenerationBitIdenticalToPrivateCopies) {
  Fixture f;
  for (bool greedy : {true, false}) {
    for (bool stops : {false, true}) {
      SCOPED_TRACE(std::string(greedy ? "greedy" : "sampled") + (stops ? ", stop tokens" : ""));
      SamplingOptions opt;
      opt.greedy = greedy;
      opt.temperature = 1.3;
      opt.top_k = 30;
      opt.max_new_tokens = 12;
      if (stops) opt.stop_tokens = {3, 7, 11, 19, 23};
      std::vector<uint64_t> seeds = derive_seeds(41, 15);
      SamplingOptions copying = opt;
      copying.share_prefix_kv = false;
      std::vector<Generation> shared = generate(f.model, f.prompts, 5, opt, seeds);
      std::vector<Generation> copied = generate(f.model, f.prompts, 5, copying, seeds);
      ASSERT_EQ(shared.size(), copied.size());
      int stopped_early = 0;
      for (size_t i = 0; i < shared.size(); ++i) {
        EXPECT_EQ(shared[i].tokens, copied[i].tokens) << "sequence " << i;
        EXPECT_EQ(shared[i].logprobs, copied[i].logprobs) << "sequence " << i;
        EXPECT_EQ(shared[i].stopped, copied[i].stopped);
        stopped_early += shared[i].tokens.size() < 12u;
        if (greedy && i % 5 == 0)
          expect_matches_full_recompute(f.model, f.prompts[i / 5], shared[i], true);
      }
      if (stops) {
        EXPECT_GT(stopped_early, 0) << "the stop tokens should end some rows early";
      }
    }
  }
}

// The decoder step by step on a shared-prefix cache: the hidden states equal
// those of private copies bit for bit (one token per step: the decode kernel)
// and those of the full forward over prompt + tokens within 1e-5 (and also
// when two tokens go in at once: the general attention path).
TEST(Sampler, SharedPrefixDecodeStepsEqualCopiesAndFullForward) {
  Fixture f;
  const VLM& m = f.model;
  NoGradGuard g;
  const int64_t D = m.config().decoder.hidden_size;
  PrefixState prefix = prefill(m, f.prompts);
  const std::vector<int64_t> rows{2, 0, 0, 1, 2, 2};
  const int64_t n = static_cast<int64_t>(rows.size()), steps = 4;
  KVCache shared = prefix.cache.share_prefix(rows, steps + 1);
  KVCache copied = prefix.cache.select_rows(rows, prefix.cache.length + steps + 1);
  EXPECT_EQ(shared.length, 0);
  EXPECT_EQ(shared.total_length(), prefix.cache.length);
  Tensor emb = test::random_tensor({n, steps + 1, D}, 5, DType::f32, -1, 1);
  std::vector<Tensor> hidden;
  for (int64_t t = 0; t < steps + 1; t += t < steps - 1 ? 1 : 2) {
    const int64_t S = t < steps - 1 ? 1 : 2;  // the last call feeds 2 tokens
    std::vector<int64_t> pos;
    for (int64_t i = 0; i < n; ++i)
      for (int64_t s = 0; s < S; ++s) pos.push_back(shared.next_position[i] + s);
    Tensor e = emb.slice(1, t, t + S).contiguous();
    Tensor pt = Tensor::from_vector(pos, {n, S});
    Tensor mask = Tensor::full({n, S}, 1.0, DType::i32);
    Tensor a = m.decode(e, pt, mask, &shared);
    Tensor b = m.decode(e, pt, mask, &copied);
    for (int64_t i = 0; i < n; ++i) shared.next_position[i] += S, copied.next_position[i] += S;
    if (S == 1) {
      EXPECT_EQ(a.to_vector<float>(), b.to_vector<float>()) << "step " << t;
    }
    EXPECT_TRUE(test::all_close(a.to_vector<double>(), b.to_vector<double>(), 1e-5, 1e-6));
    hidden.push_back(a);
  }
  EXPECT_EQ(shared.length, steps + 1);
  Tensor got = concat(hidden, 1);  // [n, steps + 1, D]
  // The full forward of each row: its prompt's embeddings, then the fed ones.
  for (int64_t i = 0; i < n; ++i) {
    const PromptInput& p = f.prompts[rows[i]];
    const int64_t P = static_cast<int64_t>(p.ids.size());
    Tensor visual = p.pixels.defined() ? m.encode_images(p.pixels.unsqueeze(0)) : Tensor();
    Tensor prompt_emb = m.embed(Tensor::from_vector(p.ids, {1, P}), visual);
    Tensor all = concat({prompt_emb, emb.slice(0, i, i + 1)}, 1);
    Tensor ones = Tensor::full({1, P + steps + 1}, 1.0, DType::i32);
    Tensor full = m.decode(all, positions_from_mask(ones), ones).slice(1, P, P + steps + 1);
    EXPECT_TRUE(test::all_close(got.slice(0, i, i + 1).contiguous().to_vector<double>(),
                                full.contiguous().to_vector<double>(), 1e-5, 1e-5))
        << "row " << i;
  }
}

// Same seed, same samples at 1, 2 and 3 threads. The demo-sized model decodes
// its rows in one slice per thread (row i in slice i mod threads), each slice
// with its own cache, compaction and sampling scratch; 3 prompts x 47 samples
// leave the slices uneven, and sequences stop at different lengths.
TEST(Sampler, SlicedGenerationSameAtOneTwoAndThreeThreads) {
  Fixture f;
  VLMConfig c = ref::tiny_vlm_config();
  c.decoder.hidden_size = 128;
  c.decoder.intermediate_size = 256;
  VLM model(c);
  ref::randomize(model, 5, 0.2);
  SamplingOptions opt;
  opt.temperature = 1.2;
  opt.max_new_tokens = 24;
  opt.stop_tokens = {7, 19};
  std::vector<uint64_t> seeds = derive_seeds(77, 141);
  const int before = omp_get_max_threads();
  std::vector<std::vector<Generation>> runs;
  for (int threads : {1, 2, 3}) {
    omp_set_num_threads(threads);
    runs.push_back(generate(model, f.prompts, 47, opt, seeds));
  }
  omp_set_num_threads(before);
  int stopped = 0;
  for (const Generation& g : runs[0]) stopped += g.stopped;
  EXPECT_GT(stopped, 0) << "some sequences should stop early";
  EXPECT_LT(stopped, 141) << "some sequences should run to max_new_tokens";
  for (size_t t = 1; t < runs.size(); ++t)
    for (size_t i = 0; i < runs[0].size(); ++i) {
      EXPECT_EQ(runs[0][i].prompt_index, runs[t][i].prompt_index) << "sequence " << i;
      EXPECT_EQ(runs[0][i].tokens, runs[t][i].tokens)
          << "sequence " << i << ", " << t + 1 << " threads";
      EXPECT_EQ(runs[0][i].logprobs, runs[t][i].logprobs) << "sequence " << i;
      EXPECT_EQ(runs[0][i].stopped, runs[t][i].stopped) << "sequence " << i;
    }
}

TEST(Sampler, SharePrefixRejectsBadRowsAndNesting) {
  Fixture f;
  PrefixState prefix = prefill(f.model, f.prompts);
  EXPECT_THROW(prefix.cache.share_prefix({0, 3}, 4), std::runtime_error);
  EXPECT_THROW(prefix.cache.share_prefix({-1}, 4), std::runtime_error);
  EXPECT_THROW(prefix.cache.share_prefix({}, 4), std::runtime_error);
  EXPECT_THROW(prefix.cache.share_prefix({0}, -1), std::runtime_error);
  KVCache shared = prefix.cache.share_prefix({0, 1}, 4);
  EXPECT_THROW(shared.share_prefix({0}, 4), std::runtime_error);
  // A compacted copy keeps reading the prefix of its source rows.
  KVCache picked = shared.select_rows({1, 1, 0}, 4);
  EXPECT_EQ(picked.prefix_row, (std::vector<int64_t>{1, 1, 0}));
  EXPECT_EQ(picked.total_length(), prefix.cache.length);
  // The full cache is a clear error, not an overflow; so is a prefix row
  // that does not exist.
  NoGradGuard g;
  const int64_t D = f.model.config().decoder.hidden_size;
  KVCache broken = prefix.cache.share_prefix({0}, 2);
  broken.prefix_row[0] = 3;
  EXPECT_THROW(f.model.decode(test::random_tensor({1, 1, D}, 1, DType::f32),
                              Tensor::from_vector(std::vector<int64_t>{9}, {1, 1}),
                              Tensor::full({1, 1}, 1.0, DType::i32), &broken),
               std::runtime_error);
  KVCache small = prefix.cache.share_prefix({0}, 1);
  Tensor pos = Tensor::from_vector(std::vector<int64_t>{9, 10}, {1, 2});
  EXPECT_THROW(f.model.decode(test::random_tensor({1, 2, D}, 1, DType::f32), pos,
                              Tensor::full({1, 2}, 1.0, DType::i32), &small),
               std::runtime_error);
}

}  // namespace
}  // namespace visplay
