#include "model/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

#include "kernels/cpu/vec_math.h"
#include "runtime/parallel.h"

namespace visplay {

std::vector<uint64_t> derive_seeds(uint64_t base, int64_t count) {
  std::vector<uint64_t> out(count);
  for (int64_t i = 0; i < count; ++i) {
    uint64_t z = base + 0x9e3779b97f4a7c15ull * static_cast<uint64_t>(i + 1);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    out[i] = z ^ (z >> 31);
  }
  return out;
}

namespace {

// sum of e[0, n) in double: eight lanes over consecutive elements and a fixed
// tree at the end (the loop vectorises; the order is fixed, so deterministic).
double sum_f32_in_f64(const float* e, int64_t n) {
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int u = 0; u < 8; ++u) lane[u] += e[i + u];
  double tail = 0;
  for (; i < n; ++i) tail += e[i];
  return (((lane[0] + lane[1]) + (lane[2] + lane[3])) +
          ((lane[4] + lane[5]) + (lane[6] + lane[7]))) +
         tail;
}

// The first index whose running sum of weights exceeds u (-1 if none):
// whole blocks of eight are skipped by their sums, then the walk goes one
// weight at a time (past the block too, should rounding leave u beyond it).
int64_t inverse_cdf(const float* w, int64_t n, double u) {
  double acc = 0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    double block = ((double(w[i]) + double(w[i + 1])) + (double(w[i + 2]) + double(w[i + 3]))) +
                   ((double(w[i + 4]) + double(w[i + 5])) + (double(w[i + 6]) + double(w[i + 7])));
    if (u < acc + block) break;
    acc += block;
  }
  for (; i < n; ++i) {
    acc += w[i];
    if (u < acc) return i;
  }
  return -1;
}

}  // namespace

// Log-prob under the raw distribution: exps in f32 (kernels' fast_exp,
// vectorised, <= 2 ulp), their sum and the log in double. The draw is an
// inverse-CDF walk over the (possibly truncated) candidates, so one uniform
// number per token and the outcome depends only on this row and its rng.
// Scratch is per thread and reused: no allocation per token.
int64_t sample_token(const float* raw_logits, int64_t vocab, const SamplingOptions& opt, Rng& rng,
                     float* logprob) {
  static thread_local std::vector<float> exp_buf, masked;
  if (static_cast<int64_t>(exp_buf.size()) < vocab) exp_buf.resize(vocab);
  float* e = exp_buf.data();
  float raw_max = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) raw_max = std::max(raw_max, raw_logits[i]);
  for (int64_t i = 0; i < vocab; ++i) e[i] = kernels::cpu::fast_exp(raw_logits[i] - raw_max);
  double raw_sum = sum_f32_in_f64(e, vocab);
  double log_z = raw_max + std::log(raw_sum);
  // Choices come from a copy with the banned tokens at -inf.
  const float* logits = raw_logits;
  if (!opt.banned_tokens.empty()) {
    masked.assign(raw_logits, raw_logits + vocab);
    for (int64_t b : opt.banned_tokens)
      if (b >= 0 && b < vocab) masked[b] = -INFINITY;
    logits = masked.data();
  }
  float max_logit = -INFINITY;
  int64_t argmax = 0;
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] > max_logit) max_logit = logits[i], argmax = i;
  if (max_logit == -INFINITY) throw std::runtime_error("sample_token: every token is banned");
  auto finish = [&](int64_t token) {
    if (logprob) *logprob = static_cast<float>(raw_logits[token] - log_z);
    return token;
  };
  if (opt.greedy || opt.temperature <= 0) return finish(argmax);

  // Weights exp((logit - max) / T) in f32 (fast_exp, banned tokens 0), sums
  // in double, whatever the truncation.
  // At temperature 1 with the raw maximum allowed they are the raw exps
  // already in e (x * 1.0f == x), banned tokens zeroed: one pass over the
  // vocabulary less.
  const float inv_t = static_cast<float>(1.0 / opt.temperature);
  if (inv_t == 1.0f && max_logit == raw_max) {
    for (int64_t b : opt.banned_tokens)
      if (b >= 0 && b < vocab) e[b] = 0.0f;
  } else {
    for (int64_t i = 0; i < vocab; ++i)
      e[i] = kernels::cpu::fast_exp((logits[i] - max_logit) * inv_t);
  }
  const bool top_k = opt.top_k > 0 && opt.top_k < vocab, top_p = opt.top_p < 1.0;
  if (!top_k && !top_p) {
    // Plain temperature sampling in index order.
    double total = sum_f32_in_f64(e, vocab);
    int64_t picked = inverse_cdf(e, vocab, rng.uniform() * total);
    if (picked >= 0) return finish(picked);
    // Rounding left u past the last bucket: take the last nonzero one.
    for (int64_t i = vocab - 1; i >= 0; --i)
      if (e[i] > 0) return finish(i);
    return finish(argmax);
  }
  // Truncation: candidates in logit order (ties by index, so the order is
  // deterministic), of which only the prefix that can be kept is sorted: the
  // top k, or for top-p alone a prefix that doubles until its mass reaches
  // top_p of the total (summed in index order). Sorting the whole vocabulary
  // per token took 24 ms at Qwen's 151,936 tokens.
  static thread_local std::vector<int64_t> order;
  order.resize(vocab);
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](int64_t a, int64_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  double total = 0;
  int64_t sorted = 0;
  if (top_k) {
    std::partial_sort(order.begin(), order.begin() + opt.top_k, order.end(), better);
    sorted = opt.top_k;
    for (int64_t i = 0; i < sorted; ++i) total += e[order[i]];
  } else {
    total = sum_f32_in_f64(e, vocab);
  }
  // keep: the smallest sorted prefix whose mass reaches top_p (at least one token).
  const int64_t limit = top_k ? opt.top_k : vocab;
  const double target = opt.top_p * total;
  int64_t keep = limit;
  double acc = 0, kept_total = total;
  if (top_p) {
    for (int64_t i = 0; i < limit; ++i) {
      if (i == sorted) {  // sort the next stretch: as many again, at least 64
        const int64_t more = std::min(limit, std::max<int64_t>(2 * sorted, 64));
        if (more <= 1024) {  // a heap over the rest: cheap while the stretch is short
          std::partial_sort(order.begin() + sorted, order.begin() + more, order.end(), better);
        } else {  // a partition, then a sort of the stretch alone
          if (more < vocab)
            std::nth_element(order.begin() + sorted, order.begin() + more, order.end(), better);
          std::sort(order.begin() + sorted, order.begin() + more, better);
        }
        sorted = more;
      }
      acc += e[order[i]];
      if (acc >= target) {
        keep = i + 1;
        break;
      }
    }
    kept_total = acc;  // the kept prefix's mass (all of it if rounding never reached target)
  }
  double u = rng.uniform() * kept_total;
  acc = 0;
  for (int64_t i = 0; i < keep; ++i) {
    acc += e[order[i]];
    if (u < acc) return finish(order[i]);
  }
  return finish(order[keep - 1]);
}

PrefixState prefill(const VLM& model, const std::vector<PromptInput>& prompts) {
  const VLMConfig& c = model.config();
  if (prompts.empty()) throw std::runtime_error("prefill: no prompts");
  int64_t P = static_cast<int64_t>(prompts.size()), S = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    if (prompts[i].ids.empty())
      throw std::runtime_error("prefill: prompt " + std::to_string(i) + " is empty");
    S = std::max<int64_t>(S, prompts[i].ids.size());
  }
  if (S > c.decoder.max_position_embeddings)
    throw std::runtime_error("prefill: a prompt of " + std::to_string(S) +
                             " tokens exceeds max_position_embeddings " +
                             std::to_string(c.decoder.max_position_embeddings));
  // Left padding with any valid id (the pad token when there is one); masked out.
  int64_t pad_id = c.pad_token_id >= 0 ? c.pad_token_id : 0;
  std::vector<int64_t> ids(P * S, pad_id);
  std::vector<int32_t> mask(P * S, 0);
  std::vector<Tensor> images;
  for (int64_t p = 0; p < P; ++p) {
    const std::vector<int64_t>& src = prompts[p].ids;
    int64_t off = S - static_cast<int64_t>(src.size());
    for (size_t s = 0; s < src.size(); ++s) {
      ids[p * S + off + s] = src[s];
      mask[p * S + off + s] = 1;
    }
    const Tensor& px = prompts[p].pixels;
    if (px.defined()) images.push_back(px.dim() == 3 ? px.unsqueeze(0) : px);
  }
  NoGradGuard no_grad;
  Tensor id_t = Tensor::from_vector(ids, {P, S});
  Tensor mask_t = Tensor::from_vector(mask, {P, S});
  Tensor visual;
  if (!images.empty()) {
    Tensor pixels = images.size() == 1 ? images[0] : concat(images, 0);
    visual = model.encode_images(pixels.to(DType::f32));
  }
  PrefixState out;
  out.cache = KVCache::allocate(c.decoder, P, S);
  Tensor hidden =
      model.decode(model.embed(id_t, visual), positions_from_mask(mask_t), mask_t, &out.cache);
  for (int64_t p = 0; p < P; ++p)
    out.cache.next_position[p] = static_cast<int64_t>(prompts[p].ids.size());
  Tensor last = hidden.slice(1, S - 1, S).reshape({P, c.decoder.hidden_size});
  out.last_logits = linear(last, model.head_weight());
  return out;
}

// The demo VLM's step: token embeddings at each row's next position, the
// decoder through the cache, the LM head.
CachedDecoder cached_decoder(const VLM& model) {
  CachedDecoder d;
  d.vocab_size = model.config().decoder.vocab_size;
  d.image_pad_token_id = model.config().image_pad_token_id;
  d.parameters = model.params().numel();
  d.decode_step = [&model](const std::vector<int64_t>& tokens, KVCache* cache) {
    const int64_t n = static_cast<int64_t>(tokens.size());
    Tensor tok = Tensor::from_vector(tokens, {n, 1});
    Tensor pos = Tensor::from_vector(cache->next_position, {n, 1});
    Tensor mask = Tensor::full({n, 1}, 1.0, DType::i32);
    Tensor hidden = model.decode(embedding(model.params().get("model.embed_tokens.weight"), tok),
                                 pos, mask, cache);
    for (int64_t& p : cache->next_position) ++p;
    return linear(hidden.reshape({n, model.config().decoder.hidden_size}), model.head_weight());
  };
  return d;
}

// Logits as host f32 (a no-op for the CPU f32 models).
Tensor host_f32(const Tensor& t) { return t.to(kCPU).to(DType::f32).contiguous(); }

namespace {

// Rows per decode slice at least, and the largest model decoded in slices: a
// thread per slice reads every weight once per token, which for a model this
// small stays in cache; for a bigger one decoding is bound by reading the
// weights, and its ops are big enough to split over threads themselves.
constexpr int64_t kMinRowsPerSlice = 8;
constexpr int64_t kMaxParametersToSlice = int64_t{1} << 24;
// Logits per decode step (rows x vocabulary) from which sampling spreads over
// threads: ~1 ms per row at Qwen's 151,936 tokens, 3 us at the demo's 277.
constexpr int64_t kParallelSamplingMinLogits = int64_t{1} << 20;

// How many slices the R rows are decoded in: one per thread for a small CPU
// model (see runtime/parallel.h for why), else one.
int64_t decode_slices(const CachedDecoder& model, const KVCache& prefix_cache, int64_t R) {
  if (prefix_cache.k.empty() || prefix_cache.k[0].device() != kCPU) return 1;
  if (model.parameters <= 0 || model.parameters > kMaxParametersToSlice) return 1;
  return std::max<int64_t>(1, std::min(cpu_threads(), R / kMinRowsPerSlice));
}

// The decode loop over the sequences out[which[j]] (prompt rows[which[j]],
// seed seeds[which[j]]), in a cache of their own.
void decode_slice(const CachedDecoder& model, const PrefixState& prefix, const Tensor& first,
                  const std::vector<int64_t>& rows, const std::vector<uint64_t>& seeds,
                  const std::vector<int64_t>& which, const SamplingOptions& opt, bool share,
                  std::vector<Generation>& out) {
  NoGradGuard no_grad;  // thread-local: each slice's thread sets its own
  const int64_t n0 = static_cast<int64_t>(which.size()), V = model.vocab_size;
  const KVCache& pc = prefix.cache;
  std::vector<int64_t> slice_rows;
  for (int64_t w : which) slice_rows.push_back(rows[w]);
  // Room for every new token except the last, which is sampled but never fed back.
  KVCache cache = share ? pc.share_prefix(slice_rows, opt.max_new_tokens - 1)
                        : pc.select_rows(slice_rows, pc.length + opt.max_new_tokens - 1);
  std::vector<Rng> rngs;
  for (int64_t w : which) rngs.emplace_back(seeds[w]);
  // live[i]: which entry of `which` cache row i belongs to (rows are compacted
  // as sequences finish).
  std::vector<int64_t> live(n0);
  std::iota(live.begin(), live.end(), 0);
  Tensor logits = Tensor::empty({n0, V});
  const float* src = first.data<float>();
  for (int64_t i = 0; i < n0; ++i)
    std::copy(src + slice_rows[i] * V, src + (slice_rows[i] + 1) * V, logits.data<float>() + i * V);
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    int64_t n = static_cast<int64_t>(live.size());
    const float* pl = logits.data<float>();
    std::vector<int64_t> next(n);
    std::vector<float> lp(n, 0.0f);
    // Rows sample independently (each its own rng), so a big batch over a big
    // vocabulary is spread over the threads, row i to task i mod tasks.
    const int64_t tasks =
        n * V >= kParallelSamplingMinLogits ? std::min<int64_t>(cpu_threads(), n) : 1;
    auto sample_rows = [&](int64_t task) {
      for (int64_t i = task; i < n; i += tasks)
        if (!out[which[live[i]]].stopped)
          next[i] = sample_token(pl + i * V, V, opt, rngs[live[i]], &lp[i]);
    };
    run_tasks_in_parallel(tasks, sample_rows);
    std::vector<int64_t> still;
    for (int64_t i = 0; i < n; ++i) {
      Generation& g = out[which[live[i]]];
      if (g.stopped) {  // finished, not yet compacted away: feed its last token, ignore the result
        next[i] = g.tokens.back();
        continue;
      }
      g.tokens.push_back(next[i]);
      g.logprobs.push_back(lp[i]);
      g.stopped = std::find(opt.stop_tokens.begin(), opt.stop_tokens.end(), next[i]) !=
                  opt.stop_tokens.end();
      if (!g.stopped) still.push_back(i);
    }
    if (still.empty() || step + 1 == opt.max_new_tokens) break;
    // Drop finished rows once they are at least half the batch: one copy of
    // the cache buys cheaper steps for the rest of the generation.
    if (static_cast<int64_t>(still.size()) * 2 <= n && static_cast<int64_t>(still.size()) < n) {
      cache = cache.select_rows(still, cache.capacity());
      std::vector<int64_t> live2, next2;
      for (int64_t i : still) live2.push_back(live[i]), next2.push_back(next[i]);
      live.swap(live2);
      next.swap(next2);
    }
    logits = host_f32(model.decode_step(next, &cache));
  }
}

}  // namespace

std::vector<Generation> sample_from(const CachedDecoder& model, const PrefixState& prefix,
                                    const std::vector<int64_t>& rows, const SamplingOptions& opt,
                                    const std::vector<uint64_t>& seeds) {
  int64_t R = static_cast<int64_t>(rows.size()), V = model.vocab_size;
  if (seeds.size() != rows.size())
    throw std::runtime_error("sample_from: " + std::to_string(seeds.size()) + " seeds for " +
                             std::to_string(R) + " sequences");
  if (opt.max_new_tokens < 0) throw std::runtime_error("sample_from: max_new_tokens must be >= 0");
  if (!(opt.top_p > 0)) throw std::runtime_error("sample_from: top_p must be in (0, 1]");
  std::vector<Generation> out(R);
  for (int64_t i = 0; i < R; ++i) out[i].prompt_index = rows[i];
  if (R == 0 || opt.max_new_tokens == 0) return out;
  const KVCache& pc = prefix.cache;
  Tensor first = host_f32(prefix.last_logits);
  if (first.dim() != 2 || first.size(1) != V || first.size(0) != pc.batch())
    throw std::runtime_error("sample_from: prefix logits " + first.str() + " for " +
                             std::to_string(pc.batch()) + " cached prompts of vocabulary " +
                             std::to_string(V));
  for (int64_t r : rows)
    if (r < 0 || r >= pc.batch())
      throw std::runtime_error("sample_from: row " + std::to_string(r) + " out of range for " +
                               std::to_string(pc.batch()) + " prompts");
  SamplingOptions opt_banned = opt;
  if (model.image_pad_token_id >= 0) opt_banned.banned_tokens.push_back(model.image_pad_token_id);
  // The decode kernels that read a shared prefix in place: cpu f32, sim/cuda head dims up to
  // kDeviceDecodeMaxHeadDim.
  const bool share = opt.share_prefix_kv && !pc.has_shared_prefix() && !pc.k.empty() &&
                     ((pc.k[0].device() == kCPU && pc.k[0].dtype() == DType::f32) ||
                      (pc.k[0].device() != kCPU && pc.k[0].size(3) <= kDeviceDecodeMaxHeadDim));
  // A sequence's tokens depend only on its own row and seed, so the rows can
  // be dealt out to slices (row i to slice i mod S, which spreads each
  // prompt's samples and the sequences that finish early) and decoded apart:
  // the results are the same bits for any number of slices.
  const int64_t S = decode_slices(model, pc, R);
  std::vector<std::vector<int64_t>> which(S);
  for (int64_t i = 0; i < R; ++i) which[i % S].push_back(i);
  auto run_slice = [&](int64_t s) {
    decode_slice(model, prefix, first, rows, seeds, which[s], opt_banned, share, out);
  };
  run_tasks_in_parallel(S, run_slice);
  return out;
}

std::vector<Generation> sample_from(const VLM& model, const PrefixState& prefix,
                                    const std::vector<int64_t>& rows, const SamplingOptions& opt,
                                    const std::vector<uint64_t>& seeds) {
  return sample_from(cached_decoder(model), prefix, rows, opt, seeds);
}

std::vector<Generation> generate(const VLM& model, const std::vector<PromptInput>& prompts,
                                 int64_t n, const SamplingOptions& options,
                                 const std::vector<uint64_t>& seeds) {
  if (n <= 0) throw std::runtime_error("generate: samples_per_prompt must be positive");
  PrefixState prefix = prefill(model, prompts);
  std::vector<int64_t> rows;
  for (int64_t p = 0; p < static_cast<int64_t>(prompts.size()); ++p)
    for (int64_t j = 0; j < n; ++j) rows.push_back(p);
  return sample_from(model, prefix, rows, options, seeds);
}

}  // namespace visplay
