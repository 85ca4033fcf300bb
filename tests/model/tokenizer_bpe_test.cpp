// Byte-level BPE: the shared test vectors (encoded by an independent JavaScript
// implementation), round trips on random text, both merge spellings, added tokens, NFC,
// and the errors for bad files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "model/tokenizer.h"
#include "tests/model/shared_tokenizers.h"

namespace visplay {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const std::string kShared = VISPLAY_SHARED_DIR;
const std::string kQwenDir = kShared + "/tokenizers/qwen2";
const std::string kGpt2Dir = kShared + "/tokenizers/gpt2";

struct Vector {
  std::string text;
  std::vector<int32_t> qwen, gpt2;
};

std::vector<Vector> load_vectors() {
  std::ifstream in(kShared + "/tokenizers/test_vectors.jsonl");
  EXPECT_TRUE(in) << "missing test_vectors.jsonl under " << kShared;
  std::vector<Vector> vectors;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    json j = json::parse(line);
    vectors.push_back({j["text"].get<std::string>(), j["qwen"].get<std::vector<int32_t>>(),
                       j["gpt2"].get<std::vector<int32_t>>()});
  }
  return vectors;
}

// Loading Qwen's 11 MB tokenizer.json takes a moment: do it once for the whole file.
const Tokenizer& qwen() {
  static std::unique_ptr<Tokenizer> t = load_tokenizer(kQwenDir);
  return *t;
}
const Tokenizer& gpt2() {
  static std::unique_ptr<Tokenizer> t = load_tokenizer(kGpt2Dir);
  return *t;
}

std::string ids_to_string(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += std::to_string(id) + " ";
  return s;
}

void expect_vectors(const Tokenizer& tokenizer, bool use_qwen) {
  std::vector<Vector> vectors = load_vectors();
  ASSERT_GE(vectors.size(), 20u);
  for (const Vector& v : vectors) {
    const std::vector<int32_t>& expected = use_qwen ? v.qwen : v.gpt2;
    std::vector<int32_t> ids = tokenizer.encode(v.text);
    EXPECT_EQ(ids, expected) << "text: " << json(v.text).dump() << "\n got: " << ids_to_string(ids)
                             << "\nwant: " << ids_to_string(expected);
    EXPECT_EQ(tokenizer.decode(expected), v.text) << json(v.text).dump();
  }
}

TEST(TokenizerBpe, QwenReproducesTestVectors) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  EXPECT_EQ(qwen().kind(), "bpe");
  expect_vectors(qwen(), true);
}

TEST(TokenizerBpe, Gpt2ReproducesTestVectors) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  EXPECT_EQ(gpt2().kind(), "bpe");
  expect_vectors(gpt2(), false);
}

// The Qwen file stores merges as ["a","b"] pairs; rewritten as "a b" strings the same
// vectors must still come out.
TEST(TokenizerBpe, StringMergesMatchPairMerges) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  std::ifstream in(kQwenDir + "/tokenizer.json");
  json root = json::parse(in);
  json& merges = root["model"]["merges"];
  ASSERT_TRUE(merges[0].is_array());
  for (json& m : merges) m = m[0].get<std::string>() + " " + m[1].get<std::string>();
  auto tokenizer = load_tokenizer_from_json(root.dump(), "qwen-with-string-merges");
  expect_vectors(*tokenizer, true);
}

// Also GPT-2 expressed as a tokenizer.json (ByteLevel pre-tokenizer with its built-in
// regex) must behave like encoder.json + vocab.bpe.
TEST(TokenizerBpe, Gpt2AsTokenizerJson) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  std::ifstream enc(kGpt2Dir + "/encoder.json");
  json vocab = json::parse(enc);
  std::ifstream bpe(kGpt2Dir + "/vocab.bpe");
  json merges = json::array();
  std::string line;
  std::getline(bpe, line);  // #version header
  while (std::getline(bpe, line)) {
    if (!line.empty()) merges.push_back(line);
  }
  json root = {{"normalizer", nullptr},
               {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
               {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
  auto tokenizer = load_tokenizer_from_json(root.dump(), "gpt2-as-json");
  expect_vectors(*tokenizer, false);
}

TEST(TokenizerBpe, FileAndFolderLoadTheSame) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  auto from_file = load_tokenizer(kQwenDir + "/tokenizer.json");
  std::string text = "<|im_start|>user\nHow many red circles are there?<|im_end|>";
  EXPECT_EQ(from_file->encode(text), qwen().encode(text));
  EXPECT_EQ(from_file->vocab_size(), qwen().vocab_size());
}

TEST(TokenizerBpe, SpecialIds) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  const SpecialTokenIds& q = qwen().special_ids();
  EXPECT_EQ(q.im_start, 151644);  // ids from shared/tokenizers/README.md
  EXPECT_EQ(q.vision_start, 151652);
  EXPECT_EQ(q.image_pad, 151655);
  EXPECT_EQ(q.im_end, 151645);
  EXPECT_EQ(q.eos, 151645);  // tokenizer_config.json: eos_token = <|im_end|>
  EXPECT_EQ(q.pad, 151643);  // pad_token = <|endoftext|>
  EXPECT_EQ(q.bos, -1);
  EXPECT_TRUE(qwen().is_special(151655));
  EXPECT_FALSE(qwen().is_special(151657));  // <tool_call> is added but not special
  EXPECT_FALSE(qwen().is_special(9707));
  EXPECT_EQ(qwen().vocab_size(), 151669);  // 151643 regular + 26 added
  EXPECT_EQ(qwen().id_to_token(151655), "<|image_pad|>");
  EXPECT_EQ(qwen().token_to_id("<|image_pad|>"), 151655);
  EXPECT_EQ(qwen().token_to_id("Hello"), 9707);
  EXPECT_EQ(qwen().token_to_id("no such token"), -1);
  EXPECT_THROW(qwen().id_to_token(-1), std::out_of_range);
  EXPECT_THROW(qwen().id_to_token(qwen().vocab_size()), std::out_of_range);
  EXPECT_THROW(qwen().decode(std::vector<int32_t>{1, 999999}), std::out_of_range);

  EXPECT_EQ(gpt2().special_ids().eos, 50256);
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().id_to_token(50256), "<|endoftext|>");
}

// Random strings of characters that NFC leaves alone whatever their neighbours (no
// combining marks, no Hangul jamo, no Indic vowel signs), so Qwen's NFC step must be a
// no-op and the round trip exact.
std::string random_nfc_stable_text(std::mt19937& rng, size_t length) {
  static const std::vector<std::pair<uint32_t, uint32_t>> ranges = {
      {0x20, 0x7E},     {0x0A, 0x0D},     {0xA0, 0xFF},       {0x391, 0x3A1},   {0x3B1, 0x3C9},
      {0x410, 0x44F},   {0x4E00, 0x9FFF}, {0x3041, 0x3096},   {0x30A1, 0x30FA}, {0x1F600, 0x1F64F},
      {0x2190, 0x21FF}, {0xAC00, 0xD7A3}, {0x1F3FB, 0x1F3FF}, {0x2002, 0x200A}};
  std::string s;
  for (size_t i = 0; i < length; ++i) {
    const auto& [lo, hi] = ranges[rng() % ranges.size()];
    uint32_t cp = lo + rng() % (hi - lo + 1);
    // Encode by hand: the test must not lean on the code under test.
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else if (cp < 0x800) {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      s += static_cast<char>(0xE0 | (cp >> 12));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      s += static_cast<char>(0xF0 | (cp >> 18));
      s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return s;
}

std::string random_bytes(std::mt19937& rng, size_t length, int max_byte) {
  std::string s(length, '\0');
  for (char& c : s) c = static_cast<char>(rng() % (max_byte + 1));
  return s;
}

TEST(TokenizerBpe, RoundTripRandomText) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  std::mt19937 rng(1234);
  for (int trial = 0; trial < 300; ++trial) {
    std::string text = random_nfc_stable_text(rng, 1 + rng() % 60);
    for (const Tokenizer* t : {&qwen(), &gpt2()}) {
      std::vector<int32_t> ids = t->encode(text);
      ASSERT_EQ(t->decode(ids), text) << t->origin() << " trial " << trial;
    }
  }
}

TEST(TokenizerBpe, RoundTripRandomBytes) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  std::mt19937 rng(99);
  for (int trial = 0; trial < 300; ++trial) {
    // GPT-2 has no normaliser: any bytes at all, invalid UTF-8 included.
    std::string text = random_bytes(rng, 1 + rng() % 80, 255);
    ASSERT_EQ(gpt2().decode(gpt2().encode(text)), text) << "trial " << trial;
    // Qwen normalises to NFC; bytes below 0xCC cannot form a code point NFC touches.
    std::string low = random_bytes(rng, 1 + rng() % 80, 0xCB);
    ASSERT_EQ(qwen().decode(qwen().encode(low)), low) << "trial " << trial;
  }
}

// Facts from the Unicode standard, not from our code: é = e + U+0301, Hangul 각 =
// U+1100 U+1161 U+11A8, and ordering of marks by combining class (U+0323 class 220 before
// U+0302 class 230, so ệ = U+1EC7 comes out either way).
TEST(TokenizerBpe, QwenNormalizesToNfc) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  EXPECT_EQ(qwen().encode("cafe\xCC\x81"), qwen().encode("caf\xC3\xA9"));
  EXPECT_EQ(qwen().encode("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), qwen().encode("\xEA\xB0\x81"));
  EXPECT_EQ(qwen().encode("e\xCC\x82\xCC\xA3"), qwen().encode("\xE1\xBB\x87"));
  EXPECT_EQ(qwen().encode("e\xCC\xA3\xCC\x82"), qwen().encode("\xE1\xBB\x87"));
  // Å (U+212B, a singleton) becomes U+00C5.
  EXPECT_EQ(qwen().encode("\xE2\x84\xAB"), qwen().encode("\xC3\x85"));
  // GPT-2 has no normaliser: the decomposed form stays different.
  EXPECT_NE(gpt2().encode("cafe\xCC\x81"), gpt2().encode("caf\xC3\xA9"));
}

// A 200 KB run of spaces is a single regex piece: it must neither overflow the regex
// stack nor take quadratic time in the merges.
TEST(TokenizerBpe, LongPiecesAreFast) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  std::string spaces(200000, ' ');
  std::string letters(100000, 'a');
  auto start = std::chrono::steady_clock::now();
  for (const Tokenizer* t : {&qwen(), &gpt2()}) {
    EXPECT_EQ(t->decode(t->encode(spaces + "x")), spaces + "x");
    EXPECT_EQ(t->decode(t->encode(letters)), letters);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 5.0);
}

TEST(TokenizerBpe, Throughput) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  // English-like text from the vectors, repeated with variations to about 2 MB.
  std::vector<Vector> vectors = load_vectors();
  std::mt19937 rng(7);
  std::string text;
  while (text.size() < (2u << 20)) {
    text += vectors[rng() % vectors.size()].text;
    text += ' ';
    text += std::to_string(rng() % 100000);
    text += ' ';
  }
  for (const Tokenizer* t : {&qwen(), &gpt2()}) {
    auto start = std::chrono::steady_clock::now();
    std::vector<int32_t> ids = t->encode(text);
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    double mb_per_s = text.size() / 1e6 / seconds;
    std::printf("[ throughput ] %s: %.2f MB/s (%zu tokens)\n", t->origin().c_str(), mb_per_s,
                ids.size());
    EXPECT_GT(mb_per_s, 1.0);
    EXPECT_EQ(t->decode(ids), text);
  }
}

TEST(TokenizerBpe, ThreadsGiveTheSameIds) {
  SKIP_WITHOUT_SHARED_TOKENIZERS();
  std::mt19937 rng(5);
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) texts.push_back(random_nfc_stable_text(rng, 40));
  std::vector<std::vector<int32_t>> serial;
  for (const auto& s : texts) serial.push_back(qwen().encode(s));
  std::vector<std::vector<int32_t>> a(texts.size()), b(texts.size());
  std::thread ta([&] {
    for (size_t i = 0; i < texts.size(); ++i) a[i] = qwen().encode(texts[i]);
  });
  std::thread tb([&] {
    for (size_t i = texts.size(); i-- > 0;) b[i] = qwen().encode(texts[i]);
  });
  ta.join();
  tb.join();
  EXPECT_EQ(a, serial);
  EXPECT_EQ(b, serial);
}

// ---- a tiny hand-built BPE for the rules themselves ----------------------------------

// Byte-level vocabulary of all 256 bytes plus merges h+e, l+l, he+ll, hell+o.
json tiny_bpe(json merges, json added = json::array()) {
  // GPT-2's byte -> character table, written out independently here.
  json vocab = json::object();
  int next = 256, id = 0;
  std::vector<std::string> spelling(256);
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    uint32_t cp = printable ? b : next++;
    std::string s;
    if (cp < 0x80) {
      s += static_cast<char>(cp);
    } else {
      s += static_cast<char>(0xC0 | (cp >> 6));
      s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    spelling[b] = s;
  }
  for (int b = 0; b < 256; ++b) vocab[spelling[b]] = id++;
  for (const char* t : {"he", "ll", "hell", "hello"}) vocab[t] = id++;
  return {{"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

TEST(TokenizerBpe, TinyMergesBothForms) {
  json string_form = tiny_bpe({"h e", "l l", "he ll", "hell o"});
  json pair_form = tiny_bpe(json::array({json::array({"h", "e"}), json::array({"l", "l"}),
                                         json::array({"he", "ll"}), json::array({"hell", "o"})}));
  auto a = load_tokenizer_from_json(string_form.dump(), "tiny-a");
  auto b = load_tokenizer_from_json(pair_form.dump(), "tiny-b");
  EXPECT_EQ(a->encode("hello"), std::vector<int32_t>({259}));
  EXPECT_EQ(a->encode("hell"), std::vector<int32_t>({258}));
  // "hellx": merges give hell + x.
  EXPECT_EQ(a->encode("hellx"), std::vector<int32_t>({258, 'x'}));
  for (const char* s : {"hello", "hell", "ohell", "hhee llo", "lll"}) {
    EXPECT_EQ(a->encode(s), b->encode(s)) << s;
  }
}

TEST(TokenizerBpe, AddedTokensLongestMatchFirst) {
  json added = json::array({
      {{"id", 300}, {"content", "<a>"}, {"special", true}},
      {{"id", 301}, {"content", "<a><b>"}, {"special", true}},
      {{"id", 302}, {"content", "ell"}, {"special", false}},
  });
  auto t = load_tokenizer_from_json(tiny_bpe({"h e", "l l", "he ll", "hell o"}, added).dump(),
                                    "tiny-added");
  // "<a><b>" wins over "<a>" where both start; "ell" as an added token blocks the "hello"
  // merge, since added tokens are cut out before BPE.
  EXPECT_EQ(t->encode("hello"), std::vector<int32_t>({'h', 302, 'o'}));
  std::vector<int32_t> ids = t->encode("x<a><b><a>hello<a");
  std::vector<int32_t> want = {'x', 301, 300, 'h', 302, 'o', '<', 'a'};
  EXPECT_EQ(ids, want);
  EXPECT_EQ(t->decode(ids), "x<a><b><a>hello<a");
}

// lstrip/rstrip swallow the whitespace next to the token; single_word only matches a
// token standing on its own.
TEST(TokenizerBpe, AddedTokenStripAndSingleWord) {
  json added = json::array({
      {{"id", 300}, {"content", "<m>"}, {"lstrip", true}, {"rstrip", true}},
      {{"id", 301}, {"content", "ok"}, {"single_word", true}},
  });
  auto t = load_tokenizer_from_json(tiny_bpe({"h e"}, added).dump(), "tiny-strip");
  EXPECT_EQ(t->encode("a  <m> \tb"), std::vector<int32_t>({'a', 300, 'b'}));
  EXPECT_EQ(t->encode("ok"), std::vector<int32_t>({301}));
  EXPECT_EQ(t->encode("ok!"), std::vector<int32_t>({301, '!'}));
  EXPECT_EQ(t->encode("okay"), std::vector<int32_t>({'o', 'k', 'a', 'y'}));
  EXPECT_EQ(t->encode("took"), std::vector<int32_t>({'t', 'o', 'o', 'k'}));
}

// ---- errors ------------------------------------------------------------------------------

std::string temp_path(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("visplay_tok_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// Runs f, expects a std::runtime_error whose message holds every one of `parts`.
template <typename F>
void expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
    ADD_FAILURE() << "no error thrown";
  } catch (const std::runtime_error& e) {
    std::string message = e.what();
    for (const std::string& part : parts) {
      EXPECT_NE(message.find(part), std::string::npos)
          << "message: " << message << "\nmissing: " << part;
    }
  }
}

TEST(TokenizerBpe, ErrorsNameTheFile) {
  expect_error([] { load_tokenizer("/no/such/tokenizer.json"); }, {"/no/such/tokenizer.json"});

  std::string bad_json = temp_path("bad.json");
  write_file(bad_json, "{\"model\": {\"type\": \"BPE\", ");
  expect_error([&] { load_tokenizer(bad_json); }, {bad_json, "invalid JSON"});

  std::string empty_merges = temp_path("empty_merges.json");
  write_file(empty_merges, tiny_bpe(json::array()).dump());
  expect_error([&] { load_tokenizer(empty_merges); }, {empty_merges, "merges", "empty"});

  json no_merges = tiny_bpe(json::array());
  no_merges["model"].erase("merges");
  std::string missing_merges = temp_path("missing_merges.json");
  write_file(missing_merges, no_merges.dump());
  expect_error([&] { load_tokenizer(missing_merges); }, {missing_merges, "merges"});

  std::string unknown = temp_path("unknown_merge.json");
  write_file(unknown, tiny_bpe({"h e", "q z"}).dump());
  expect_error([&] { load_tokenizer(unknown); }, {unknown, "merge 1", "qz"});

  std::string malformed = temp_path("malformed_merge.json");
  write_file(malformed, tiny_bpe({"h e", "hell"}).dump());
  expect_error([&] { load_tokenizer(malformed); }, {malformed, "model.merges[1]"});

  json wordpiece = tiny_bpe({"h e"});
  wordpiece["model"]["type"] = "WordPiece";
  expect_error([&] { load_tokenizer_from_json(wordpiece.dump(), "wp.json"); },
               {"wp.json", "WordPiece"});

  std::string empty_dir = temp_path("empty_dir");
  fs::create_directories(empty_dir);
  expect_error([&] { load_tokenizer(empty_dir); }, {empty_dir, "tokenizer.json"});

  // GPT-2 files: a vocab.bpe with only its header, and one with a broken line.
  std::string gpt2_dir = temp_path("gpt2_bad");
  fs::create_directories(gpt2_dir);
  write_file(gpt2_dir + "/encoder.json", tiny_bpe({"h e"})["model"]["vocab"].dump());
  write_file(gpt2_dir + "/vocab.bpe", "#version: 0.2\n");
  expect_error([&] { load_tokenizer(gpt2_dir); }, {gpt2_dir + "/vocab.bpe", "no merges"});
  write_file(gpt2_dir + "/vocab.bpe", "#version: 0.2\nh e\nl l x\n");
  expect_error([&] { load_tokenizer(gpt2_dir); }, {gpt2_dir + "/vocab.bpe", "line 3"});
  write_file(gpt2_dir + "/vocab.bpe", "#version: 0.2\nh e\n");
  auto ok = load_tokenizer(gpt2_dir);
  EXPECT_EQ(ok->encode("hhe"), std::vector<int32_t>({'h', 256}));
  fs::remove_all(fs::path(temp_path("x")).parent_path());
}

}  // namespace
}  // namespace visplay
