// The ShapeWorld vocabulary table and its tokenizer.json. APPEND ONLY (see the header).
#include "model/shapeworld_vocab.h"

#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

namespace visplay {
namespace {

using Kind = ShapeWorldTokenKind;

// Added tokens first: ids 0..18.
constexpr ShapeWorldToken kAddedTokens[] = {
    {"<|pad|>", Kind::kSpecial},           // 0
    {"<|endoftext|>", Kind::kSpecial},     // 1: eos
    {"<|im_start|>", Kind::kSpecial},      // 2
    {"<|im_end|>", Kind::kSpecial},        // 3
    {"<|vision_start|>", Kind::kSpecial},  // 4
    {"<|image_pad|>", Kind::kSpecial},     // 5: one per visual token
    {"<|vision_end|>", Kind::kSpecial},    // 6
    {"<unk>", Kind::kSpecial},             // 7
    {"\n", Kind::kMarkup},                 // 8
    {"<question>", Kind::kMarkup},         // 9
    {"</question>", Kind::kMarkup},        // 10
    {"<type>", Kind::kMarkup},             // 11
    {"</type>", Kind::kMarkup},            // 12
    {"<think>", Kind::kMarkup},            // 13
    {"</think>", Kind::kMarkup},           // 14
    {"\\boxed{", Kind::kMarkup},           // 15
    {"}", Kind::kMarkup},                  // 16
    {"<answer>", Kind::kMarkup},           // 17
    {"</answer>", Kind::kMarkup},          // 18
};

// Then words, group by group, each group a space-separated list (ids continue in order).
// The numbers 0..64 are one group written out by hand so that the table reads the same
// as its ids.
constexpr std::string_view kWordGroups[] = {
    // numbers (answers 0-6, counts, pixel coordinates on the 64 x 64 canvas)
    "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 "
    "32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 "
    "61 62 63 64",
    // punctuation marks (the pre-tokenizer splits them off words)
    "? , . : ; ! ( ) = + - * / < > ' \"",
    // the closed answer vocabulary (numbers above)
    "yes no red green blue yellow purple gray circle square triangle small large none",
    // plural shapes and the question templates
    "circles squares triangles how many objects object are there is a what color shape size "
    "the left of above more than",
    // question types (shapeworld.md), as used inside <type>...</type>
    "count_all count_shape count_color count_both exist query_color query_shape query_size "
    "left_of more_shape more_color",
    // short reasoning traces
    "i see an at right top bottom middle center so answer count x y and one two three "
    "four five six zero not it its which that this with to in on below under fewer less same "
    "also only total number each other both then because therefore let me look image picture "
    "find found first second third next finally check all any biggest smallest position "
    "near far between row column side half upper lower corner sizes colors shapes nothing "
    "something exactly",
    // prompts and roles
    "question ask reason directly system user assistant you your helpful visual questioner "
    "reasoner give write generate create about put final inside box step by think please "
    "must should can will be as for from new hard easy challenging "
    "difficult single valid answerable unanswerable output format tag tags following "
    "describe",
};

std::vector<ShapeWorldToken> build_table() {
  std::vector<ShapeWorldToken> table(std::begin(kAddedTokens), std::end(kAddedTokens));
  for (std::string_view group : kWordGroups) {
    size_t pos = 0;
    while (pos < group.size()) {
      size_t end = group.find(' ', pos);
      if (end == std::string_view::npos) end = group.size();
      if (end > pos) table.push_back({group.substr(pos, end - pos), Kind::kWord});
      pos = end + 1;
    }
  }
  std::unordered_set<std::string_view> seen;
  for (const ShapeWorldToken& t : table) {
    if (!seen.insert(t.text).second) {
      throw std::logic_error("shapeworld_vocab: token \"" + std::string(t.text) +
                             "\" appears twice in the table");
    }
  }
  return table;
}

}  // namespace

std::span<const ShapeWorldToken> shapeworld_vocab() {
  static const std::vector<ShapeWorldToken> table = build_table();
  return table;
}

std::string shapeworld_tokenizer_json() {
  using json = nlohmann::ordered_json;
  json added = json::array();
  json vocab = json::object();
  std::span<const ShapeWorldToken> table = shapeworld_vocab();
  for (size_t id = 0; id < table.size(); ++id) {
    const ShapeWorldToken& t = table[id];
    vocab[std::string(t.text)] = id;
    if (t.kind == Kind::kWord) continue;
    added.push_back({{"id", id},
                     {"content", std::string(t.text)},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", t.kind == Kind::kSpecial}});
  }
  json root = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "WhitespaceSplit"}},
                                       {{"type", "Punctuation"}, {"behavior", "Isolated"}}})}}},
      {"post_processor", nullptr},
      {"decoder", nullptr},
      {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "<unk>"}}},
  };
  return root.dump(1);
}

void write_shapeworld_tokenizer_json(const std::string& path) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("shapeworld_vocab: cannot write " + path);
  out << shapeworld_tokenizer_json() << "\n";
  if (!out) throw std::runtime_error("shapeworld_vocab: error writing " + path);
}

std::unique_ptr<Tokenizer> make_shapeworld_tokenizer() {
  return load_tokenizer_from_json(shapeworld_tokenizer_json(), "shapeworld tokenizer");
}

}  // namespace visplay
