// Loading tokenizers: Hugging Face tokenizer.json (BPE or WordLevel), GPT-2's
// encoder.json + vocab.bpe, and the shared added-token matcher.
#include "model/tokenizer.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "model/tokenizer_internal.h"

namespace visplay {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace tokenizer_detail;

bool Tokenizer::is_special(int32_t id) const {
  for (const AddedToken& t : added_tokens_) {
    if (t.id == id) return t.special;
  }
  return false;
}

namespace tokenizer_detail {

// ---- added tokens ----------------------------------------------------------------------

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens) : tokens_(tokens) {
  by_first_byte_.resize(256);
  for (size_t i = 0; i < tokens_.size(); ++i) {
    if (tokens_[i].content.empty()) continue;
    by_first_byte_[static_cast<unsigned char>(tokens_[i].content[0])].push_back(
        static_cast<int32_t>(i));
  }
  for (auto& list : by_first_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
      return tokens_[a].content.size() > tokens_[b].content.size();
    });
  }
}

// A byte that belongs to a word for the single_word rule (ASCII alphanumerics, '_' and
// any non-ASCII byte, i.e. letters of other scripts).
static bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

std::vector<Segment> AddedTokenMatcher::split(std::string_view text) const {
  std::vector<Segment> segments;
  if (tokens_.empty()) {
    if (!text.empty()) segments.push_back({-1, text});
    return segments;
  }
  size_t plain_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& candidates = by_first_byte_[static_cast<unsigned char>(text[pos])];
    const AddedToken* match = nullptr;
    for (int32_t index : candidates) {
      const AddedToken& token = tokens_[index];
      if (text.compare(pos, token.content.size(), token.content) != 0) continue;
      if (token.single_word) {
        size_t end = pos + token.content.size();
        bool word_before = pos > 0 && is_word_byte(text[pos - 1]);
        bool word_after = end < text.size() && is_word_byte(text[end]);
        if (word_before || word_after) continue;
      }
      match = &token;
      break;
    }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t end = pos + match->content.size();
    if (match->lstrip) {
      while (start > plain_start && is_ascii_whitespace(text[start - 1])) --start;
    }
    if (match->rstrip) {
      while (end < text.size() && is_ascii_whitespace(text[end])) ++end;
    }
    if (start > plain_start)
      segments.push_back({-1, text.substr(plain_start, start - plain_start)});
    segments.push_back({match->id, text.substr(start, end - start)});
    pos = plain_start = end;
  }
  if (plain_start < text.size()) segments.push_back({-1, text.substr(plain_start)});
  return segments;
}

// ---- vocabulary tables -------------------------------------------------------------------

void build_id_table(const std::string& origin,
                    const std::vector<std::pair<std::string, int32_t>>& vocab,
                    const std::vector<AddedToken>& added, std::vector<std::string>* id_to_token,
                    std::vector<bool>* present,
                    std::unordered_map<std::string, int32_t>* token_to_id) {
  int32_t max_id = -1;
  for (const auto& [token, id] : vocab) max_id = std::max(max_id, id);
  for (const AddedToken& t : added) max_id = std::max(max_id, t.id);
  id_to_token->assign(max_id + 1, std::string());
  present->assign(max_id + 1, false);
  token_to_id->clear();
  token_to_id->reserve(vocab.size() + added.size());
  auto insert = [&](const std::string& token, int32_t id, const char* where) {
    if (id < 0) {
      throw std::runtime_error(origin + ": " + where + ": token '" + token + "' has negative id " +
                               std::to_string(id));
    }
    if ((*present)[id]) {
      if ((*id_to_token)[id] == token) return;  // an added token repeated in the vocab
      throw std::runtime_error(origin + ": " + where + ": id " + std::to_string(id) +
                               " is used by both '" + (*id_to_token)[id] + "' and '" + token + "'");
    }
    auto [it, inserted] = token_to_id->emplace(token, id);
    if (!inserted && it->second != id) {
      throw std::runtime_error(origin + ": " + where + ": token '" + token + "' has two ids, " +
                               std::to_string(it->second) + " and " + std::to_string(id));
    }
    (*id_to_token)[id] = token;
    (*present)[id] = true;
  };
  for (const auto& [token, id] : vocab) insert(token, id, "model.vocab");
  for (const AddedToken& t : added) insert(t.content, t.id, "added_tokens");
}

const std::vector<std::string>& byte_to_unicode() {
  // Bytes that are printable in Latin-1 keep their own code point; the other 68 are moved
  // to U+0100 onwards, in byte order, so every byte has a visible one-character spelling.
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      utf8_append(t[b], printable ? static_cast<uint32_t>(b) : next++);
    }
    return t;
  }();
  return table;
}

}  // namespace tokenizer_detail

// ---- tokenizer.json -------------------------------------------------------------------------
namespace {

const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("tokenizer: cannot open " + path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) throw std::runtime_error("tokenizer: error reading " + path);
  return buffer.str();
}

json parse_json(std::string_view text, const std::string& origin) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw std::runtime_error(origin + ": invalid JSON: " + e.what());
  }
}

[[noreturn]] void fail(const std::string& origin, const std::string& what) {
  throw std::runtime_error(origin + ": " + what);
}

// A token id from the file: an integer in [0, kMaxTokenId] (never silently narrowed).
int32_t token_id_of(const json& value, const std::string& origin, const std::string& where) {
  if (!value.is_number_integer()) fail(origin, where + " is not an integer id");
  bool in_range = value.is_number_unsigned()
                      ? value.get<uint64_t>() <= uint64_t(kMaxTokenId)
                      : value.get<int64_t>() >= 0 && value.get<int64_t>() <= kMaxTokenId;
  if (!in_range)
    fail(origin,
         where + ": id " + value.dump() + " is outside [0, " + std::to_string(kMaxTokenId) + "]");
  return static_cast<int32_t>(value.get<int64_t>());
}

std::string type_of(const json& node, const std::string& origin, const std::string& field) {
  if (!node.is_object() || !node.contains("type") || !node["type"].is_string()) {
    fail(origin, field + " has no \"type\"");
  }
  return node["type"].get<std::string>();
}

Normalizer parse_normalizer(const json& node, const std::string& origin,
                            const std::string& field = "normalizer") {
  if (node.is_null()) return Normalizer::kNone;
  std::string type = type_of(node, origin, field);
  if (type == "NFC") return Normalizer::kNfc;
  if (type == "Sequence") {
    Normalizer result = Normalizer::kNone;
    const json& list = node.value("normalizers", json::array());
    for (size_t i = 0; i < list.size(); ++i) {
      Normalizer n =
          parse_normalizer(list[i], origin, field + ".normalizers[" + std::to_string(i) + "]");
      if (n != Normalizer::kNone) {
        if (result != Normalizer::kNone) fail(origin, field + ": only one NFC step is supported");
        result = n;
      }
    }
    return result;
  }
  fail(origin, field + ": normalizer type \"" + type + "\" is not supported (null or NFC)");
}

std::vector<AddedToken> parse_added_tokens(const json& root, const std::string& origin) {
  std::vector<AddedToken> tokens;
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return tokens;
  const json& list = root["added_tokens"];
  if (!list.is_array()) fail(origin, "added_tokens is not an array");
  for (size_t i = 0; i < list.size(); ++i) {
    const json& item = list[i];
    std::string where = "added_tokens[" + std::to_string(i) + "]";
    if (!item.is_object() || !item.contains("id") || !item["id"].is_number_integer() ||
        !item.contains("content") || !item["content"].is_string()) {
      fail(origin, where + " needs an integer \"id\" and a string \"content\"");
    }
    AddedToken t;
    t.id = token_id_of(item["id"], origin, where + ".id");
    t.content = item["content"].get<std::string>();
    if (t.content.empty()) fail(origin, where + " has empty content");
    t.special = item.value("special", false);
    t.lstrip = item.value("lstrip", false);
    t.rstrip = item.value("rstrip", false);
    t.single_word = item.value("single_word", false);
    tokens.push_back(std::move(t));
  }
  return tokens;
}

std::vector<std::pair<std::string, int32_t>> parse_vocab(const json& model,
                                                         const std::string& origin) {
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    fail(origin, "model.vocab is missing or not an object");
  }
  std::vector<std::pair<std::string, int32_t>> vocab;
  vocab.reserve(model["vocab"].size());
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) {
    vocab.emplace_back(it.key(),
                       token_id_of(it.value(), origin, "model.vocab[\"" + it.key() + "\"]"));
  }
  if (vocab.empty()) fail(origin, "model.vocab is empty");
  return vocab;
}

// A pattern from a Split pre-tokenizer: {"Regex": "..."} or {"String": "..."}.
std::string parse_split_pattern(const json& split, const std::string& origin,
                                const std::string& field) {
  if (split.value("behavior", std::string("Isolated")) != "Isolated") {
    fail(origin, field + ".behavior: only \"Isolated\" is supported");
  }
  if (split.value("invert", false)) fail(origin, field + ".invert: true is not supported");
  const json& pattern = split.value("pattern", json());
  if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
    return pattern["Regex"].get<std::string>();
  }
  if (pattern.contains("String") && pattern["String"].is_string()) {
    return "\\Q" + pattern["String"].get<std::string>() + "\\E";
  }
  fail(origin, field + ".pattern needs a \"Regex\" or \"String\"");
}

void parse_bpe_pre_tokenizer(const json& node, const std::string& origin, BpeSpec* spec) {
  if (node.is_null()) fail(origin, "pre_tokenizer is null; a byte-level BPE needs ByteLevel");
  std::vector<json> steps;
  std::string top = type_of(node, origin, "pre_tokenizer");
  if (top == "Sequence") {
    for (const json& step : node.value("pretokenizers", json::array())) steps.push_back(step);
  } else {
    steps.push_back(node);
  }
  bool byte_level = false;
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string field = top == "Sequence" ? "pre_tokenizer.pretokenizers[" + std::to_string(i) + "]"
                                          : std::string("pre_tokenizer");
    std::string type = type_of(steps[i], origin, field);
    std::string regex;
    if (type == "Split") {
      regex = parse_split_pattern(steps[i], origin, field);
    } else if (type == "ByteLevel") {
      byte_level = true;
      spec->add_prefix_space = steps[i].value("add_prefix_space", false);
      if (steps[i].value("use_regex", true)) regex = kGpt2Regex;
    } else {
      fail(origin, field + ": pre-tokenizer type \"" + type + "\" is not supported for BPE");
    }
    if (!regex.empty()) {
      if (!spec->split_regex.empty()) {
        fail(origin, field + ": only one splitting regex is supported");
      }
      spec->split_regex = regex;
    }
  }
  if (!byte_level)
    fail(origin, "pre_tokenizer has no ByteLevel step; only byte-level BPE is supported");
}

std::unique_ptr<Tokenizer> parse_bpe(const json& root, const std::string& origin) {
  const json& model = root["model"];
  BpeSpec spec;
  spec.origin = origin;
  spec.vocab = parse_vocab(model, origin);
  if (!model.contains("merges") || !model["merges"].is_array() || model["merges"].empty()) {
    fail(origin, "model.merges is missing or empty; a BPE model needs its merge table");
  }
  const json& merges = model["merges"];
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == s.size() ||
          s.find(' ', space + 1) != std::string::npos) {
        fail(origin,
             "model.merges[" + std::to_string(i) + "] = \"" + s + "\" is not of the form \"a b\"");
      }
      spec.merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      fail(origin, "model.merges[" + std::to_string(i) + "] is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  if (model.contains("dropout") && !model["dropout"].is_null() &&
      model["dropout"].get<double>() != 0.0) {
    fail(origin, "model.dropout is not supported");
  }
  if (model.value("byte_fallback", false)) fail(origin, "model.byte_fallback is not supported");
  for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (model.contains(affix) && !model[affix].is_null() && model[affix] != "") {
      fail(origin, std::string("model.") + affix + " is not supported");
    }
  }
  spec.ignore_merges = model.value("ignore_merges", false);
  spec.normalizer = parse_normalizer(root.value("normalizer", json()), origin);
  parse_bpe_pre_tokenizer(root.value("pre_tokenizer", json()), origin, &spec);
  spec.added_tokens = parse_added_tokens(root, origin);
  return make_byte_level_bpe(std::move(spec));
}

// WordLevel accepts WhitespaceSplit and Punctuation (Isolated) steps.
void parse_word_level_pre_tokenizer(const json& node, const std::string& origin,
                                    WordLevelSpec* spec) {
  spec->split_punctuation = false;
  if (node.is_null()) return;
  std::vector<json> steps;
  std::string top = type_of(node, origin, "pre_tokenizer");
  if (top == "Sequence") {
    for (const json& step : node.value("pretokenizers", json::array())) steps.push_back(step);
  } else {
    steps.push_back(node);
  }
  for (size_t i = 0; i < steps.size(); ++i) {
    std::string field = "pre_tokenizer step " + std::to_string(i);
    std::string type = type_of(steps[i], origin, field);
    if (type == "WhitespaceSplit") continue;
    if (type == "Punctuation") {
      if (steps[i].value("behavior", std::string("Isolated")) != "Isolated") {
        fail(origin, field + ": Punctuation behavior must be \"Isolated\"");
      }
      spec->split_punctuation = true;
      continue;
    }
    fail(origin, field + ": pre-tokenizer type \"" + type +
                     "\" is not supported for WordLevel (WhitespaceSplit, Punctuation)");
  }
}

std::unique_ptr<Tokenizer> parse_word_level(const json& root, const std::string& origin) {
  const json& model = root["model"];
  WordLevelSpec spec;
  spec.origin = origin;
  spec.vocab = parse_vocab(model, origin);
  if (model.contains("unk_token") && model["unk_token"].is_string()) {
    spec.unk_token = model["unk_token"].get<std::string>();
  }
  spec.normalizer = parse_normalizer(root.value("normalizer", json()), origin);
  parse_word_level_pre_tokenizer(root.value("pre_tokenizer", json()), origin, &spec);
  spec.added_tokens = parse_added_tokens(root, origin);
  return make_word_level(std::move(spec));
}

// Special tokens by their usual spellings; a tokenizer_config.json can override.
void resolve_special_ids(Tokenizer& tokenizer, const json* config, SpecialTokenIds* ids) {
  // A name counts when it is an added token, or a <|...|> token of the base vocabulary
  // (GPT-2 keeps <|endoftext|> there); a plain "<s>" in a BPE vocabulary is just text.
  auto find = [&](std::initializer_list<const char*> names) {
    for (const char* name : names) {
      std::string_view n(name);
      bool added = false;
      for (const AddedToken& t : tokenizer.added_tokens()) added = added || t.content == n;
      if (!added && !(n.starts_with("<|") && n.ends_with("|>"))) continue;
      int32_t id = tokenizer.token_to_id(n);
      if (id >= 0) return id;
    }
    return int32_t{-1};
  };
  ids->pad = find({"<|pad|>", "<pad>", "<|endoftext|>"});
  ids->eos = find({"<|endoftext|>", "</s>", "<|eos|>"});
  ids->bos = find({"<|startoftext|>", "<s>", "<|bos|>"});
  if (ids->unk < 0) ids->unk = find({"<unk>", "<|unk|>"});
  ids->im_start = find({"<|im_start|>"});
  ids->im_end = find({"<|im_end|>"});
  ids->vision_start = find({"<|vision_start|>"});
  ids->vision_end = find({"<|vision_end|>"});
  ids->image_pad = find({"<|image_pad|>"});
  if (config == nullptr) return;
  auto override_from = [&](const char* key, int32_t* slot) {
    if (!config->contains(key)) return;
    const json& v = (*config)[key];
    std::string name;
    if (v.is_string()) {
      name = v.get<std::string>();
    } else if (v.is_object() && v.contains("content") && v["content"].is_string()) {
      name = v["content"].get<std::string>();
    } else {
      return;
    }
    int32_t id = tokenizer.token_to_id(name);
    if (id >= 0) *slot = id;
  };
  override_from("eos_token", &ids->eos);
  override_from("pad_token", &ids->pad);
  override_from("bos_token", &ids->bos);
  override_from("unk_token", &ids->unk);
}

void set_special_ids(Tokenizer& t, const json* config) {
  SpecialTokenIds ids = t.special_ids();
  resolve_special_ids(t, config, &ids);
  TokenizerAccess::special_ids(t) = ids;
}

std::unique_ptr<Tokenizer> load_from_json_checked(std::string_view text, const std::string& origin,
                                                  const json* config) {
  json root = parse_json(text, origin);
  if (!root.is_object()) fail(origin, "top level is not a JSON object");
  if (!root.contains("model") || !root["model"].is_object()) {
    fail(origin, "no \"model\" object (is this a tokenizer.json?)");
  }
  const json& model = root["model"];
  std::string type = model.value("type", std::string());
  if (type.empty() && model.contains("merges")) type = "BPE";
  std::unique_ptr<Tokenizer> tokenizer;
  if (type == "BPE") {
    tokenizer = parse_bpe(root, origin);
  } else if (type == "WordLevel") {
    tokenizer = parse_word_level(root, origin);
  } else {
    fail(origin, "model.type \"" + type + "\" is not supported (BPE or WordLevel)");
  }
  set_special_ids(*tokenizer, config);
  return tokenizer;
}

// The field readers check the types they rely on; any other JSON type mismatch
// (e.g. "special": "yes") surfaces as a json::exception, turned here into an
// error that names the file.
std::unique_ptr<Tokenizer> load_from_json(std::string_view text, const std::string& origin,
                                          const json* config) {
  try {
    return load_from_json_checked(text, origin, config);
  } catch (const json::exception& e) {
    throw std::runtime_error(origin + ": unexpected JSON value: " + e.what());
  }
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_from_json(std::string_view json_text,
                                                    const std::string& origin) {
  return load_from_json(json_text, origin, nullptr);
}

std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& encoder_json_path,
                                               const std::string& vocab_bpe_path) {
  BpeSpec spec;
  spec.origin = encoder_json_path;
  json encoder = parse_json(read_text_file(encoder_json_path), encoder_json_path);
  if (!encoder.is_object() || encoder.empty()) {
    fail(encoder_json_path, "expected a non-empty object of token -> id");
  }
  for (auto it = encoder.begin(); it != encoder.end(); ++it) {
    spec.vocab.emplace_back(
        it.key(), token_id_of(it.value(), encoder_json_path, "token \"" + it.key() + "\""));
  }
  std::istringstream lines(read_text_file(vocab_bpe_path));
  std::string line;
  for (size_t line_no = 1; std::getline(lines, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) continue;
    size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size() ||
        line.find(' ', space + 1) != std::string::npos) {
      fail(vocab_bpe_path,
           "line " + std::to_string(line_no) + ": expected \"a b\", got \"" + line + "\"");
    }
    spec.merges.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  if (spec.merges.empty()) fail(vocab_bpe_path, "no merges; a BPE model needs its merge table");
  spec.split_regex = kGpt2Regex;
  auto tokenizer = make_byte_level_bpe(std::move(spec));
  set_special_ids(*tokenizer, nullptr);
  return tokenizer;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / "tokenizer.json")) return load_tokenizer((p / "tokenizer.json").string());
    if (fs::exists(p / "encoder.json") && fs::exists(p / "vocab.bpe")) {
      return load_gpt2_tokenizer((p / "encoder.json").string(), (p / "vocab.bpe").string());
    }
    throw std::runtime_error("tokenizer: folder " + path +
                             " holds neither tokenizer.json nor encoder.json + vocab.bpe");
  }
  if (!fs::exists(p, ec)) throw std::runtime_error("tokenizer: no such file or folder: " + path);
  std::string text = read_text_file(path);
  json config;
  bool have_config = false;
  fs::path config_path = p.parent_path() / "tokenizer_config.json";
  if (p.filename() == "tokenizer.json" && fs::exists(config_path, ec)) {
    config = parse_json(read_text_file(config_path.string()), config_path.string());
    have_config = config.is_object();
  }
  return load_from_json(text, path, have_config ? &config : nullptr);
}

}  // namespace visplay
