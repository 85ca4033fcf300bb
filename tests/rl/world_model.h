// A tiny ShapeWorld-style model for the loop tests: a word-level tokenizer with the ShapeWorld
// words, prompt words and tags; a VLM sized to it; and a few seconds of supervised warm start
// so that it asks valid questions and answers in \boxed{} with mixed answers (a random model
// almost never does, and the loop would then have nothing to train on).
#pragma once

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/tokenizer.h"
#include "rl/roles.h"
#include "rl/rollout.h"
#include "runtime/ops.h"
#include "runtime/optim.h"
#include "tests/rl/tiny_model.h"

namespace visplay::rl::testing {

inline std::string world_tokenizer_json() {
  std::vector<std::string> words = {
      "[UNK]", "user",  "assistant", "ask",    "a",        "question", "about", "the",
      "image", ".",     ":",         "answer", "directly", "reason",   "step",  "by",
      "how",   "many",  "objects",   "are",    "there",    "?",        "is",    "red",
      "green", "blue",  "circle",    "square", "circles",  "squares",  "0",     "1",
      "2",     "3",     "4",         "5",      "6",        "yes",      "no",    "}",
      "what",  "color", "shape",     "object", "none"};
  std::vector<std::string> added = {"<|im_start|>",   "<|im_end|>",    "<|vision_start|>",
                                    "<|vision_end|>", "<|image_pad|>", "\\boxed{",
                                    "<question>",     "</question>"};
  nlohmann::json vocab = nlohmann::json::object();
  int id = 0;
  for (const auto& w : words) vocab[w] = id++;
  nlohmann::json list = nlohmann::json::array();
  for (const auto& a : added) {
    vocab[a] = id;
    list.push_back({{"id", id}, {"content", a}, {"special", a.rfind("<|", 0) == 0}});
    ++id;
  }
  nlohmann::json root = {
      {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "[UNK]"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         nlohmann::json::array({{{"type", "WhitespaceSplit"}},
                                {{"type", "Punctuation"}, {"behavior", "Isolated"}}})}}},
      {"added_tokens", list}};
  return root.dump();
}

inline VLMConfig world_config(const Tokenizer& tok) {
  VLMConfig c = tiny_config(tok.vocab_size());
  const SpecialTokenIds& s = tok.special_ids();
  c.image_pad_token_id = s.image_pad;
  c.vision_start_token_id = s.vision_start;
  c.vision_end_token_id = s.vision_end;
  c.eos_token_id = s.im_end;
  c.pad_token_id = -1;
  return c;
}

// Supervised warm start on (prompt, response) pairs: mean negative log-likelihood of the
// response tokens, AdamW.
inline void warm_start(VLM& model, const std::vector<PromptInput>& prompts,
                       const std::vector<std::vector<int64_t>>& responses, int steps, double lr) {
  model.params().set_requires_grad(true);
  AdamW opt(model.params().tensors(), AdamWOptions{lr, 0.9, 0.999, 1e-8, 0.0});
  std::vector<ScoredSequence> seqs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    seqs.push_back({&prompts[i].ids, &responses[i], prompts[i].pixels});
  }
  TrainingBatch batch = make_training_batch(seqs, model.config().image_pad_token_id);
  std::vector<std::vector<float>> ones;
  for (const auto& r : responses) ones.emplace_back(r.size(), 1.0f);
  Tensor mask = scatter_response_values(batch, ones, 0.0f);
  double count = 0;
  for (const auto& r : responses) count += static_cast<double>(r.size());
  for (int s = 0; s < steps; ++s) {
    opt.zero_grad();
    TokenLogprobs lp = model.token_logprobs(batch.input, batch.targets);
    Tensor loss = scale(sum(mul(lp.logprobs, mask)), -1.0 / count);
    loss.backward();
    opt.step();
  }
  opt.zero_grad();
  model.params().set_requires_grad(false);
}

}  // namespace visplay::rl::testing
