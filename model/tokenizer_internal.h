// Pieces shared by the tokenizer implementations (not part of the public interface).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/tokenizer.h"

namespace visplay::tokenizer_detail {

// ---- UTF-8 ------------------------------------------------------------------------
// Decodes the code point at text[pos]; sets `length` to the bytes used. An invalid or
// truncated sequence yields -1 with length 1 (the single bad byte).
int32_t utf8_decode(std::string_view text, size_t pos, size_t* length);
void utf8_append(std::string& out, uint32_t code_point);
bool is_ascii_whitespace(unsigned char c);

// ---- normalisation ----------------------------------------------------------------
enum class Normalizer { kNone, kNfc };
// Unicode NFC (canonical decomposition, canonical ordering, canonical composition).
// Invalid UTF-8 bytes pass through unchanged and act as starters that compose with nothing.
std::string nfc(std::string_view text);
// True when nfc(text) == text is certain without running it (pure ASCII / no
// combining-sensitive characters), the fast path.
bool nfc_quick_check(std::string_view text);
std::string apply_normalizer(Normalizer normalizer, std::string_view text);

// ---- added tokens ------------------------------------------------------------------
// A piece of input text: either an added token (id >= 0) or plain text to hand to the
// model (id == -1).
struct Segment {
  int32_t added_id;
  std::string_view text;
};

// Finds added tokens in raw text, leftmost first and, among matches starting at the same
// place, longest first (Hugging Face's leftmost-longest rule).
class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  explicit AddedTokenMatcher(const std::vector<AddedToken>& tokens);
  std::vector<Segment> split(std::string_view text) const;
  bool empty() const { return tokens_.empty(); }

 private:
  std::vector<AddedToken> tokens_;
  // For each first byte, indices into tokens_ sorted by content length, longest first.
  std::vector<std::vector<int32_t>> by_first_byte_;
};

// ---- model construction ------------------------------------------------------------
// Token ids must lie in [0, kMaxTokenId]: the id -> token table is dense, so one
// absurd id in a file would otherwise allocate gigabytes (Qwen2's largest is ~152k).
constexpr int64_t kMaxTokenId = (int64_t{1} << 24) - 1;

// Everything a byte-level BPE needs, already parsed from whichever file format.
struct BpeSpec {
  std::string origin;
  std::vector<std::pair<std::string, int32_t>> vocab;       // token (byte-level spelling) -> id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::string split_regex;  // pre-tokenizer pattern; empty = the whole segment is one piece
  bool add_prefix_space = false;
  bool ignore_merges = false;  // a piece found whole in the vocabulary skips the merges
  Normalizer normalizer = Normalizer::kNone;
  std::vector<AddedToken> added_tokens;
  SpecialTokenIds special_ids;
};

struct WordLevelSpec {
  std::string origin;
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::string unk_token;          // may be empty: unknown words then raise an error
  bool split_punctuation = true;  // ASCII punctuation becomes its own token
  Normalizer normalizer = Normalizer::kNone;
  std::vector<AddedToken> added_tokens;
  SpecialTokenIds special_ids;
};

std::unique_ptr<Tokenizer> make_byte_level_bpe(BpeSpec spec);
std::unique_ptr<Tokenizer> make_word_level(WordLevelSpec spec);

// Stores vocab + added tokens into an id -> token table, checking ids are unique and
// non-negative. Holes stay empty strings, flagged in `present`.
void build_id_table(const std::string& origin,
                    const std::vector<std::pair<std::string, int32_t>>& vocab,
                    const std::vector<AddedToken>& added, std::vector<std::string>* id_to_token,
                    std::vector<bool>* present,
                    std::unordered_map<std::string, int32_t>* token_to_id);

// Write access to a Tokenizer's protected tables for the loaders and implementations.
struct TokenizerAccess {
  static SpecialTokenIds& special_ids(Tokenizer& t) { return t.special_ids_; }
  static std::vector<AddedToken>& added_tokens(Tokenizer& t) { return t.added_tokens_; }
  static std::string& origin(Tokenizer& t) { return t.origin_; }
};

// The id <-> token tables both vocabulary models keep, with the lookups of the
// Tokenizer interface that only read them. Filled by build_id_table.
class TableTokenizer : public Tokenizer {
 public:
  int32_t token_to_id(std::string_view token) const override {
    auto it = token_to_id_.find(std::string(token));
    return it == token_to_id_.end() ? -1 : it->second;
  }
  const std::string& id_to_token(int32_t id) const override {
    check_id(id);
    return id_to_token_[id];
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(id_to_token_.size()); }

 protected:
  void check_id(int32_t id) const {
    if (id < 0 || id >= vocab_size() || !present_[id]) {
      throw std::out_of_range(origin_ + ": no token has id " + std::to_string(id));
    }
  }

  std::vector<std::string> id_to_token_;
  std::vector<bool> present_;
  std::unordered_map<std::string, int32_t> token_to_id_;
};

// GPT-2's byte <-> unicode table: printable bytes map to themselves, the rest to U+0100+.
const std::vector<std::string>& byte_to_unicode();

}  // namespace visplay::tokenizer_detail
