// The word-level vocabulary of the tiny ShapeWorld VLM (see /work/shared/shapeworld.md):
// special and chat tokens, markup (<question>, <think>, \boxed{ ...), every word of the
// question templates, the closed answer vocabulary, words for short reasoning traces and
// prompts, the numbers 0..64 and some punctuation. About 300 tokens, so the LM head stays
// cheap on a CPU.
//
// Ids are stable: a token's id is its position in the table, and the table is append-only.
// To extend the vocabulary add a new group at the end of shapeworld_vocab.cpp; never
// insert, remove or reorder earlier entries (checkpoints depend on the ids).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "model/tokenizer.h"

namespace visplay {

enum class ShapeWorldTokenKind {
  kSpecial,  // added token, "special": true (chat/vision markers, pad, eos, unk)
  kMarkup,   // added token, not special (tags, \boxed{, }, newline): matched before words
  kWord,     // ordinary vocabulary word or punctuation mark
};

struct ShapeWorldToken {
  std::string_view text;
  ShapeWorldTokenKind kind;
};

// The whole vocabulary in id order (entry i has id i).
std::span<const ShapeWorldToken> shapeworld_vocab();

// The vocabulary as a Hugging Face style tokenizer.json (model type WordLevel).
std::string shapeworld_tokenizer_json();

// Writes shapeworld_tokenizer_json() to PATH (e.g. beside a checkpoint).
void write_shapeworld_tokenizer_json(const std::string& path);

// The tokenizer itself, parsed from shapeworld_tokenizer_json().
std::unique_ptr<Tokenizer> make_shapeworld_tokenizer();

}  // namespace visplay
