// Scoring completions for training (GRPO): the differentiable log-prob of
// every completion token given its prompt (and image), laid out [N, L] with
// completion token k of sequence i in column k, the same layout the sampler
// returns (Generation::tokens / logprobs).
//
// Batch layout: [left padding | prompt | completion | right padding], every
// prompt ending at the same column, so the hidden states that predict the
// completions are one slice. Each distinct prompt's image goes through the
// vision tower once, however many completions share it.
#pragma once
#include <vector>

#include "model/sampler.h"
#include "model/vlm.h"

namespace visplay {

struct CompletionBatch {
  VLMInput input;        // [N, S] ids and mask; input.pixels unused (see unique_pixels)
  Tensor unique_pixels;  // [P_img, 3, H, W]: each distinct prompt's images once (may be undefined)
  Tensor image_rows;  // [N_img * T] i64: visual-token row (into the unique set) per image-pad slot
  Tensor targets;     // [N, L] i64: completion tokens (0 where masked)
  Tensor mask;        // [N, L] f32: 1 for a real completion token
  int64_t prompt_columns = 0;  // S_prompt: completions start at this column
  int64_t max_completion = 0;  // L
};

// prompts: the distinct prompts; rows[i]: which prompt sequence i continues;
// completions[i]: its generated tokens (may be empty).
CompletionBatch make_completion_batch(const VLMConfig& config,
                                      const std::vector<PromptInput>& prompts,
                                      const std::vector<int64_t>& rows,
                                      const std::vector<std::vector<int64_t>>& completions);

// log p(completion token) per [N, L] slot (differentiable; 0 on masked
// slots) and the entropy of each predicting distribution.
TokenLogprobs completion_logprobs(const VLM& model, const CompletionBatch& batch);

}  // namespace visplay
