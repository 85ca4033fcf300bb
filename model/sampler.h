// Batched generation with a KV cache: prefill every prompt once (left padded,
// one batch), then decode one token per step for all samples together. On the
// CPU the n samples of a prompt read its cached prefix in place (one copy per
// prompt, KVCache::share_prefix) and each stores only its own tokens; the
// result is bit-identical to giving every sample a private copy of the prefix.
//
// Each output sequence has its own seeded Rng, and a row's logits depend only
// on its own tokens, so a sequence's result does not depend on what else is in
// the batch (up to float rounding in the shared GEMMs, far below what could
// change a sampled token in practice).
//
// Log-probs: for every generated token we return log softmax(logits)[token]
// of the model's raw logits, i.e. at temperature 1 with no top-k/top-p
// truncation. That is what the training forward (VLM::token_logprobs)
// recomputes, so GRPO's old/new ratio compares like with like.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "model/vlm.h"
#include "runtime/random.h"

namespace visplay {

struct SamplingOptions {
  bool greedy = false;       // argmax (also when temperature <= 0)
  double temperature = 1.0;  // logits / temperature before top-k/top-p
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = all
  double top_p = 1.0;        // keep the smallest set with probability >= top_p; 1 = all
  int64_t max_new_tokens = 32;
  std::vector<int64_t> stop_tokens;  // a sequence ends after emitting one (kept in its tokens)
  // Never sampled (their log-probs still count in the temperature-1 log_softmax).
  // sample_from always adds the model's image-pad token: a generated pad would
  // be read back as an image slot by the training forward.
  std::vector<int64_t> banned_tokens;
  // Samples read their prompt's cached prefix in place instead of each copying
  // it (CPU f32 caches, and sim/cuda caches of head dim <= 128; elsewhere they
  // always copy). Same results either way, bit for bit; false is for tests and
  // benchmarks of the copying path.
  bool share_prefix_kv = true;
};

// One prompt: token ids (with one image-pad id per visual token where the
// image goes) and its image(s), [3, H, W] or [N, 3, H, W] normalised f32.
struct PromptInput {
  std::vector<int64_t> ids;
  Tensor pixels;  // undefined for a text-only prompt
};

struct Generation {
  int64_t prompt_index = 0;
  std::vector<int64_t> tokens;  // generated ids (a stop token, when hit, is the last)
  std::vector<float> logprobs;  // per token: log softmax(raw logits)[token], temperature 1
  bool stopped = false;         // ended on a stop token (else ran to max_new_tokens)
};

// The state after prefill: a KV cache row per prompt and the logits that
// predict each prompt's first new token.
struct PrefixState {
  KVCache cache;       // [P rows]
  Tensor last_logits;  // [P, V] f32
};

// Runs all prompts through the model in one left-padded batch.
PrefixState prefill(const VLM& model, const std::vector<PromptInput>& prompts);

// What the decode loop needs from a model (the demo VLM: cached_decoder;
// Qwen2.5-VL: qwen25vl_decoder in model/qwen25vl.h). decode_step feeds
// tokens[r] to cache row r at its next position, advances the cache and the
// row's next_position, and returns the logits that predict each row's next
// token [rows, vocab_size] (any device or float dtype).
struct CachedDecoder {
  int64_t vocab_size = 0;
  int64_t image_pad_token_id = -1;  // never sampled (-1: none)
  // The model's size in parameters (0: unknown). A small CPU model decodes
  // its rows in slices, one per thread (sample_from).
  int64_t parameters = 0;
  std::function<Tensor(const std::vector<int64_t>& tokens, KVCache* cache)> decode_step;
};
CachedDecoder cached_decoder(const VLM& model);  // the model must outlive the result

// The decode loop: one sequence per entry of `rows` (an index into the
// prefix's prompts; repeats share the prompt's cache), seeds[i] seeding
// sequence i. Samples, stops, and drops finished rows once they are half the
// batch. The prefix's cache may live on any device; its samples read it in
// place (options.share_prefix_kv) when it is a CPU f32 cache or a sim/cuda
// cache of head dim <= 128, else copy it. A CPU model of at most 2^24
// parameters decodes 16 or more rows in slices, one per OpenMP thread, each
// slice in its own cache: one fork-join per call instead of one per op and
// token. A sequence's results are the same bits in any slicing.
std::vector<Generation> sample_from(const CachedDecoder& model, const PrefixState& prefix,
                                    const std::vector<int64_t>& rows,
                                    const SamplingOptions& options,
                                    const std::vector<uint64_t>& seeds);
// The same for the demo VLM.
std::vector<Generation> sample_from(const VLM& model, const PrefixState& prefix,
                                    const std::vector<int64_t>& rows,
                                    const SamplingOptions& options,
                                    const std::vector<uint64_t>& seeds);

// prefill + sample_from with each prompt repeated samples_per_prompt times:
// output p * samples_per_prompt + j is sample j of prompt p, seeded by
// seeds[p * samples_per_prompt + j].
std::vector<Generation> generate(const VLM& model, const std::vector<PromptInput>& prompts,
                                 int64_t samples_per_prompt, const SamplingOptions& options,
                                 const std::vector<uint64_t>& seeds);

// count well-mixed seeds from one base seed (splitmix64 of base + i).
std::vector<uint64_t> derive_seeds(uint64_t base, int64_t count);

// Samples one token id from logits[0..vocab) with the options and rng; the
// log-prob of that token under log_softmax(logits) goes to *logprob.
// Exposed for tests.
int64_t sample_token(const float* logits, int64_t vocab, const SamplingOptions& options, Rng& rng,
                     float* logprob);

}  // namespace visplay
