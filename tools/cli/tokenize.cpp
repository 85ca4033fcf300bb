// `visplay tokenize --tokenizer PATH [--decode]`: one JSON string a line on stdin -> one
// JSON array of ids a line on stdout (no special tokens added beyond those in the text);
// with --decode, JSON arrays of ids -> JSON strings.
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "model/shapeworld_vocab.h"
#include "model/tokenizer.h"
#include "tools/cli/command.h"

namespace {

using json = nlohmann::json;

struct TokenizeOptions {
  std::string tokenizer_path;
  bool decode = false;
};

void run_tokenize(const TokenizeOptions& options) {
  // "shapeworld" (when no such file exists) names the built-in ShapeWorld vocabulary.
  std::unique_ptr<visplay::Tokenizer> tokenizer =
      options.tokenizer_path == "shapeworld" && !std::filesystem::exists("shapeworld")
          ? visplay::make_shapeworld_tokenizer()
          : visplay::load_tokenizer(options.tokenizer_path);
  std::ios::sync_with_stdio(false);
  std::string line;
  for (size_t line_no = 1; std::getline(std::cin, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string where = "stdin line " + std::to_string(line_no);
    json value;
    try {
      value = json::parse(line);
    } catch (const json::exception& e) {
      throw std::runtime_error(where + ": invalid JSON: " + e.what());
    }
    if (!options.decode) {
      if (!value.is_string()) throw std::runtime_error(where + ": expected a JSON string");
      std::cout << json(tokenizer->encode(value.get<std::string>())).dump() << '\n';
      continue;
    }
    if (!value.is_array()) throw std::runtime_error(where + ": expected a JSON array of ids");
    std::vector<int32_t> ids;
    for (const json& id : value) {
      if (!id.is_number_integer()) throw std::runtime_error(where + ": ids must be integers");
      // Checked before narrowing: 2^32 + 1 must not quietly become id 1.
      if (id.is_number_unsigned() ? id.get<uint64_t>() > INT32_MAX
                                  : id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX)
        throw std::runtime_error(where + ": id " + id.dump() + " is not a 32-bit token id");
      ids.push_back(id.get<int32_t>());
    }
    std::string text;
    try {
      text = tokenizer->decode(ids);
    } catch (const std::out_of_range& e) {
      throw std::runtime_error(where + ": " + e.what());
    }
    // Ids that end inside a multi-byte character give invalid UTF-8: shown as U+FFFD.
    std::cout << json(text).dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  }
  std::cout.flush();
}

void setup_tokenize(CLI::App& app) {
  auto options = std::make_shared<TokenizeOptions>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Encode JSON strings (one a line on stdin) to JSON arrays of token ids, or decode back");
  cmd->add_option("--tokenizer", options->tokenizer_path,
                  "tokenizer.json, a folder holding it or GPT-2's encoder.json + vocab.bpe, "
                  "or 'shapeworld' for the built-in ShapeWorld vocabulary")
      ->required();
  cmd->add_flag("--decode", options->decode, "read JSON arrays of ids, print JSON strings");
  cmd->callback([options] { run_tokenize(*options); });
}

}  // namespace

VISPLAY_COMMAND(setup_tokenize);
