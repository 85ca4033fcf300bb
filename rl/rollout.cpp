#include "rl/rollout.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

namespace visplay::rl {

SamplingOptions to_sampling_options(const SamplingConfig& config, int64_t stop_token) {
  SamplingOptions o;
  o.greedy = config.temperature <= 0;
  o.temperature = config.temperature > 0 ? config.temperature : 1.0;
  o.top_k = config.top_k;
  o.top_p = config.top_p;
  o.max_new_tokens = config.max_new_tokens;
  if (stop_token >= 0) o.stop_tokens = {stop_token};
  return o;
}

// Chunks of whole prompts so that the KV cache of one chunk's samples stays bounded; the seeds
// are derived once for the whole call, so chunk boundaries never change a sequence's seed.
std::vector<Generation> generate_groups(const PolicyModel& model,
                                        const std::vector<PromptInput>& prompts,
                                        int64_t samples_per_prompt, const SamplingOptions& options,
                                        uint64_t seed, int64_t max_batch_sequences,
                                        GenerationStats* stats,
                                        const std::vector<int64_t>* seed_index) {
  if (samples_per_prompt < 1) {
    throw std::runtime_error(
        "generate_groups: samples_per_prompt = " + std::to_string(samples_per_prompt) + " < 1");
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t P = static_cast<int64_t>(prompts.size());
  if (seed_index && static_cast<int64_t>(seed_index->size()) != P) {
    throw std::runtime_error("generate_groups: " + std::to_string(seed_index->size()) +
                             " seed indices for " + std::to_string(P) + " prompts");
  }
  int64_t positions = P;
  if (seed_index) {
    for (int64_t g : *seed_index) positions = std::max(positions, g + 1);
  }
  const std::vector<uint64_t> seeds = derive_seeds(seed, positions * samples_per_prompt);
  const int64_t per_chunk = std::max<int64_t>(1, max_batch_sequences / samples_per_prompt);
  std::vector<Generation> out;
  out.reserve(static_cast<size_t>(P * samples_per_prompt));
  for (int64_t begin = 0; begin < P; begin += per_chunk) {
    const int64_t end = std::min(P, begin + per_chunk);
    std::vector<PromptInput> chunk(prompts.begin() + begin, prompts.begin() + end);
    std::vector<int64_t> rows;
    std::vector<uint64_t> chunk_seeds;
    for (int64_t p = 0; p < end - begin; ++p) {
      for (int64_t j = 0; j < samples_per_prompt; ++j) {
        rows.push_back(p);
        const int64_t at = seed_index ? (*seed_index)[begin + p] : begin + p;
        chunk_seeds.push_back(seeds[at * samples_per_prompt + j]);
      }
    }
    std::vector<Generation> gens = model.sample(chunk, rows, options, chunk_seeds);
    const int64_t pad = model.image_pad_token_id();
    for (Generation& g : gens) {
      g.prompt_index += begin;
      auto hit = pad >= 0 ? std::find(g.tokens.begin(), g.tokens.end(), pad) : g.tokens.end();
      if (hit != g.tokens.end()) {
        const size_t keep = static_cast<size_t>(hit - g.tokens.begin());
        g.tokens.resize(keep);
        g.logprobs.resize(keep);
        g.stopped = false;
      }
      out.push_back(std::move(g));
    }
  }
  if (stats) {
    stats->sequences += static_cast<int64_t>(out.size());
    for (const Generation& g : out)
      stats->generated_tokens += static_cast<int64_t>(g.tokens.size());
    stats->seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return out;
}

Tensor pad_rows(const std::vector<std::vector<float>>& rows, int64_t length, float fill) {
  const int64_t n = static_cast<int64_t>(rows.size());
  std::vector<float> out(static_cast<size_t>(n * length), fill);
  for (int64_t i = 0; i < n; ++i) {
    if (static_cast<int64_t>(rows[i].size()) > length) {
      throw std::runtime_error("pad_rows: row " + std::to_string(i) + " has " +
                               std::to_string(rows[i].size()) + " values, more than " +
                               std::to_string(length));
    }
    std::copy(rows[i].begin(), rows[i].end(), out.begin() + i * length);
  }
  return Tensor::from_vector(out, {n, length});
}

std::vector<Generation> generate_groups(const VLM& model, const std::vector<PromptInput>& prompts,
                                        int64_t samples_per_prompt, const SamplingOptions& options,
                                        uint64_t seed, int64_t max_batch_sequences,
                                        GenerationStats* stats,
                                        const std::vector<int64_t>* seed_index) {
  return generate_groups(VLMPolicy(model), prompts, samples_per_prompt, options, seed,
                         max_batch_sequences, stats, seed_index);
}

std::vector<std::vector<float>> score_completions(
    const VLM& model, const std::vector<PromptInput>& prompts, const std::vector<int64_t>& rows,
    const std::vector<std::vector<int64_t>>& completions, int64_t micro_batch_size) {
  return score_completions(VLMPolicy(model), prompts, rows, completions, micro_batch_size);
}

std::vector<std::vector<float>> score_completions(
    const PolicyModel& model, const std::vector<PromptInput>& prompts,
    const std::vector<int64_t>& rows, const std::vector<std::vector<int64_t>>& completions,
    int64_t micro_batch_size) {
  NoGradGuard no_grad;
  std::vector<std::vector<float>> out;
  out.reserve(completions.size());
  const int64_t n = static_cast<int64_t>(completions.size());
  for (int64_t begin = 0; begin < n; begin += micro_batch_size) {
    const int64_t end = std::min(n, begin + micro_batch_size);
    std::vector<int64_t> micro_rows(rows.begin() + begin, rows.begin() + end);
    std::vector<std::vector<int64_t>> micro(completions.begin() + begin, completions.begin() + end);
    TokenLogprobs lp = model.completion_logprobs(prompts, micro_rows, micro);
    const int64_t L = lp.logprobs.size(1);
    std::vector<float> flat = lp.logprobs.contiguous().to_vector<float>();
    for (int64_t i = 0; i < end - begin; ++i) {
      auto first = flat.begin() + i * L;
      out.emplace_back(first, first + static_cast<int64_t>(micro[i].size()));
    }
  }
  return out;
}

}  // namespace visplay::rl
