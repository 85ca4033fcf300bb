// Word-level tokenizer (the tiny ShapeWorld model): added tokens first, then the text is
// split at whitespace and each ASCII punctuation mark (except '_') becomes its own token;
// every word is looked up whole, unknown words become the unk token.
//
// Decoding rebuilds the canonical spacing. Each token has a spacing class:
//   glue  - special tokens (<|im_start|>, ...) and whitespace tokens ("\n"): no space on
//           either side;
//   open  - opening tags "<think>", and tokens ending in ( [ { such as "\boxed{": no space
//           after;
//   close - closing tags "</think>" and ) ] } ? , . ! : ; : no space before;
//   word  - everything else (including the unk token).
// Two neighbours get one space between them unless the left one is glue/open or the right
// one is glue/close. A text is canonical when it is spelled that way; then
// decode(encode(text)) == text.
#include <cctype>
#include <stdexcept>
#include <unordered_map>

#include "model/tokenizer_internal.h"

namespace visplay::tokenizer_detail {
namespace {

enum class Spacing : uint8_t { kWord, kGlue, kOpen, kClose };

bool is_split_punctuation(unsigned char c) { return c < 0x80 && std::ispunct(c) && c != '_'; }

// Unicode White_Space characters (Hugging Face's WhitespaceSplit uses char::is_whitespace).
bool is_unicode_whitespace(int32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

Spacing spacing_of(const std::string& token, bool special, bool is_unk) {
  // Empty: an id the vocabulary skips (ids need not be dense) or an empty token.
  if (is_unk || token.empty()) return Spacing::kWord;
  bool all_space = !token.empty();
  for (unsigned char c : token) all_space = all_space && is_ascii_whitespace(c);
  if (special || all_space) return Spacing::kGlue;
  if (token.size() >= 4 && token.starts_with("<|") && token.ends_with("|>")) return Spacing::kGlue;
  if (token.size() >= 3 && token.starts_with("</") && token.ends_with(">")) return Spacing::kClose;
  if (token.size() >= 3 && token.starts_with("<") && token.ends_with(">")) return Spacing::kOpen;
  char last = token.back();
  if (last == '(' || last == '[' || last == '{') return Spacing::kOpen;
  if (token.size() == 1 && std::string_view(")]}?,.!:;").find(token[0]) != std::string::npos) {
    return Spacing::kClose;
  }
  return Spacing::kWord;
}

class WordLevel final : public TableTokenizer {
 public:
  explicit WordLevel(WordLevelSpec spec);

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string_view kind() const override { return "word_level"; }

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  void encode_segment(std::string_view text, std::vector<int32_t>& out) const;

  std::vector<Spacing> spacing_;
  AddedTokenMatcher added_;
  Normalizer normalizer_;
  bool split_punctuation_;
  int32_t unk_id_ = -1;
};

WordLevel::WordLevel(WordLevelSpec spec)
    : added_(spec.added_tokens),
      normalizer_(spec.normalizer),
      split_punctuation_(spec.split_punctuation) {
  origin_ = spec.origin;
  added_tokens_ = spec.added_tokens;
  special_ids_ = spec.special_ids;
  build_id_table(origin_, spec.vocab, spec.added_tokens, &id_to_token_, &present_, &token_to_id_);
  if (!spec.unk_token.empty()) {
    unk_id_ = token_to_id(spec.unk_token);
    if (unk_id_ < 0) {
      throw std::runtime_error(origin_ + ": model.unk_token \"" + spec.unk_token +
                               "\" is not in the vocabulary");
    }
    special_ids_.unk = unk_id_;
  }
  spacing_.resize(id_to_token_.size());
  for (size_t id = 0; id < id_to_token_.size(); ++id) {
    spacing_[id] = spacing_of(id_to_token_[id], is_special(static_cast<int32_t>(id)),
                              static_cast<int32_t>(id) == unk_id_);
  }
}

std::vector<int32_t> WordLevel::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  for (const Segment& segment : added_.split(text)) {
    if (segment.added_id >= 0) {
      ids.push_back(segment.added_id);
    } else if (normalizer_ != Normalizer::kNone) {
      encode_segment(apply_normalizer(normalizer_, segment.text), ids);
    } else {
      encode_segment(segment.text, ids);
    }
  }
  return ids;
}

void WordLevel::encode_segment(std::string_view text, std::vector<int32_t>& out) const {
  size_t word_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t len;
    int32_t cp = utf8_decode(text, pos, &len);
    if (is_unicode_whitespace(cp)) {
      if (pos > word_start) encode_word(text.substr(word_start, pos - word_start), out);
      word_start = pos + len;
    }
    pos += len;
  }
  if (pos > word_start) encode_word(text.substr(word_start, pos - word_start), out);
}

void WordLevel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  auto emit = [&](std::string_view piece) {
    auto it = token_to_id_.find(std::string(piece));
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
    } else if (unk_id_ >= 0) {
      out.push_back(unk_id_);
    } else {
      throw std::runtime_error(origin_ + ": word \"" + std::string(piece) +
                               "\" is not in the vocabulary and there is no unk_token");
    }
  };
  if (!split_punctuation_) {
    emit(word);
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < word.size(); ++i) {
    if (!is_split_punctuation(static_cast<unsigned char>(word[i]))) continue;
    if (i > start) emit(word.substr(start, i - start));
    emit(word.substr(i, 1));
    start = i + 1;
  }
  if (start < word.size()) emit(word.substr(start));
}

std::string WordLevel::decode(std::span<const int32_t> ids) const {
  std::string text;
  Spacing previous = Spacing::kGlue;  // nothing before the first token
  for (int32_t id : ids) {
    check_id(id);
    Spacing current = spacing_[id];
    bool space = previous != Spacing::kGlue && previous != Spacing::kOpen &&
                 current != Spacing::kGlue && current != Spacing::kClose;
    if (space) text.push_back(' ');
    text += id_to_token_[id];
    previous = current;
  }
  return text;
}

}  // namespace

std::unique_ptr<Tokenizer> make_word_level(WordLevelSpec spec) {
  return std::make_unique<WordLevel>(std::move(spec));
}

}  // namespace visplay::tokenizer_detail
