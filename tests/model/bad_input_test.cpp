// Bad inputs the loaders must refuse with an error that says what and where, never a
// crash, a huge allocation or a silently wrong result: broken safetensors headers,
// hostile image headers, corrupt JPEGs, out-of-range token ids, nonsense configs.
// (The basic cases live beside each loader's own tests; these are the extra ones.)
#include <gtest/gtest.h>
#include <turbojpeg.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/file_util.h"
#include "model/image.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "tests/model/reference.h"

namespace visplay {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("visplay_bad_input_test_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& parts) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing '" << parts[0] << "'";
  } catch (const std::runtime_error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message: " << e.what() << "\nmissing: " << p;
  }
}

// A safetensors file image: 8-byte little-endian length, the header, `data` bytes.
std::string safetensors_bytes(const std::string& header, size_t data_bytes,
                              uint64_t length = std::numeric_limits<uint64_t>::max()) {
  uint64_t n = length == std::numeric_limits<uint64_t>::max() ? header.size() : length;
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  out += header;
  out += std::string(data_bytes, '\x5a');
  return out;
}

void parse_expecting(const std::string& bytes, const std::vector<std::string>& parts) {
  expect_error(
      [&] {
        parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t.st");
      },
      parts);
}

TEST(BadSafetensors, HeaderAndOffsetProblemsAreNamed) {
  // Header length past the end of the file, at the very top of the range, and zero.
  parse_expecting(safetensors_bytes("{}", 0, 3), {"t.st", "header length 3 exceeds"});
  parse_expecting(safetensors_bytes("{}", 4, std::numeric_limits<uint64_t>::max() - 1),
                  {"t.st", "exceeds the file size 14"});
  parse_expecting(safetensors_bytes("{}", 8, 0), {"t.st", "not valid JSON"});
  // A length that cuts the JSON short.
  parse_expecting(safetensors_bytes(R"({"w":{"dtype":"F32"}})", 0, 10), {"not valid JSON"});
  parse_expecting(safetensors_bytes("[1, 2]", 0), {"not a JSON object"});
  parse_expecting(safetensors_bytes(R"({"__metadata__": [1]})", 0), {"__metadata__"});
  parse_expecting(safetensors_bytes(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4),
                  {"tensor 'w'", "dtype is not a string"});
  parse_expecting(
      safetensors_bytes(R"({"w":{"dtype":"F32","shape":{"a":1},"data_offsets":[0,4]}})", 4),
      {"tensor 'w'", "shape is not an array"});
  parse_expecting(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
                  {"tensor 'w'", "[8, 4]", "out of range"});
  parse_expecting(
      safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", 8),
      {"tensor 'w'", "non-negative"});
  // Overlap where one tensor lies wholly inside another, listed in the other order.
  parse_expecting(safetensors_bytes(R"({"inner":{"dtype":"I32","shape":[1],"data_offsets":[4,8]},)"
                                    R"("outer":{"dtype":"F64","shape":[2],"data_offsets":[0,16]}})",
                                    16),
                  {"'outer' and 'inner'", "overlapping"});
  // Element counts whose byte size overflows 64 bits, and a dimension beyond 2^53 that
  // a zero beside it would hide from the byte-size check.
  parse_expecting(
      safetensors_bytes(
          R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", 0),
      {"tensor 'w'", "too large"});
  parse_expecting(
      safetensors_bytes(
          R"({"w":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}})", 0),
      {"tensor 'w'", "too large"});
  // A number no double can hold is a JSON error here too, naming the file.
  parse_expecting(
      safetensors_bytes(
          R"({"__metadata__":{"x":1e400},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
          4),
      {"t.st", "not valid JSON", "1e400"});
  // The same name twice: JSON parsers keep one silently, we refuse.
  parse_expecting(safetensors_bytes(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                    R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                                    8),
                  {"'w' more than once"});
}

TEST(BadSafetensors, HeaderAboveTheSizeLimitIsRefused) {
  // A file long enough for the declared header, but the header is over the limit.
  std::string bytes(8 + kSafetensorsMaxHeaderBytes + 8, ' ');
  uint64_t n = kSafetensorsMaxHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  parse_expecting(bytes, {"t.st", std::to_string(n), "above the limit"});
}

TEST(BadSafetensors, EveryTruncationOfAValidFileIsAnErrorNamingTheFile) {
  std::string dir = temp_dir("truncated");
  std::string path = dir + "/model.safetensors";
  std::mt19937 rng(5);
  Tensor a = Tensor::empty({3, 5}, DType::f32), b = Tensor::empty({4}, DType::i64);
  for (int64_t i = 0; i < 15; ++i) a.data<float>()[i] = static_cast<float>(rng()) / 1e9f;
  for (int64_t i = 0; i < 4; ++i) b.data<int64_t>()[i] = static_cast<int64_t>(rng());
  save_safetensors(path, {{"a", a}, {"b", b}});
  std::string whole = read_text_file(path);
  SafetensorsFile full(path);
  ASSERT_EQ(full.entries().size(), 2u);
  // The in-memory parser and the file reader agree on a valid file.
  SafetensorsHeader header =
      parse_safetensors(reinterpret_cast<const uint8_t*>(whole.data()), whole.size(), path);
  ASSERT_EQ(header.entries.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(header.entries[i].name, full.entries()[i].name);
    EXPECT_EQ(header.entries[i].begin, full.entries()[i].begin);
    EXPECT_EQ(header.entries[i].end, full.entries()[i].end);
    EXPECT_EQ(header.entries[i].shape, full.entries()[i].shape);
  }
  EXPECT_EQ(std::memcmp(full.load("b").raw_data(), b.raw_data(), 4 * sizeof(int64_t)), 0);
  std::string cut_path = dir + "/cut.safetensors";
  for (size_t length = 0; length < whole.size(); ++length) {
    std::ofstream(cut_path, std::ios::binary | std::ios::trunc).write(whole.data(), length);
    try {
      SafetensorsFile f(cut_path);
      ADD_FAILURE() << "a file cut to " << length << " of " << whole.size() << " bytes opened";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(std::string(e.what()).rfind(cut_path + ": ", 0), 0u) << e.what();
    }
  }
  expect_error([&] { SafetensorsFile f(dir); }, {dir, "not a regular file"});
}

TEST(BadSafetensors, CheckpointFolderWithABrokenFileNamesIt) {
  std::string dir = temp_dir("broken_checkpoint");
  save_config(dir + "/config.json", ref::tiny_vlm_config());
  std::string bytes = safetensors_bytes(R"({"model.norm.weight":{"dtype":"F32")", 0);
  write_file_atomic(dir + "/model.safetensors", bytes);
  expect_error([&] { load_checkpoint(dir); }, {dir + "/model.safetensors", "not valid JSON"});
}

// ---- config.json --------------------------------------------------------------------

TEST(BadConfig, NonsenseSizesAreRefusedBeforeAllocating) {
  json good = config_to_json(ref::tiny_vlm_config());
  auto expect_bad = [&](const std::function<void(json&)>& edit,
                        const std::vector<std::string>& parts) {
    json j = good;
    edit(j);
    SCOPED_TRACE(j.dump());
    std::vector<std::string> with_file = parts;
    with_file.insert(with_file.begin(), "cfg.json");
    expect_error([&] { config_from_json(j, "cfg.json"); }, with_file);
  };
  expect_bad([](json& j) { j["vocab_size"] = -40; }, {"\"vocab_size\"", "positive"});
  expect_bad([](json& j) { j["num_hidden_layers"] = 0; }, {"\"num_hidden_layers\"", "positive"});
  expect_bad([](json& j) { j["intermediate_size"] = -1; }, {"\"intermediate_size\""});
  expect_bad([](json& j) { j["num_attention_heads"] = 5; },
             {"\"hidden_size\"", "not a multiple of num_attention_heads 5"});
  expect_bad([](json& j) { j["num_key_value_heads"] = 0; }, {"\"num_key_value_heads\""});
  expect_bad([](json& j) { j["vision_config"]["num_heads"] = 5; },
             {"vision_config", "\"hidden_size\"", "num_heads 5"});
  expect_bad([](json& j) { j["vision_config"]["depth"] = -2; }, {"vision_config", "\"depth\""});
  expect_bad([](json& j) { j["vision_config"]["patch_size"] = 0; }, {"\"patch_size\""});
  // Sizes past the documented limits, and ones that only together are too many.
  expect_bad([](json& j) { j["vocab_size"] = int64_t{1} << 40; },
             {"\"vocab_size\"", "above the limit of 16777216"});
  expect_bad([](json& j) { j["num_hidden_layers"] = 100000; },
             {"\"num_hidden_layers\"", "above the limit of 4096"});
  expect_bad([](json& j) { j["max_position_embeddings"] = int64_t{1} << 50; },
             {"\"max_position_embeddings\""});
  expect_bad(
      [](json& j) {
        j["vocab_size"] = 1 << 24;
        j["hidden_size"] = 1 << 24;
        j["num_attention_heads"] = 4;
        j["num_key_value_heads"] = 4;
      },
      {"parameters, above the limit"});
  expect_bad([](json& j) { j["vision_config"]["mlp_ratio"] = 1e300; }, {"\"mlp_ratio\""});
  expect_bad([](json& j) { j["vision_config"]["mlp_ratio"] = -0.5; }, {"\"mlp_ratio\""});
  // Infinities (set in code; JSON text cannot hold them) are refused by name.
  for (const char* field : {"rope_theta", "rms_norm_eps"}) {
    json j = good;
    j[field] = std::numeric_limits<double>::infinity();
    expect_error([&] { config_from_json(j, "cfg.json"); }, {"cfg.json", field, "finite"});
  }
  json mean = good;
  mean["vision_config"]["image_mean"] = {0.5, std::numeric_limits<double>::infinity(), 0.5};
  expect_error([&] { config_from_json(mean, "cfg.json"); }, {"\"image_mean\"", "finite"});
  // A config file naming itself: load_config reports the path.
  std::string dir = temp_dir("config");
  json bad = good;
  bad["hidden_size"] = 30;
  write_file_atomic(dir + "/config.json", bad.dump());
  expect_error([&] { load_config(dir + "/config.json"); },
               {dir + "/config.json", "\"hidden_size\""});
  // A number too large for a double is a JSON error that names the file (nlohmann
  // reports it as out_of_range, not as a parse_error).
  std::string text = good.dump();
  text.insert(1, "\"rope_scale\": 1e400, ");
  write_file_atomic(dir + "/config.json", text);
  expect_error([&] { load_config(dir + "/config.json"); },
               {dir + "/config.json", "invalid JSON", "1e400"});
}

TEST(BadConfig, ParameterCountEqualsTheModelsAllocation) {
  // parameter_count is what the limit is checked against: it must equal what VLM
  // really allocates, for every part of the model that can change size.
  std::vector<VLMConfig> configs;
  configs.push_back(ref::tiny_vlm_config(false));
  configs.push_back(ref::tiny_vlm_config(true));
  VLMConfig no_projector_width = ref::tiny_vlm_config();
  no_projector_width.vision.projector_hidden_size = 0;
  no_projector_width.vision.mlp_ratio = 2.7;  // rounds 24 * 2.7 = 64.8 to 65
  configs.push_back(no_projector_width);
  VLMConfig text_only = ref::tiny_vlm_config();
  text_only.has_vision = false;
  text_only.decoder.num_hidden_layers = 3;
  text_only.decoder.intermediate_size = 20;
  configs.push_back(text_only);
  for (const VLMConfig& c : configs) {
    VLM model(c);
    EXPECT_EQ(parameter_count(c), static_cast<double>(model.params().numel()));
  }
}

// ---- tokenizer.json -----------------------------------------------------------------

json tiny_word_level() {
  return {{"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "WhitespaceSplit"}}},
          {"model",
           {{"type", "WordLevel"}, {"vocab", {{"<unk>", 0}, {"a", 1}}}, {"unk_token", "<unk>"}}}};
}

TEST(BadTokenizer, IdsOutsideTheTableAreRefusedNotWrapped) {
  // Without the range check, 2^32 + 1 used to wrap to id 1 (a silent wrong result) and
  // 2^31 - 1 made the id table allocate 64 GB.
  for (int64_t id : {int64_t{4294967297}, int64_t{2147483647}, int64_t{16777216}, int64_t{-3}}) {
    json j = tiny_word_level();
    j["model"]["vocab"]["b"] = id;
    SCOPED_TRACE(id);
    expect_error([&] { load_tokenizer_from_json(j.dump(), "tok.json"); },
                 {"tok.json", "model.vocab[\"b\"]", std::to_string(id)});
  }
  json added = tiny_word_level();
  added["added_tokens"] = json::array({{{"id", int64_t{1} << 33}, {"content", "<x>"}}});
  expect_error([&] { load_tokenizer_from_json(added.dump(), "tok.json"); },
               {"tok.json", "added_tokens[0].id"});
  // A sparse but sane id still loads.
  json sparse = tiny_word_level();
  sparse["model"]["vocab"]["b"] = 70000;
  EXPECT_EQ(load_tokenizer_from_json(sparse.dump(), "tok.json")->token_to_id("b"), 70000);
}

TEST(BadTokenizer, WordLevelWithIdGapsAndAnEmptyToken) {
  // Found by fuzz_tokenizer: ids 2..4 unused left empty table slots whose spacing rule
  // read token.back() of an empty string (undefined behaviour).
  json j = tiny_word_level();
  j["model"]["vocab"] = {{"<unk>", 0}, {"a", 1}, {"b", 5}, {"", 6}};
  auto tokenizer = load_tokenizer_from_json(j.dump(), "gaps.json");
  EXPECT_EQ(tokenizer->encode("a b zebra"), std::vector<int32_t>({1, 5, 0}));
  EXPECT_EQ(tokenizer->decode(std::vector<int32_t>{1, 5}), "a b");
}

TEST(BadTokenizer, WrongJsonTypesNameTheFile) {
  // A JSON type the loader did not expect surfaces as an error naming the file (not
  // as a bare nlohmann exception that says neither file nor field).
  auto expect_bad = [](const json& j, const std::string& what) {
    SCOPED_TRACE(what);
    expect_error([&] { load_tokenizer_from_json(j.dump(), "tok.json"); },
                 {"tok.json: unexpected JSON value", "type"});
  };
  json special = tiny_word_level();
  special["added_tokens"] = json::array({{{"id", 5}, {"content", "<x>"}, {"special", "yes"}}});
  expect_bad(special, "special is a string");
  json sequence = tiny_word_level();
  sequence["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", 3}};
  expect_error([&] { load_tokenizer_from_json(sequence.dump(), "tok.json"); },
               {"tok.json", "pre_tokenizer step 0"});
  json bpe = {{"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", "no"}}},
              {"model", {{"type", "BPE"}, {"vocab", {{"a", 0}, {"b", 1}}}, {"merges", {"a b"}}}}};
  expect_bad(bpe, "add_prefix_space is a string");
  json dropout = bpe;
  dropout["pre_tokenizer"]["add_prefix_space"] = false;
  dropout["model"]["dropout"] = "0.1";
  expect_bad(dropout, "dropout is a string");
  json no_merges = bpe;
  no_merges["pre_tokenizer"]["add_prefix_space"] = false;
  no_merges["model"]["merges"] = json::array();
  expect_error([&] { load_tokenizer_from_json(no_merges.dump(), "tok.json"); },
               {"tok.json", "model.merges is missing or empty"});
}

// ---- images -------------------------------------------------------------------------

std::vector<uint8_t> jpeg_of(int width, int height, int pixel_format, int channels) {
  std::mt19937 rng(3);
  std::vector<uint8_t> pixels(size_t(width) * height * channels);
  for (size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = static_cast<uint8_t>((i * 7 + (rng() & 15)) & 0xFF);
  tjhandle h = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  int rc =
      tjCompress2(h, pixels.data(), width, 0, height, pixel_format, &out, &size, TJSAMP_444, 90, 0);
  std::vector<uint8_t> bytes;
  if (rc == 0) bytes.assign(out, out + size);
  tjFree(out);
  tjDestroy(h);
  if (rc != 0) throw std::runtime_error("test JPEG encoder failed");
  return bytes;
}

void expect_decode_error(const std::vector<uint8_t>& bytes, const std::string& name,
                         const std::vector<std::string>& parts) {
  std::vector<std::string> with_name = parts;
  with_name.insert(with_name.begin(), name + ": ");
  expect_error([&] { decode_image(bytes.data(), bytes.size(), name); }, with_name);
}

TEST(BadImage, HostileAndCorruptJpegs) {
  std::vector<uint8_t> good = jpeg_of(24, 16, TJPF_RGB, 3);
  ASSERT_NO_THROW(decode_image(good.data(), good.size(), "good.jpg"));
  expect_decode_error({}, "empty.jpg", {"empty file"});
  expect_decode_error({0xFF, 0xD8, 0xFF, 0xD9}, "soi_eoi.jpg", {"invalid JPEG header"});
  // CMYK is refused by name rather than decoded into wrong colours.
  std::vector<uint8_t> cmyk = jpeg_of(8, 8, TJPF_CMYK, 4);
  expect_decode_error(cmyk, "cmyk.jpg", {"CMYK"});
  // Damage each marker segment's length field in turn (tables, frame, scan): each
  // is either refused or decodes to an image of the header's size.
  int refused = 0;
  for (size_t i = 2; i + 3 < good.size(); ++i) {
    if (good[i] != 0xFF || good[i + 1] < 0xC0 || good[i + 1] == 0xD8 || good[i + 1] == 0xFF)
      continue;
    for (uint8_t value : {uint8_t{0x00}, uint8_t{0xFF}}) {
      std::vector<uint8_t> bad = good;
      bad[i + 2] = value;
      bad[i + 3] = value;
      try {
        Image image = decode_image(bad.data(), bad.size(), "marker.jpg");
        EXPECT_EQ(image.rgb.size(), size_t(image.width) * image.height * 3);
      } catch (const std::runtime_error& e) {
        EXPECT_EQ(std::string(e.what()).rfind("marker.jpg: ", 0), 0u) << e.what();
        refused++;
      }
    }
  }
  EXPECT_GE(refused, 4);
  // Entropy-coded data replaced by a marker halfway: a premature end, not a gray image.
  std::vector<uint8_t> cut = good;
  size_t half = cut.size() / 2 + 20;
  cut[half] = 0xFF;
  cut[half + 1] = 0xD9;
  cut.resize(half + 2);
  expect_decode_error(cut, "cut.jpg", {"invalid JPEG"});
}

TEST(BadImage, PngHeaderDimensionsAtTheEdges) {
  // IHDR with width/height at the edges of the 32-bit field, CRC made valid so only
  // the dimension check can refuse it.
  auto png_header = [](uint32_t width, uint32_t height) {
    std::vector<uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n',
                              0,    0,   0,   13,  'I',  'H',  'D',  'R'};
    for (uint32_t v : {width, height})
      for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
    for (uint8_t v : {8, 2, 0, 0, 0}) b.push_back(v);
    uint32_t crc = 0xFFFFFFFFu;  // CRC-32 of "IHDR" + data, written out here
    for (size_t i = 12; i < b.size(); ++i) {
      crc ^= b[i];
      for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    crc ^= 0xFFFFFFFFu;
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(crc >> s));
    return b;
  };
  expect_decode_error(png_header(0xFFFFFFFFu, 1), "max.png", {"4294967295x1", "limit"});
  expect_decode_error(png_header(1, 0x80000000u), "sign.png", {"1x2147483648", "limit"});
  expect_decode_error(png_header(16385, 1), "side.png", {"16385x1", "16384 pixels per side"});
  expect_decode_error(png_header(20000, 20000), "huge.png", {"20000x20000"});
  // Within the limits the header passes, and the missing image data is the error.
  expect_decode_error(png_header(16384, 1), "ok_side.png", {"invalid PNG"});
}

}  // namespace
}  // namespace visplay
