#include "rl/roles.h"

#include <stdexcept>

namespace visplay::rl {
namespace {

constexpr std::string_view kVisionStart = "<|vision_start|>";
constexpr std::string_view kVisionEnd = "<|vision_end|>";
constexpr std::string_view kImagePad = "<|image_pad|>";

int64_t require_special(int32_t id, std::string_view what, const Tokenizer& tokenizer) {
  if (id < 0) {
    throw std::runtime_error("tokenizer " + tokenizer.origin() + " has no " + std::string(what) +
                             " token, which the chat template needs");
  }
  return id;
}

void append_encoded(const Tokenizer& tokenizer, std::string_view text, std::vector<int64_t>& out) {
  for (int32_t id : tokenizer.encode(text)) out.push_back(id);
}

std::string replace_all(std::string text, std::string_view from, std::string_view to) {
  size_t at = 0;
  while ((at = text.find(from, at)) != std::string::npos) {
    text.replace(at, from.size(), to);
    at += to.size();
  }
  return text;
}

}  // namespace

// Aggregate initialisation (fields in declaration order: style, name, before_vision,
// after_vision, after_text, separator).
ChatFormat ChatFormat::shapeworld() {
  return ChatFormat{ChatStyle::shapeworld,
                    "shapeworld",
                    "<|im_start|> user ",
                    " ",
                    " <|im_end|> <|im_start|> assistant",
                    " "};
}

ChatFormat ChatFormat::qwen() {
  return ChatFormat{
      ChatStyle::qwen,
      "qwen",
      "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n",
      "",
      "<|im_end|>\n<|im_start|>assistant\n",
      ""};
}

ChatFormat ChatFormat::from_name(std::string_view name) {
  if (name == "shapeworld") return shapeworld();
  if (name == "qwen") return qwen();
  throw std::runtime_error("unknown chat format '" + std::string(name) +
                           "' (expected shapeworld or qwen)");
}

ChatFormat ChatFormat::for_tokenizer(const Tokenizer& tokenizer) {
  return tokenizer.kind() == "word_level" ? shapeworld() : qwen();
}

PromptConfig shapeworld_prompts() {
  PromptConfig p;
  p.questioner = "ask a question about the image .";
  p.reasoner_direct = "question : {question} answer directly .";
  p.reasoner_vote = "question : {question} reason step by step .";
  p.reasoner_train = "question : {question} reason step by step .";
  return p;
}

std::string render_prompt_text(const ChatFormat& format, int64_t num_visual_tokens,
                               std::string_view user_text) {
  if (num_visual_tokens < 0) {
    throw std::runtime_error(
        "render_prompt_text: num_visual_tokens = " + std::to_string(num_visual_tokens) + " < 0");
  }
  std::string text = format.before_vision;
  text += kVisionStart;
  text += format.separator;
  for (int64_t i = 0; i < num_visual_tokens; ++i) {
    text += kImagePad;
    text += format.separator;
  }
  text += kVisionEnd;
  text += format.after_vision;
  text += user_text;
  text += format.after_text;
  return text;
}

// Head (through <|vision_start|>) and tail (from <|vision_end|>) are encoded as text; the pads in
// between are inserted as ids. Special tokens are matched before anything else by both
// tokenizer kinds, so this equals encoding render_prompt_text() whole.
std::vector<int64_t> build_prompt(const ChatFormat& format, const Tokenizer& tokenizer,
                                  int64_t num_visual_tokens, std::string_view user_text) {
  if (num_visual_tokens < 0) {
    throw std::runtime_error(
        "build_prompt: num_visual_tokens = " + std::to_string(num_visual_tokens) + " < 0");
  }
  const SpecialTokenIds& special = tokenizer.special_ids();
  require_special(special.im_start, "<|im_start|>", tokenizer);
  require_special(special.im_end, "<|im_end|>", tokenizer);
  require_special(special.vision_start, kVisionStart, tokenizer);
  require_special(special.vision_end, kVisionEnd, tokenizer);
  const int64_t pad = require_special(special.image_pad, kImagePad, tokenizer);

  std::vector<int64_t> ids;
  ids.reserve(static_cast<size_t>(num_visual_tokens) + 64);
  append_encoded(tokenizer, format.before_vision + std::string(kVisionStart), ids);
  ids.insert(ids.end(), static_cast<size_t>(num_visual_tokens), pad);
  std::string tail(kVisionEnd);
  tail += format.after_vision;
  tail += user_text;
  tail += format.after_text;
  append_encoded(tokenizer, tail, ids);
  return ids;
}

std::vector<int64_t> build_questioner_prompt(const ChatFormat& format, const Tokenizer& tokenizer,
                                             int64_t num_visual_tokens,
                                             const PromptConfig& prompts) {
  return build_prompt(format, tokenizer, num_visual_tokens, prompts.questioner);
}

std::string reasoner_prompt_text(const PromptConfig& prompts, ReasonerMode mode,
                                 std::string_view question) {
  const std::string& templ = mode == ReasonerMode::direct ? prompts.reasoner_direct
                             : mode == ReasonerMode::vote ? prompts.reasoner_vote
                                                          : prompts.reasoner_train;
  if (templ.find("{question}") == std::string::npos) {
    throw std::runtime_error("reasoner prompt template has no {question} placeholder: '" + templ +
                             "'");
  }
  return replace_all(templ, "{question}", question);
}

std::vector<int64_t> build_reasoner_prompt(const ChatFormat& format, const Tokenizer& tokenizer,
                                           int64_t num_visual_tokens, std::string_view question,
                                           ReasonerMode mode, const PromptConfig& prompts) {
  return build_prompt(format, tokenizer, num_visual_tokens,
                      reasoner_prompt_text(prompts, mode, question));
}

std::string format_questioner_response(const ChatFormat& format, std::string_view question) {
  return "<question>" + format.separator + std::string(question) + format.separator + "</question>";
}

std::string format_reasoner_response(const ChatFormat& format, std::string_view reasoning,
                                     std::string_view answer) {
  std::string text(reasoning);
  if (!text.empty()) text += " ";
  text += "\\boxed{" + format.separator + std::string(answer) + format.separator + "}";
  return text;
}

int64_t stop_token_id(const Tokenizer& tokenizer) {
  return require_special(tokenizer.special_ids().im_end, "<|im_end|>", tokenizer);
}

std::vector<int64_t> encode_response(const Tokenizer& tokenizer, std::string_view response) {
  std::vector<int64_t> ids;
  append_encoded(tokenizer, response, ids);
  ids.push_back(stop_token_id(tokenizer));
  return ids;
}

std::string decode_response(const Tokenizer& tokenizer, std::span<const int64_t> tokens) {
  size_t n = tokens.size();
  if (n > 0 && tokens[n - 1] == tokenizer.special_ids().im_end) --n;
  std::vector<int32_t> ids(tokens.begin(), tokens.begin() + static_cast<std::ptrdiff_t>(n));
  return replace_invalid_utf8(tokenizer.decode(ids));
}

// The Unicode "maximal subpart" rule: a lead byte followed by fewer valid continuation bytes
// than it needs is one replacement; a byte that cannot start a sequence is one replacement.
std::string replace_invalid_utf8(std::string_view text) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(text.size());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const auto c = static_cast<uint8_t>(text[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
      ++i;
      continue;
    }
    int need = 0;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the first continuation byte
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c == 0xE0) {
      need = 2, lo = 0xA0;
    } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
      need = 2;
    } else if (c == 0xED) {
      need = 2, hi = 0x9F;
    } else if (c == 0xF0) {
      need = 3, lo = 0x90;
    } else if (c >= 0xF1 && c <= 0xF3) {
      need = 3;
    } else if (c == 0xF4) {
      need = 3, hi = 0x8F;
    } else {
      out += kReplacement;
      ++i;
      continue;
    }
    size_t j = i + 1;
    int got = 0;
    while (got < need && j < n) {
      const auto d = static_cast<uint8_t>(text[j]);
      if (got == 0 ? (d < lo || d > hi) : (d < 0x80 || d > 0xBF)) break;
      ++j, ++got;
    }
    if (got == need) {
      out.append(text.substr(i, j - i));
    } else {
      out += kReplacement;
    }
    i = j;
  }
  return out;
}

}  // namespace visplay::rl

namespace visplay::rl {

PromptConfig resolve_prompts(const PromptConfig& prompts, const Tokenizer& tokenizer) {
  if (tokenizer.kind() != "word_level") return prompts;
  const PromptConfig paper;
  const PromptConfig sw = shapeworld_prompts();
  PromptConfig out = prompts;
  if (out.questioner == paper.questioner) out.questioner = sw.questioner;
  if (out.reasoner_direct == paper.reasoner_direct) out.reasoner_direct = sw.reasoner_direct;
  if (out.reasoner_vote == paper.reasoner_vote) out.reasoner_vote = sw.reasoner_vote;
  if (out.reasoner_train == paper.reasoner_train) out.reasoner_train = sw.reasoner_train;
  return out;
}

}  // namespace visplay::rl
