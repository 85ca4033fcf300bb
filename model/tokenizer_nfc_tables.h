// Unicode tables for NFC (generated into tokenizer_nfc_tables.cpp), all sorted by code point.
#pragma once

#include <cstddef>
#include <cstdint>

namespace visplay::tokenizer_detail::nfc_tables {

struct CombiningClass {
  uint32_t code_point;
  uint8_t klass;  // canonical combining class, never 0 here
};
struct Decomposition {
  uint32_t code_point;
  uint16_t offset;  // into kDecompositionData: the full canonical decomposition
  uint8_t length;
};
struct Composition {
  uint32_t first, second, composite;  // sorted by (first, second)
};

extern const CombiningClass kCombiningClasses[];
extern const size_t kCombiningClassCount;
extern const uint32_t kDecompositionData[];
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionCount;
extern const Composition kCompositions[];
extern const size_t kCompositionCount;

}  // namespace visplay::tokenizer_detail::nfc_tables
