// Tokenizers: text <-> token ids.
//
// Two models sit behind one interface:
//   - byte-level BPE (GPT-2, Qwen2/2.5-VL), loaded from a Hugging Face tokenizer.json or
//     from GPT-2's encoder.json + vocab.bpe;
//   - word-level (the tiny ShapeWorld model), from a tokenizer.json whose model type is
//     "WordLevel" (see model/shapeworld_vocab.h and docs/tokenizers.md).
// encode() never adds special tokens: only those literally present in the text appear.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace visplay {

namespace tokenizer_detail {
struct TokenizerAccess;  // lets the loaders fill in the protected tables
}

// Ids of the special tokens the rest of the project asks for by role. -1 when the
// vocabulary has no such token.
struct SpecialTokenIds {
  int32_t pad = -1;
  int32_t eos = -1;  // end of a document / generation
  int32_t bos = -1;
  int32_t unk = -1;
  int32_t im_start = -1;  // <|im_start|>
  int32_t im_end = -1;    // <|im_end|>
  int32_t vision_start = -1;
  int32_t vision_end = -1;
  int32_t image_pad = -1;  // one per visual token in the prompt
};

// One token added on top of the model's vocabulary (tokenizer.json "added_tokens").
// Added tokens are matched in the raw text before anything else, longest match first.
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;
  bool lstrip = false;       // the match swallows whitespace on its left
  bool rstrip = false;       // ... and on its right
  bool single_word = false;  // only matches when not inside a word
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text (UTF-8; invalid bytes are tolerated by the BPE models) to ids.
  virtual std::vector<int32_t> encode(std::string_view text) const = 0;
  // Ids back to text. Byte-level BPE returns the raw bytes (a prefix of a multi-byte
  // character stays as partial bytes, never replaced by U+FFFD). Throws on an unknown id.
  virtual std::string decode(std::span<const int32_t> ids) const = 0;

  // The vocabulary's own spelling of a token ("Ġthe" for byte-level BPE). -1 when absent.
  virtual int32_t token_to_id(std::string_view token) const = 0;
  // Throws std::out_of_range for an id that names no token.
  virtual const std::string& id_to_token(int32_t id) const = 0;
  // Largest id + 1 (the size an embedding table needs at least).
  virtual int32_t vocab_size() const = 0;
  // "bpe" or "word_level".
  virtual std::string_view kind() const = 0;

  const SpecialTokenIds& special_ids() const { return special_ids_; }
  const std::vector<AddedToken>& added_tokens() const { return added_tokens_; }
  // True for added tokens flagged "special" (chat markers, vision placeholders, eos...).
  bool is_special(int32_t id) const;
  // Where it was loaded from (for error messages).
  const std::string& origin() const { return origin_; }

 protected:
  friend struct tokenizer_detail::TokenizerAccess;
  SpecialTokenIds special_ids_;
  std::vector<AddedToken> added_tokens_;
  std::string origin_;
};

// Loads a tokenizer from PATH: a tokenizer.json file, a folder holding tokenizer.json,
// or a folder holding GPT-2's encoder.json + vocab.bpe. A tokenizer_config.json beside a
// tokenizer.json may name eos/pad/bos/unk tokens. Throws std::runtime_error naming the
// file and the problem.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Same for a tokenizer.json already in memory. ORIGIN names it in error messages.
std::unique_ptr<Tokenizer> load_tokenizer_from_json(std::string_view json_text,
                                                    const std::string& origin);

// GPT-2's original files: encoder.json (token -> id) and vocab.bpe (merges, one "a b" a
// line after a "#version" header), with GPT-2's own pre-tokenizer regex.
std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& encoder_json_path,
                                               const std::string& vocab_bpe_path);

}  // namespace visplay
