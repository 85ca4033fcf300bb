// Writes the committed seed corpus, fuzz/corpus/<target>/: a few small valid inputs
// per fuzz target, covering the branches worth starting from (every PNG colour type,
// interlacing, baseline/progressive/gray JPEG, every safetensors dtype, BPE and
// WordLevel tokenizers with added tokens, a benchmark with good and bad lines).
// Usage: fuzz_make_seeds <repo>/fuzz/corpus  (target built with VISPLAY_FUZZ=ON).
#include <png.h>
#include <turbojpeg.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/shapeworld.h"
#include "model/image.h"
#include "model/safetensors.h"
#include "runtime/random.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace visplay;

namespace {

void write(const fs::path& path, const std::string& bytes) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error(path.string() + ": write error");
}

void write(const fs::path& path, const std::vector<uint8_t>& bytes) {
  write(path, std::string(bytes.begin(), bytes.end()));
}

// A deterministic pattern with some structure (gradients plus a few sharp edges).
Image pattern(int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(size_t(width) * height * 3);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x) {
      size_t o = image.offset(x, y);
      image.rgb[o] = static_cast<uint8_t>(x * 255 / std::max(1, width - 1));
      image.rgb[o + 1] = static_cast<uint8_t>(y * 255 / std::max(1, height - 1));
      image.rgb[o + 2] = ((x / 3 + y / 3) % 2) ? 230 : 20;
    }
  return image;
}

// libpng directly, for the colour types encode_png never writes. Rows are packed as
// PNG stores them. longjmp lands in this frame, whose locals are trivial.
struct PngOut {
  std::vector<uint8_t> bytes;
};
void png_append(png_structp png, png_bytep data, size_t n) {
  auto* out = static_cast<PngOut*>(png_get_io_ptr(png));
  out->bytes.insert(out->bytes.end(), data, data + n);
}
void png_no_flush(png_structp) {}
bool png_write_raw(png_structp png, png_infop info, int w, int h, int color, int depth,
                   bool interlace, png_bytep* rows, PngOut* out) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, png_append, png_no_flush);
  png_set_IHDR(png, info, w, h, depth, color, interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (color == PNG_COLOR_TYPE_PALETTE) {
    png_color palette[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {250, 250, 250}};
    png_set_PLTE(png, info, palette, 4);
    png_byte alpha[2] = {0, 128};
    png_set_tRNS(png, info, alpha, 2, nullptr);
  }
  png_write_info(png, info);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

std::vector<uint8_t> raw_png(int w, int h, int color, int depth, bool interlace) {
  int channels = color == PNG_COLOR_TYPE_GRAY         ? 1
                 : color == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
                 : color == PNG_COLOR_TYPE_RGB        ? 3
                 : color == PNG_COLOR_TYPE_RGBA       ? 4
                                                      : 1;
  size_t row_bytes = (size_t(w) * channels * depth + 7) / 8;
  std::vector<std::vector<uint8_t>> rows(h, std::vector<uint8_t>(row_bytes));
  std::vector<png_bytep> pointers;
  Rng rng(uint64_t(w) * 131 + h * 7 + color * 3 + depth);
  for (auto& row : rows) {
    for (auto& b : row) b = static_cast<uint8_t>(rng.next_u64());
    if (color == PNG_COLOR_TYPE_PALETTE)  // indices 0..3 only
      for (auto& b : row) b &= depth == 8 ? 0x03 : depth == 4 ? 0x33 : 0xFF;
    pointers.push_back(row.data());
  }
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  PngOut out;
  bool ok = png_write_raw(png, info, w, h, color, depth, interlace, pointers.data(), &out);
  png_destroy_write_struct(&png, &info);
  if (!ok) throw std::runtime_error("libpng could not write a seed");
  return out.bytes;
}

std::vector<uint8_t> jpeg(const Image& image, int quality, int subsampling, int flags) {
  tjhandle handle = tjInitCompress();
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  // TJSAMP_GRAY turns the RGB input into a one-component (grayscale) JPEG.
  if (tjCompress2(handle, image.rgb.data(), image.width, 0, image.height, TJPF_RGB, &buffer, &size,
                  subsampling, quality, flags) != 0)
    throw std::runtime_error(std::string("tjCompress2: ") + tjGetErrorStr2(handle));
  std::vector<uint8_t> out(buffer, buffer + size);
  tjFree(buffer);
  tjDestroy(handle);
  return out;
}

void image_seeds(const fs::path& dir) {
  write(dir / "rgb_1x1.png", encode_png(pattern(1, 1)));
  write(dir / "rgb_9x7.png", encode_png(pattern(9, 7), 9));
  write(dir / "gray1_13x3.png", raw_png(13, 3, PNG_COLOR_TYPE_GRAY, 1, false));
  write(dir / "gray16_4x4.png", raw_png(4, 4, PNG_COLOR_TYPE_GRAY, 16, false));
  write(dir / "gray_alpha_5x2.png", raw_png(5, 2, PNG_COLOR_TYPE_GRAY_ALPHA, 8, false));
  write(dir / "palette_trns_6x6.png", raw_png(6, 6, PNG_COLOR_TYPE_PALETTE, 2, false));
  write(dir / "rgba16_interlaced_7x5.png", raw_png(7, 5, PNG_COLOR_TYPE_RGBA, 16, true));
  write(dir / "baseline_420_16x16.jpg", jpeg(pattern(16, 16), 80, TJSAMP_420, 0));
  write(dir / "progressive_444_9x9.jpg", jpeg(pattern(9, 9), 90, TJSAMP_444, TJFLAG_PROGRESSIVE));
  write(dir / "gray_8x8.jpg", jpeg(pattern(8, 8), 70, TJSAMP_GRAY, 0));
}

void safetensors_seeds(const fs::path& dir) {
  fs::create_directories(dir);
  Rng rng(11);
  auto tensor = [&](const Shape& shape, DType dtype) {
    return randn(shape, rng, 1.0, DType::f32).to(dtype);
  };
  save_safetensors((dir / "one_f32.safetensors").string(), {{"w", tensor({2, 3}, DType::f32)}});
  save_safetensors((dir / "every_dtype.safetensors").string(),
                   {{"a.f32", tensor({3}, DType::f32)},
                    {"b.bf16", tensor({2, 2}, DType::bf16)},
                    {"c.f64", tensor({1, 2}, DType::f64)},
                    {"d.i32", Tensor::zeros({2}, DType::i32)},
                    {"e.i64", Tensor::zeros({1}, DType::i64)},
                    {"f.empty", Tensor::zeros({0, 4}, DType::f32)},
                    {"g.scalar", tensor({}, DType::f32)}},
                   {{"format", "pt"}, {"note", "seed"}});
  // A hand-written header with unsorted offsets and no alignment padding.
  std::string header =
      R"({"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},)"
      R"("a":{"dtype":"I32","shape":[1],"data_offsets":[0,4]},"__metadata__":{"k":"v"}})";
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  write(dir / "hand_unsorted.safetensors", file + header + std::string(8, '\x3f'));
}

json gpt2_byte_vocab() {
  json vocab = json::object();
  int next = 256;
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
    vocab[s] = b;
  }
  return vocab;
}

void tokenizer_seeds(const fs::path& dir, const fs::path& repo) {
  json vocab = gpt2_byte_vocab();
  int id = 256;
  for (const char* t : {"he", "ll", "hell", "hello", "Ġw", "or", "Ġwor", "ld", "Ġworld"})
    vocab[t] = id++;
  json bpe = {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", id}, {"content", "<|endoftext|>"}, {"special", true}},
                                    {{"id", id + 1},
                                     {"content", "<|im_start|>"},
                                     {"special", true},
                                     {"lstrip", true},
                                     {"rstrip", false},
                                     {"single_word", false}}})},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern", {{"Regex", "\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+|\\s+"}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"}}}}};
  write(dir / "bpe_split_nfc.json", bpe.dump());
  json pairs = bpe;
  pairs["normalizer"] = nullptr;
  pairs["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}};
  pairs["model"]["merges"] = json::array({json::array({"h", "e"}), json::array({"l", "l"})});
  pairs["model"]["ignore_merges"] = true;
  write(dir / "bpe_pair_merges.json", pairs.dump());
  json word_level = {
      {"added_tokens", json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "WhitespaceSplit"}},
                                       {{"type", "Punctuation"}, {"behavior", "Isolated"}}})}}},
      {"model",
       {{"type", "WordLevel"},
        {"vocab", {{"<unk>", 0}, {"how", 1}, {"many", 2}, {"red", 3}, {"?", 4}}},
        {"unk_token", "<unk>"}}}};
  write(dir / "word_level.json", word_level.dump());
  // The ShapeWorld tokenizer the shipped model uses (a few kB).
  std::ifstream in(repo / "models/shapeworld-base/tokenizer.json", std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (text.empty()) throw std::runtime_error("models/shapeworld-base/tokenizer.json is missing");
  write(dir / "shapeworld.json", json::parse(text).dump());
}

void benchmark_seeds(const fs::path& dir) {
  write(
      dir / "labeled.jsonl",
      std::string(
          R"({"id":"000000","image":"images/000000.png","question":"how many objects are there?","answer":"3","type":"count_all"})"
          "\n"
          R"({"id":"000001","image":"images/000001.png","question":"is there a red circle?","answer":"yes","type":"exists"})"
          "\n"
          R"({"id":"000002","image":"images/000002.png","question":"what color is the square?","answer":"blue"})"
          "\n"));
  write(
      dir / "mixed_bad_lines.jsonl",
      std::string("\xEF\xBB\xBF") +
          R"({"id":"a","image":"a.png","question":"how many red shapes are there?","answer":"2"})"
          "\r\n{not json\n[1,2]\n\n"
          R"({"id":"a","image":"b.png","question":"q?"})"
          "\n"
          R"({"id":"c","image":"c.png","question":"q?","answer":3})"
          "\n"
          R"({"id":"d","image":"d.png","question":"is there a green triangle?","answer":null,"type":"exists"})");
  std::string scenes;
  for (uint64_t i = 0; i < 2; ++i) {
    json line = json::parse(world::scene_to_json(world::sample_pool_scene(5, i)));
    line["id"] = world::item_id(static_cast<int64_t>(i));
    line["image"] = "images/" + line["id"].get<std::string>() + ".png";
    scenes += line.dump() + "\n";
  }
  write(dir / "scenes.jsonl", scenes);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <repo>/fuzz/corpus\n", argv[0]);
    return 2;
  }
  try {
    fs::path corpus = argv[1];
    fs::path repo = corpus.parent_path().parent_path();
    image_seeds(corpus / "image");
    safetensors_seeds(corpus / "safetensors");
    tokenizer_seeds(corpus / "tokenizer", repo);
    benchmark_seeds(corpus / "benchmark");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_make_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
