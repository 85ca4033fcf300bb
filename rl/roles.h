// The two roles as token sequences: the chat template that wraps a user turn (image + text)
// into a prompt, the role prompts (Questioner; Reasoner direct / vote / train), the response
// formats and the stop token. Every prompt the loop, the warm start, eval and the demo feed a
// model is built here, so that training and generation prompts can never drift apart (one of
// the reference code's weak points).
//
// Two chat presets:
//   shapeworld  word-level vocabulary, tokens separated by single spaces:
//     <|im_start|> user <|vision_start|> <|image_pad|> x N <|vision_end|> TEXT <|im_end|>
//     <|im_start|> assistant
//   qwen        Qwen2.5-VL instruct:
//     <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n
//     <|vision_start|><|image_pad|> x N<|vision_end|>TEXT<|im_end|>\n<|im_start|>assistant\n
// A response ends with <|im_end|> (the stop token) in both.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer.h"
#include "rl/config.h"

namespace visplay::rl {

enum class ChatStyle { shapeworld, qwen };

struct ChatFormat {
  ChatStyle style = ChatStyle::shapeworld;
  std::string name;           // "shapeworld" | "qwen"
  std::string before_vision;  // text up to (not including) <|vision_start|>
  std::string after_vision;   // between <|vision_end|> and the user text
  std::string after_text;     // from the end of the user text to the assistant's first token
  std::string separator;      // between tokens that text must keep apart: " " or ""

  static ChatFormat shapeworld();
  static ChatFormat qwen();
  // "shapeworld" | "qwen"; throws std::runtime_error naming the bad value.
  static ChatFormat from_name(std::string_view name);
  // The natural preset for a tokenizer: word level -> shapeworld, BPE -> qwen.
  static ChatFormat for_tokenizer(const Tokenizer& tokenizer);
};

// The ShapeWorld prompt texts (word-level vocabulary). The paper-style defaults of
// PromptConfig are long English instructions meant for a real instruct model.
PromptConfig shapeworld_prompts();

// The Reasoner is prompted three ways (see docs/evolve.md): `direct` when it is the uncertainty
// oracle for the Questioner's reward, `vote` when it votes for silver labels, `train` in its
// own GRPO phase.
enum class ReasonerMode { direct, vote, train };

// The whole prompt as text, N image pads included (for inspection, logs and tests).
std::string render_prompt_text(const ChatFormat& format, int64_t num_visual_tokens,
                               std::string_view user_text);

// The prompt as ids. The image-pad run is inserted as ids (not encoded from text) so that a
// long run costs nothing. Throws std::runtime_error when the tokenizer lacks a chat or vision
// special token, or num_visual_tokens < 0.
std::vector<int64_t> build_prompt(const ChatFormat& format, const Tokenizer& tokenizer,
                                  int64_t num_visual_tokens, std::string_view user_text);

std::vector<int64_t> build_questioner_prompt(const ChatFormat& format, const Tokenizer& tokenizer,
                                             int64_t num_visual_tokens,
                                             const PromptConfig& prompts);

// The Reasoner's user text: the mode's template with {question} replaced (every occurrence).
std::string reasoner_prompt_text(const PromptConfig& prompts, ReasonerMode mode,
                                 std::string_view question);
std::vector<int64_t> build_reasoner_prompt(const ChatFormat& format, const Tokenizer& tokenizer,
                                           int64_t num_visual_tokens, std::string_view question,
                                           ReasonerMode mode, const PromptConfig& prompts);

// A Questioner response in the expected format: "<question> Q </question>" (shapeworld) or
// "<question>Q</question>" (qwen). Without the stop token.
std::string format_questioner_response(const ChatFormat& format, std::string_view question);
// A Reasoner response: optional reasoning then "\boxed{ANSWER}" (shapeworld: "\boxed{ A }").
std::string format_reasoner_response(const ChatFormat& format, std::string_view reasoning,
                                     std::string_view answer);

// The token that ends a response (<|im_end|>). Throws when the vocabulary lacks it.
int64_t stop_token_id(const Tokenizer& tokenizer);

// A response text as ids with the stop token appended (targets for supervised training).
std::vector<int64_t> encode_response(const Tokenizer& tokenizer, std::string_view response);

// Generated ids back to text, a trailing stop token dropped. Invalid UTF-8 (a multi-byte
// character cut by the token limit, or byte tokens a model strings together) becomes U+FFFD,
// as the reference's decode does, so every text the loop logs, saves or reprompts with is valid.
std::string decode_response(const Tokenizer& tokenizer, std::span<const int64_t> tokens);

// `text` with each maximal invalid UTF-8 subpart replaced by U+FFFD (Python's
// bytes.decode("utf-8", errors="replace")).
std::string replace_invalid_utf8(std::string_view text);

}  // namespace visplay::rl

namespace visplay::rl {

// The prompts to use with this tokenizer: with a word-level (ShapeWorld) vocabulary, every
// prompt still at the paper's English default is replaced by its shapeworld_prompts() text (the
// English words are not in that vocabulary); explicit settings are kept.
PromptConfig resolve_prompts(const PromptConfig& prompts, const Tokenizer& tokenizer);

}  // namespace visplay::rl
