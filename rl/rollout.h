// Rollouts and training batches: batched generation with prefix sharing (every prompt is
// prefilled once and its KV cache rows are shared by all of its samples), and the left-padded
// prompt + response batches that the GRPO training forward scores.
#pragma once

#include <cstdint>
#include <vector>

#include "model/completion.h"
#include "model/policy.h"
#include "model/sampler.h"
#include "model/vlm.h"
#include "rl/config.h"

namespace visplay::rl {

// The sampler's options from a config sampling block (temperature 0 = greedy).
SamplingOptions to_sampling_options(const SamplingConfig& config, int64_t stop_token);

struct GenerationStats {
  int64_t sequences = 0;
  int64_t generated_tokens = 0;
  double seconds = 0;
};

// samples_per_prompt samples of every prompt; output p * samples_per_prompt + j is sample j of
// prompt p, with its own seed derived from `seed` and its index. Prompts are processed in
// chunks of at most max_batch_sequences sequences (at least one prompt per chunk); a
// sequence's seed does not depend on the chunking. stats (nullable) accumulates.
// The sampler bans the image-pad token (fed back, it would be replaced by a visual token); as a
// guard a sequence is still cut just before any image pad (stopped = false).
// `seed_index` (data parallel): the position of each prompt in the global batch, so that a
// prompt gets the seeds it would get in a single-process run of the whole batch; null means
// 0, 1, 2, ...
std::vector<Generation> generate_groups(const PolicyModel& model,
                                        const std::vector<PromptInput>& prompts,
                                        int64_t samples_per_prompt, const SamplingOptions& options,
                                        uint64_t seed, int64_t max_batch_sequences,
                                        GenerationStats* stats = nullptr,
                                        const std::vector<int64_t>* seed_index = nullptr);
// The same on the demo VLM (through VLMPolicy).
std::vector<Generation> generate_groups(const VLM& model, const std::vector<PromptInput>& prompts,
                                        int64_t samples_per_prompt, const SamplingOptions& options,
                                        uint64_t seed, int64_t max_batch_sequences,
                                        GenerationStats* stats = nullptr,
                                        const std::vector<int64_t>* seed_index = nullptr);

// Per-token values of ragged rows as a right-padded [N, L] f32 tensor (`fill` beyond a row's
// end), the layout of completion_logprobs.
Tensor pad_rows(const std::vector<std::vector<float>>& rows, int64_t length, float fill = 0.0f);

// Log-probs (no gradient) of every completion token: completions[i] continues prompts[rows[i]].
// Micro-batched; each prompt's image is encoded once per micro-batch.
std::vector<std::vector<float>> score_completions(
    const PolicyModel& model, const std::vector<PromptInput>& prompts,
    const std::vector<int64_t>& rows, const std::vector<std::vector<int64_t>>& completions,
    int64_t micro_batch_size);
std::vector<std::vector<float>> score_completions(
    const VLM& model, const std::vector<PromptInput>& prompts, const std::vector<int64_t>& rows,
    const std::vector<std::vector<int64_t>>& completions, int64_t micro_batch_size);

}  // namespace visplay::rl
