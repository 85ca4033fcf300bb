#include "model/completion.h"

#include <algorithm>
#include <stdexcept>

namespace visplay {

CompletionBatch make_completion_batch(const VLMConfig& c, const std::vector<PromptInput>& prompts,
                                      const std::vector<int64_t>& rows,
                                      const std::vector<std::vector<int64_t>>& completions) {
  auto fail = [](const std::string& what) {
    throw std::runtime_error("make_completion_batch: " + what);
  };
  if (rows.size() != completions.size())
    fail(std::to_string(rows.size()) + " rows but " + std::to_string(completions.size()) +
         " completions");
  if (rows.empty()) fail("no sequences");
  int64_t N = rows.size(), P = 0, L = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] < 0 || rows[i] >= static_cast<int64_t>(prompts.size()))
      fail("row " + std::to_string(i) + " names prompt " + std::to_string(rows[i]) + " of " +
           std::to_string(prompts.size()));
    P = std::max<int64_t>(P, prompts[rows[i]].ids.size());
    L = std::max<int64_t>(L, completions[i].size());
  }
  if (P == 0) fail("empty prompt");
  int64_t S = P + L, V = c.decoder.vocab_size, pad_id = c.pad_token_id >= 0 ? c.pad_token_id : 0;
  std::vector<int64_t> ids(N * S, pad_id), targets(N * std::max<int64_t>(L, 1), 0);
  std::vector<int32_t> mask(N * S, 0);
  std::vector<float> cmask(N * std::max<int64_t>(L, 1), 0.0f);
  for (int64_t i = 0; i < N; ++i) {
    const std::vector<int64_t>& p = prompts[rows[i]].ids;
    int64_t off = P - static_cast<int64_t>(p.size());
    for (size_t s = 0; s < p.size(); ++s) ids[i * S + off + s] = p[s], mask[i * S + off + s] = 1;
    for (size_t k = 0; k < completions[i].size(); ++k) {
      int64_t t = completions[i][k];
      if (t < 0 || t >= V)
        fail("completion " + std::to_string(i) + " has token " + std::to_string(t) +
             " outside the vocabulary of " + std::to_string(V));
      if (t == c.image_pad_token_id)
        fail("completion " + std::to_string(i) + " contains the image-pad token");
      ids[i * S + P + k] = t;
      mask[i * S + P + k] = 1;
      targets[i * L + k] = t;
      cmask[i * L + k] = 1.0f;
    }
  }
  CompletionBatch b;
  b.input.input_ids = Tensor::from_vector(ids, {N, S});
  b.input.attention_mask = Tensor::from_vector(mask, {N, S});
  b.targets = Tensor::from_vector(targets, {N, L});
  b.mask = Tensor::from_vector(cmask, {N, L});
  b.prompt_columns = P;
  b.max_completion = L;
  // Distinct prompts with images, each encoded once; image-pad slots of
  // sequence i read the visual rows of its prompt.
  std::vector<int64_t> first_image(prompts.size(), -1);
  std::vector<Tensor> images;
  int64_t T = c.has_vision ? c.vision.num_visual_tokens() : 0, count = 0;
  std::vector<int64_t> image_rows;
  for (int64_t i = 0; i < N; ++i) {
    const PromptInput& p = prompts[rows[i]];
    if (!p.pixels.defined()) continue;
    Tensor px = p.pixels.dim() == 3 ? p.pixels.unsqueeze(0) : p.pixels;
    if (first_image[rows[i]] < 0) {
      first_image[rows[i]] = count;
      count += px.size(0);
      images.push_back(px);
    }
    for (int64_t r = 0; r < px.size(0) * T; ++r) image_rows.push_back(first_image[rows[i]] * T + r);
  }
  if (!images.empty()) {
    b.unique_pixels = images.size() == 1 ? images[0] : concat(images, 0);
    b.image_rows = Tensor::from_vector(image_rows, {static_cast<int64_t>(image_rows.size())});
  }
  return b;
}

TokenLogprobs completion_logprobs(const VLM& model, const CompletionBatch& b) {
  const VLMConfig& c = model.config();
  int64_t D = c.decoder.hidden_size, N = b.input.input_ids.size(0);
  Tensor visual;
  if (b.unique_pixels.defined()) {
    Tensor unique = model.encode_images(b.unique_pixels.to(DType::f32));  // [P_img, T, D]
    int64_t T = unique.size(1);
    // Row lookup (differentiable): one copy of the prompt's visual tokens per sequence.
    visual = embedding(unique.reshape({-1, D}), b.image_rows).reshape({-1, T, D});
  }
  Tensor mask = b.input.attention_mask;
  Tensor hidden =
      model.decode(model.embed(b.input.input_ids, visual), positions_from_mask(mask), mask);
  int64_t P = b.prompt_columns, L = b.max_completion;
  if (L == 0) return {Tensor::zeros({N, 0}), Tensor::zeros({N, 0})};
  // Hidden state at column P-1+k predicts completion token k.
  Tensor h = hidden.slice(1, P - 1, P - 1 + L);
  TokenLogprobs lp = token_logprobs(h, model.head_weight(), b.targets);
  return {mul(lp.logprobs, b.mask), mul(lp.entropy, b.mask)};
}

}  // namespace visplay
