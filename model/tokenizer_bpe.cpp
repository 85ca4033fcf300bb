// Byte-level BPE (GPT-2 / Qwen2): added tokens are cut out of the raw text first, each
// remaining segment is normalised, split into pieces by the pre-tokenizer regex, and each
// piece's bytes are merged by rank into vocabulary tokens.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <queue>
#include <stdexcept>
#include <unordered_map>

#include "model/tokenizer_internal.h"

namespace visplay::tokenizer_detail {
namespace {

struct MergeResult {
  int32_t rank;
  int32_t merged_id;
};

uint64_t pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// One JIT stack per thread: a JIT stack must not be shared by concurrent matches, and the
// default 32 KiB is too small for long runs of whitespace.
struct JitStack {
  pcre2_jit_stack* stack = nullptr;
  JitStack() { stack = pcre2_jit_stack_create(32 * 1024, 16 * 1024 * 1024, nullptr); }
  ~JitStack() {
    if (stack) pcre2_jit_stack_free(stack);
  }
};

class ByteLevelBpe final : public TableTokenizer {
 public:
  explicit ByteLevelBpe(BpeSpec spec);
  ~ByteLevelBpe() override {
    if (regex_) pcre2_code_free(regex_);
  }

  std::vector<int32_t> encode(std::string_view text) const override;
  std::string decode(std::span<const int32_t> ids) const override;
  std::string_view kind() const override { return "bpe"; }

 private:
  void encode_segment(std::string_view segment, std::vector<int32_t>& out) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const;
  void merge_piece(std::string_view piece, std::vector<int32_t>& out) const;

  std::vector<std::string> id_to_bytes_;  // what each id decodes to
  std::array<int32_t, 256> byte_ids_;     // id of each single-byte token, -1 if absent
  std::unordered_map<uint64_t, MergeResult> merges_;
  pcre2_code* regex_ = nullptr;
  bool regex_jit_ = false;
  AddedTokenMatcher added_;
  Normalizer normalizer_;
  bool add_prefix_space_;
  bool ignore_merges_;

  // Pieces repeat a lot in real text; remember their tokens. Bounded: cleared when full.
  static constexpr size_t kCacheMaxEntries = 1 << 18;
  static constexpr size_t kCacheMaxPieceBytes = 64;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

ByteLevelBpe::ByteLevelBpe(BpeSpec spec)
    : added_(spec.added_tokens),
      normalizer_(spec.normalizer),
      add_prefix_space_(spec.add_prefix_space),
      ignore_merges_(spec.ignore_merges) {
  origin_ = spec.origin;
  added_tokens_ = spec.added_tokens;
  special_ids_ = spec.special_ids;
  build_id_table(origin_, spec.vocab, spec.added_tokens, &id_to_token_, &present_, &token_to_id_);

  // Byte-level spelling -> raw bytes, for decoding.
  std::unordered_map<std::string, unsigned char> unicode_to_byte;
  const auto& byte_spelling = byte_to_unicode();
  for (int b = 0; b < 256; ++b) {
    unicode_to_byte[byte_spelling[b]] = static_cast<unsigned char>(b);
    auto it = token_to_id_.find(byte_spelling[b]);
    byte_ids_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
  id_to_bytes_.resize(id_to_token_.size());
  for (size_t id = 0; id < id_to_token_.size(); ++id) {
    const std::string& token = id_to_token_[id];
    std::string& bytes = id_to_bytes_[id];
    for (size_t pos = 0; pos < token.size();) {
      size_t len;
      utf8_decode(token, pos, &len);
      auto it = unicode_to_byte.find(token.substr(pos, len));
      if (it != unicode_to_byte.end()) {
        bytes.push_back(static_cast<char>(it->second));
      } else {
        bytes.append(token, pos, len);  // not a byte-level character: keep it as is
      }
      pos += len;
    }
  }
  for (const AddedToken& t : added_tokens_) id_to_bytes_[t.id] = t.content;

  merges_.reserve(spec.merges.size());
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    // Plain references, not a structured binding: clang before 16 cannot capture one.
    const std::string& left = spec.merges[rank].first;
    const std::string& right = spec.merges[rank].second;
    auto find = [&](const std::string& token, const char* what) {
      auto it = token_to_id_.find(token);
      if (it == token_to_id_.end()) {
        throw std::runtime_error(origin_ + ": merge " + std::to_string(rank) + " (\"" + left +
                                 "\", \"" + right + "\"): " + what + " \"" + token +
                                 "\" is not in the vocabulary");
      }
      return it->second;
    };
    int32_t left_id = find(left, "left part");
    int32_t right_id = find(right, "right part");
    int32_t merged_id = find(left + right, "merged token");
    // A repeated merge keeps its first (best) rank, as in Hugging Face.
    merges_.emplace(pair_key(left_id, right_id),
                    MergeResult{static_cast<int32_t>(rank), merged_id});
  }

  if (!spec.split_regex.empty()) {
    int error_code;
    PCRE2_SIZE error_offset;
    regex_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(spec.split_regex.data()),
                           spec.split_regex.size(), PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                           &error_code, &error_offset, nullptr);
    if (regex_ == nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error_code, message, sizeof(message));
      throw std::runtime_error(origin_ + ": pre-tokenizer regex does not compile at offset " +
                               std::to_string(error_offset) + ": " +
                               reinterpret_cast<const char*>(message));
    }
    regex_jit_ = pcre2_jit_compile(regex_, PCRE2_JIT_COMPLETE) == 0;
  }
}

std::vector<int32_t> ByteLevelBpe::encode(std::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  for (const Segment& segment : added_.split(text)) {
    if (segment.added_id >= 0) {
      ids.push_back(segment.added_id);
    } else {
      encode_segment(segment.text, ids);
    }
  }
  return ids;
}

// Normalise, optionally prefix a space, then cut into pieces with the regex. Text the
// regex does not match (only possible with unusual patterns or invalid UTF-8) becomes a
// piece of its own, so no byte is ever dropped.
void ByteLevelBpe::encode_segment(std::string_view raw, std::vector<int32_t>& out) const {
  std::string normalized;
  std::string_view text = raw;
  if (normalizer_ != Normalizer::kNone && !nfc_quick_check(raw)) {
    normalized = apply_normalizer(normalizer_, raw);
    text = normalized;
  }
  if (add_prefix_space_ && (text.empty() || text[0] != ' ')) {
    std::string prefixed;
    prefixed.reserve(text.size() + 1);
    prefixed.push_back(' ');
    prefixed.append(text);
    normalized = std::move(prefixed);
    text = normalized;
  }
  if (regex_ == nullptr) {
    if (!text.empty()) encode_piece(text, out);
    return;
  }
  thread_local JitStack jit_stack;
  pcre2_match_data* match = pcre2_match_data_create_from_pattern(regex_, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  if (regex_jit_ && jit_stack.stack) pcre2_jit_stack_assign(context, nullptr, jit_stack.stack);
  auto release = [&] {
    pcre2_match_data_free(match);
    pcre2_match_context_free(context);
  };
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_start = 0;
  size_t search = 0;
  try {
    while (search < text.size()) {
      int rc = pcre2_match(regex_, subject, text.size(), search, 0, match, context);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0) {
        PCRE2_UCHAR message[256];
        pcre2_get_error_message(rc, message, sizeof(message));
        throw std::runtime_error(origin_ + ": pre-tokenizer regex failed at byte " +
                                 std::to_string(search) + ": " +
                                 reinterpret_cast<const char*>(message));
      }
      PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
      size_t start = ovector[0], end = ovector[1];
      if (end == start) {  // an empty match: step over one character and look again
        size_t len;
        utf8_decode(text, start, &len);
        search = start + len;
        continue;
      }
      if (start > gap_start) encode_piece(text.substr(gap_start, start - gap_start), out);
      encode_piece(text.substr(start, end - start), out);
      gap_start = search = end;
    }
  } catch (...) {
    release();
    throw;
  }
  release();
  if (gap_start < text.size()) encode_piece(text.substr(gap_start), out);
}

void ByteLevelBpe::encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
  if (piece.size() > kCacheMaxPieceBytes) {
    merge_piece(piece, out);
    return;
  }
  std::string key(piece);
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = out.size();
  merge_piece(piece, out);
  std::vector<int32_t> tokens(out.begin() + first, out.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kCacheMaxEntries) cache_.clear();
  cache_.emplace(std::move(key), std::move(tokens));
}

// BPE on one piece: start from one symbol per byte and repeatedly apply the best-ranked
// merge among adjacent pairs (leftmost first on ties). Symbols live in a linked list and
// candidate pairs in a heap, so a long piece costs O(n log n) rather than O(n^2).
void ByteLevelBpe::merge_piece(std::string_view piece, std::vector<int32_t>& out) const {
  const size_t n = piece.size();
  if (ignore_merges_) {
    std::string spelled;
    for (unsigned char b : piece) spelled += byte_to_unicode()[b];
    auto it = token_to_id_.find(spelled);
    if (it != token_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int32_t> ids(n), prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    unsigned char b = static_cast<unsigned char>(piece[i]);
    ids[i] = byte_ids_[b];
    if (ids[i] < 0) {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "0x%02X", b);
      throw std::runtime_error(origin_ + ": byte " + hex + " has no token in the vocabulary");
    }
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i) + 1 : -1;
  }
  if (n == 1) {
    out.push_back(ids[0]);
    return;
  }
  struct Candidate {
    int32_t rank, left, left_id, right_id, merged_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t left) {
    if (left < 0 || next[left] < 0) return;
    auto it = merges_.find(pair_key(ids[left], ids[next[left]]));
    if (it != merges_.end())
      heap.push({it->second.rank, left, ids[left], ids[next[left]], it->second.merged_id});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    Candidate c = heap.top();
    heap.pop();
    int32_t right = next[c.left];
    // Stale when either side has merged since the candidate was pushed (a dead symbol has
    // id -1, and a symbol's id only changes by growing).
    if (ids[c.left] != c.left_id || right < 0 || ids[right] != c.right_id) continue;
    ids[c.left] = c.merged_id;
    ids[right] = -1;
    next[c.left] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out.push_back(ids[i]);
}

std::string ByteLevelBpe::decode(std::span<const int32_t> ids) const {
  std::string text;
  for (int32_t id : ids) {
    check_id(id);
    text += id_to_bytes_[id];
  }
  return text;
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level_bpe(BpeSpec spec) {
  return std::make_unique<ByteLevelBpe>(std::move(spec));
}

}  // namespace visplay::tokenizer_detail
