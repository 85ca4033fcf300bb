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
std::vector<Generation> generate_groups(const VLM& model, const std::vector<PromptInput>& prompts,
                                        int64_t samples_per_prompt, const SamplingOptions& options,
                                        uint64_t seed, int64_t max_batch_sequences,
                                        GenerationStats* stats) {
  if (samples_per_prompt < 1) {
    throw std::runtime_error(
        "generate_groups: samples_per_prompt = " + std::to_string(samples_per_prompt) + " < 1");
  }
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t P = static_cast<int64_t>(prompts.size());
  const std::vector<uint64_t> seeds = derive_seeds(seed, P * samples_per_prompt);
  const int64_t per_chunk = std::max<int64_t>(1, max_batch_sequences / samples_per_prompt);
  std::vector<Generation> out;
  out.reserve(static_cast<size_t>(P * samples_per_prompt));
  for (int64_t begin = 0; begin < P; begin += per_chunk) {
    const int64_t end = std::min(P, begin + per_chunk);
    std::vector<PromptInput> chunk(prompts.begin() + begin, prompts.begin() + end);
    PrefixState prefix = prefill(model, chunk);
    std::vector<int64_t> rows;
    std::vector<uint64_t> chunk_seeds;
    for (int64_t p = 0; p < end - begin; ++p) {
      for (int64_t j = 0; j < samples_per_prompt; ++j) {
        rows.push_back(p);
        chunk_seeds.push_back(seeds[(begin + p) * samples_per_prompt + j]);
      }
    }
    std::vector<Generation> gens = sample_from(model, prefix, rows, options, chunk_seeds);
    const int64_t pad = model.config().image_pad_token_id;
    for (Generation& g : gens) {
      g.prompt_index += begin;
      auto hit = pad >= 0 ? std::find(g.tokens.begin(), g.tokens.end(), pad) : g.tokens.end();
      if (hit != g.tokens.end() && hit + 1 != g.tokens.end()) {
        const size_t keep = static_cast<size_t>(hit - g.tokens.begin()) + 1;
        g.tokens.resize(keep);
        g.logprobs.resize(keep);
        g.stopped = false;
      } else if (hit != g.tokens.end()) {
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

TrainingBatch make_training_batch(const std::vector<ScoredSequence>& sequences,
                                  int64_t image_pad_id) {
  TrainingBatch batch;
  const int64_t B = static_cast<int64_t>(sequences.size());
  if (B == 0) throw std::runtime_error("make_training_batch: no sequences");
  int64_t S = 0;
  for (int64_t b = 0; b < B; ++b) {
    const ScoredSequence& s = sequences[b];
    if (!s.prompt || !s.response || s.prompt->empty() || s.response->empty()) {
      throw std::runtime_error("make_training_batch: sequence " + std::to_string(b) +
                               " has an empty prompt or response");
    }
    S = std::max<int64_t>(S, static_cast<int64_t>(s.prompt->size() + s.response->size()));
  }
  std::vector<int64_t> ids(B * S, 0), targets(B * S, 0);
  std::vector<int32_t> mask(B * S, 0);
  std::vector<Tensor> images;
  for (int64_t b = 0; b < B; ++b) {
    const ScoredSequence& s = sequences[b];
    const int64_t lp = static_cast<int64_t>(s.prompt->size());
    const int64_t lr = static_cast<int64_t>(s.response->size());
    const int64_t off = S - lp - lr;
    for (int64_t i = 0; i < lp; ++i) ids[b * S + off + i] = (*s.prompt)[i];
    for (int64_t i = 0; i < lr; ++i) ids[b * S + off + lp + i] = (*s.response)[i];
    for (int64_t i = off; i < S; ++i) mask[b * S + i] = 1;
    for (int64_t i = off; i + 1 < S; ++i) targets[b * S + i] = ids[b * S + i + 1];
    if (image_pad_id >= 0) {
      for (int64_t i = 0; i + 1 < lr; ++i) {
        if ((*s.response)[i] == image_pad_id) {
          throw std::runtime_error("make_training_batch: sequence " + std::to_string(b) +
                                   " has an image-pad token inside its response (token " +
                                   std::to_string(i) + ")");
        }
      }
      if (s.response->back() == image_pad_id) ids[b * S + S - 1] = 0;
    }
    batch.response_start.push_back(off + lp - 1);
    batch.response_length.push_back(lr);
    batch.tokens += lp + lr;
    if (s.pixels.defined())
      images.push_back(s.pixels.dim() == 3 ? s.pixels.unsqueeze(0) : s.pixels);
  }
  batch.length = S;
  batch.input.input_ids = Tensor::from_vector(ids, {B, S});
  batch.input.attention_mask = Tensor::from_vector(mask, {B, S});
  if (!images.empty()) {
    batch.input.pixels = images.size() == 1 ? images[0].contiguous() : concat(images, 0);
  }
  batch.targets = Tensor::from_vector(targets, {B, S});
  return batch;
}

Tensor scatter_response_values(const TrainingBatch& batch,
                               const std::vector<std::vector<float>>& values, float fill) {
  const int64_t B = static_cast<int64_t>(batch.response_start.size()), S = batch.length;
  if (static_cast<int64_t>(values.size()) != B) {
    throw std::runtime_error("scatter_response_values: " + std::to_string(values.size()) +
                             " rows for a batch of " + std::to_string(B));
  }
  std::vector<float> out(B * S, fill);
  for (int64_t b = 0; b < B; ++b) {
    if (static_cast<int64_t>(values[b].size()) != batch.response_length[b]) {
      throw std::runtime_error("scatter_response_values: row " + std::to_string(b) + " has " +
                               std::to_string(values[b].size()) + " values for a response of " +
                               std::to_string(batch.response_length[b]) + " tokens");
    }
    std::copy(values[b].begin(), values[b].end(), out.begin() + b * S + batch.response_start[b]);
  }
  return Tensor::from_vector(out, {B, S});
}

std::vector<std::vector<float>> gather_response_values(const TrainingBatch& batch,
                                                       const Tensor& t) {
  const int64_t B = static_cast<int64_t>(batch.response_start.size()), S = batch.length;
  std::vector<float> flat = t.contiguous().to_vector<float>();
  if (static_cast<int64_t>(flat.size()) != B * S) {
    throw std::runtime_error("gather_response_values: tensor " + t.str() +
                             " does not match the batch [" + std::to_string(B) + ", " +
                             std::to_string(S) + "]");
  }
  std::vector<std::vector<float>> out(B);
  for (int64_t b = 0; b < B; ++b) {
    auto first = flat.begin() + b * S + batch.response_start[b];
    out[b].assign(first, first + batch.response_length[b]);
  }
  return out;
}

std::vector<std::vector<float>> score_responses(const VLM& model,
                                                const std::vector<ScoredSequence>& sequences,
                                                int64_t micro_batch_size) {
  NoGradGuard no_grad;
  std::vector<std::vector<float>> out;
  out.reserve(sequences.size());
  const int64_t n = static_cast<int64_t>(sequences.size());
  for (int64_t begin = 0; begin < n; begin += micro_batch_size) {
    const int64_t end = std::min(n, begin + micro_batch_size);
    std::vector<ScoredSequence> micro(sequences.begin() + begin, sequences.begin() + end);
    TrainingBatch batch = make_training_batch(micro, model.config().image_pad_token_id);
    TokenLogprobs lp = model.token_logprobs(batch.input, batch.targets);
    for (auto& row : gather_response_values(batch, lp.logprobs)) out.push_back(std::move(row));
  }
  return out;
}

}  // namespace visplay::rl
