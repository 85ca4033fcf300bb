// Rollouts and training batches: batched generation with prefix sharing (every prompt is
// prefilled once and its KV cache rows are shared by all of its samples), and the left-padded
// prompt + response batches that the GRPO training forward scores.
#pragma once

#include <cstdint>
#include <vector>

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
// A generated image-pad token would be replaced by a visual token if it were fed back to the
// model, so a sequence is cut right after its first one (the pad stays as its last token, so
// the policy is still trained on having emitted it; stopped = false).
std::vector<Generation> generate_groups(const VLM& model, const std::vector<PromptInput>& prompts,
                                        int64_t samples_per_prompt, const SamplingOptions& options,
                                        uint64_t seed, int64_t max_batch_sequences,
                                        GenerationStats* stats = nullptr);

// One sequence to score: a prompt (ids + image) followed by a response.
struct ScoredSequence {
  const std::vector<int64_t>* prompt = nullptr;
  const std::vector<int64_t>* response = nullptr;
  Tensor pixels;  // [3, H, W] or [1, 3, H, W]; undefined for text only
};

// A left-padded batch of prompt + response sequences. Response token k of row b is predicted
// at column response_start[b] + k (its log-prob is token_logprobs' output there).
struct TrainingBatch {
  VLMInput input;
  Tensor targets;                       // [B, S] i64: the next token (0 in the last column)
  std::vector<int64_t> response_start;  // per row: the column predicting its first response token
  std::vector<int64_t> response_length;
  int64_t length = 0;  // S
  int64_t tokens = 0;  // real tokens in the batch (prompt + response)
};
// A response may end with the image-pad token (see generate_groups): its input slot, which
// predicts nothing, is written as token 0 so that the model sees no extra image pad. An image
// pad anywhere else in a response is an error.
TrainingBatch make_training_batch(const std::vector<ScoredSequence>& sequences,
                                  int64_t image_pad_id = -1);

// Per-token values of the responses laid out like the batch: out[b, response_start[b] + k] =
// values[b][k], `fill` elsewhere. [B, S] f32.
Tensor scatter_response_values(const TrainingBatch& batch,
                               const std::vector<std::vector<float>>& values, float fill);
// The reverse: values[b][k] = t[b, response_start[b] + k].
std::vector<std::vector<float>> gather_response_values(const TrainingBatch& batch, const Tensor& t);

// Log-probs of every response token under `model` (no gradient), micro-batched.
std::vector<std::vector<float>> score_responses(const VLM& model,
                                                const std::vector<ScoredSequence>& sequences,
                                                int64_t micro_batch_size);

}  // namespace visplay::rl
