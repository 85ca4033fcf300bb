// The committed fuzz seeds (fuzz/corpus/, see docs/fuzzing.md) must stay valid inputs:
// a seed that the loader refuses would start the fuzzer on the error path only.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/image.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

namespace visplay {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> seeds(const std::string& target) {
  std::vector<fs::path> files;
  for (const auto& entry :
       fs::directory_iterator(fs::path(VISPLAY_SOURCE_DIR) / "fuzz/corpus" / target))
    files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::string bytes_of(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

TEST(FuzzCorpus, ImageSeedsDecode) {
  std::vector<fs::path> files = seeds("image");
  ASSERT_GE(files.size(), 8u);
  int png = 0, jpeg = 0;
  for (const fs::path& f : files) {
    Image image = load_image(f.string());
    EXPECT_EQ(image.rgb.size(), size_t(image.width) * image.height * 3) << f;
    (f.extension() == ".png" ? png : jpeg)++;
  }
  EXPECT_GE(png, 5);
  EXPECT_GE(jpeg, 3);
}

TEST(FuzzCorpus, SafetensorsSeedsParse) {
  std::vector<fs::path> files = seeds("safetensors");
  ASSERT_GE(files.size(), 3u);
  size_t tensors = 0;
  for (const fs::path& f : files) {
    SafetensorsFile file(f.string());
    tensors += file.entries().size();
    for (const SafetensorsEntry& e : file.entries()) EXPECT_NO_THROW(file.load(e.name)) << f;
  }
  EXPECT_GE(tensors, 10u);  // every dtype, an empty and a scalar tensor among them
}

TEST(FuzzCorpus, TokenizerSeedsLoadAndRoundTrip) {
  std::vector<fs::path> files = seeds("tokenizer");
  ASSERT_GE(files.size(), 3u);
  for (const fs::path& f : files) {
    auto tokenizer = load_tokenizer_from_json(bytes_of(f), f.string());
    std::vector<int32_t> ids = tokenizer->encode("how many red");
    EXPECT_FALSE(ids.empty()) << f;
    for (int32_t id : ids) EXPECT_LT(id, tokenizer->vocab_size()) << f;
  }
}

}  // namespace
}  // namespace visplay
