// libFuzzer target: the tokenizer.json loader (model/tokenizer.cpp: BPE and
// WordLevel) on arbitrary text. A tokenizer that loads is then used: a few fixed
// texts are encoded, every id must be inside the vocabulary, and decoding them must
// not fail.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "model/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace visplay;
  const std::string name = "fuzz-tokenizer.json";
  std::unique_ptr<Tokenizer> tokenizer;
  try {
    tokenizer =
        load_tokenizer_from_json(std::string_view(reinterpret_cast<const char*>(data), size), name);
  } catch (const std::runtime_error& e) {
    fuzz::check_error_names(e, name);
    return 0;
  }
  fuzz::check(tokenizer != nullptr, "loader returned no tokenizer");
  const int32_t vocab = tokenizer->vocab_size();
  fuzz::check(vocab > 0, "a loaded tokenizer has an empty vocabulary");
  static const char* const samples[] = {
      "how many red circles are there?", "Hello, world! 123 <|im_start|>user\n",
      "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC  tabs\tand\nlines", "bad utf8 \xFF\xFE\xC3"};
  for (const char* sample : samples) {
    std::vector<int32_t> ids;
    try {
      ids = tokenizer->encode(sample);
    } catch (const std::runtime_error& e) {
      // A WordLevel tokenizer without an unknown token refuses unknown words.
      fuzz::check_error_names(e, name);
      continue;
    }
    for (int32_t id : ids) {
      fuzz::check(id >= 0 && id < vocab, "encode produced id " + std::to_string(id) +
                                             " outside the vocabulary of " + std::to_string(vocab));
      (void)tokenizer->id_to_token(id);
    }
    (void)tokenizer->decode(ids);
  }
  return 0;
}
