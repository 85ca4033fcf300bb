// UTF-8 helpers and Unicode NFC normalisation for the tokenizers (Qwen2's tokenizer.json
// asks for NFC before pre-tokenising).
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer_internal.h"
#include "model/tokenizer_nfc_tables.h"

namespace visplay::tokenizer_detail {

int32_t utf8_decode(std::string_view text, size_t pos, size_t* length) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  unsigned char lead = byte(pos);
  *length = 1;
  if (lead < 0x80) return lead;
  size_t need;
  uint32_t cp;
  uint32_t min_cp;
  if (lead >= 0xC2 && lead <= 0xDF) {
    need = 1, cp = lead & 0x1F, min_cp = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    need = 2, cp = lead & 0x0F, min_cp = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    need = 3, cp = lead & 0x07, min_cp = 0x10000;
  } else {
    return -1;
  }
  if (pos + need >= text.size()) return -1;  // truncated
  for (size_t i = 1; i <= need; ++i) {
    unsigned char c = byte(pos + i);
    if ((c & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (c & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  *length = need + 1;
  return static_cast<int32_t>(cp);
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool is_ascii_whitespace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// ---- NFC ------------------------------------------------------------------------------
namespace {

// Hangul syllables decompose and compose by arithmetic (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// An invalid UTF-8 byte travels through NFC as this marker | byte: a starter that never
// decomposes or composes.
constexpr uint32_t kRawByte = 0x80000000u;

uint8_t combining_class(uint32_t cp) {
  using nfc_tables::kCombiningClasses;
  const auto* end = kCombiningClasses + nfc_tables::kCombiningClassCount;
  const auto* it = std::lower_bound(
      kCombiningClasses, end, cp,
      [](const nfc_tables::CombiningClass& e, uint32_t v) { return e.code_point < v; });
  return (it != end && it->code_point == cp) ? it->klass : 0;
}

void decompose_into(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    uint32_t s = cp - kSBase;
    out.push_back(kLBase + s / kNCount);
    out.push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out.push_back(kTBase + s % kTCount);
    return;
  }
  using nfc_tables::kDecompositions;
  const auto* end = kDecompositions + nfc_tables::kDecompositionCount;
  const auto* it = std::lower_bound(
      kDecompositions, end, cp,
      [](const nfc_tables::Decomposition& e, uint32_t v) { return e.code_point < v; });
  if (it != end && it->code_point == cp) {
    for (int i = 0; i < it->length; ++i)
      out.push_back(nfc_tables::kDecompositionData[it->offset + i]);
  } else {
    out.push_back(cp);
  }
}

// The primary composite of (first, second), or 0 when there is none.
uint32_t compose_pair(uint32_t first, uint32_t second) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase &&
      second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 &&
      second > kTBase && second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  using nfc_tables::kCompositions;
  const auto* end = kCompositions + nfc_tables::kCompositionCount;
  const auto* it = std::lower_bound(
      kCompositions, end, std::pair<uint32_t, uint32_t>(first, second),
      [](const nfc_tables::Composition& e, const std::pair<uint32_t, uint32_t>& v) {
        return e.first < v.first || (e.first == v.first && e.second < v.second);
      });
  if (it != end && it->first == first && it->second == second) return it->composite;
  return 0;
}

}  // namespace

bool nfc_quick_check(std::string_view text) {
  // Code points below U+0300 are all starters that NFC leaves alone, and in UTF-8 they use
  // lead bytes below 0xCC.
  for (unsigned char c : text) {
    if (c >= 0xCC) return false;
  }
  return true;
}

std::string nfc(std::string_view text) {
  if (nfc_quick_check(text)) return std::string(text);
  // 1. Full canonical decomposition.
  std::vector<uint32_t> cps;
  cps.reserve(text.size() + 8);
  for (size_t pos = 0; pos < text.size();) {
    size_t len;
    int32_t cp = utf8_decode(text, pos, &len);
    if (cp < 0) {
      cps.push_back(kRawByte | static_cast<unsigned char>(text[pos]));
    } else {
      decompose_into(static_cast<uint32_t>(cp), cps);
    }
    pos += len;
  }
  std::vector<uint8_t> classes(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) {
    classes[i] = (cps[i] & kRawByte) ? 0 : combining_class(cps[i]);
  }
  // 2. Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 1; i < cps.size(); ++i) {
    for (size_t j = i; j > 0 && classes[j] != 0 && classes[j - 1] > classes[j]; --j) {
      std::swap(classes[j], classes[j - 1]);
      std::swap(cps[j], cps[j - 1]);
    }
  }
  // 3. Canonical composition: each character joins the last starter unless blocked by a
  // character in between of class 0 or of a class >= its own.
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  int64_t starter = -1;
  uint8_t last_class = 0;  // class of the last character kept after the starter
  for (size_t i = 0; i < cps.size(); ++i) {
    uint32_t cp = cps[i];
    uint8_t klass = classes[i];
    if (starter >= 0 && !(cp & kRawByte) && !(out[starter] & kRawByte)) {
      bool adjacent = static_cast<int64_t>(out.size()) - 1 == starter;
      if (adjacent || (last_class != 0 && last_class < klass)) {
        uint32_t composite = compose_pair(out[starter], cp);
        if (composite != 0) {
          out[starter] = composite;
          continue;
        }
      }
    }
    if (klass == 0) {
      starter = static_cast<int64_t>(out.size());
      last_class = 0;
    } else {
      last_class = klass;
    }
    out.push_back(cp);
  }
  std::string result;
  result.reserve(text.size());
  for (uint32_t cp : out) {
    if (cp & kRawByte) {
      result.push_back(static_cast<char>(cp & 0xFF));
    } else {
      utf8_append(result, cp);
    }
  }
  return result;
}

std::string apply_normalizer(Normalizer normalizer, std::string_view text) {
  switch (normalizer) {
    case Normalizer::kNfc:
      return nfc(text);
    case Normalizer::kNone:
      break;
  }
  return std::string(text);
}

}  // namespace visplay::tokenizer_detail
