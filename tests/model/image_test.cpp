// Tests for model/image.h: PNG/JPEG decoding of every PNG color type (files written
// here with libpng/TurboJPEG directly, expected pixels computed independently), PNG
// round trip, bad inputs (empty, truncated, corrupt, random mutations, oversized
// headers), bilinear resize against hand-computed values, normalisation, folders.
#include "model/image.h"

#include <gtest/gtest.h>
#include <png.h>
#include <sys/resource.h>
#include <turbojpeg.h>
#include <zlib.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>

namespace fs = std::filesystem;
using visplay::Image;
using visplay::ImageLimits;

namespace {

// ---- a minimal libpng writer for the test (independent of encode_png) ----

struct RawPng {
  int width = 0, height = 0, color_type = 0, bit_depth = 8;
  std::vector<std::vector<uint8_t>> rows;  // packed rows as PNG stores them
  std::vector<png_color> palette;
  std::vector<uint8_t> trns_alpha;  // palette tRNS
  bool interlaced = false;
};

RawPng make_raw(int width, int height, int color_type, int bit_depth) {
  RawPng raw;
  raw.width = width;
  raw.height = height;
  raw.color_type = color_type;
  raw.bit_depth = bit_depth;
  return raw;
}

struct WriteBuffer {
  std::vector<uint8_t> bytes;
};

void append_bytes(png_structp png, png_bytep data, size_t n) {
  auto* buf = static_cast<WriteBuffer*>(png_get_io_ptr(png));
  buf->bytes.insert(buf->bytes.end(), data, data + n);
}
void no_flush(png_structp) {}

bool write_raw_core(png_structp png, png_infop info, const RawPng* raw, png_bytep* rows,
                    WriteBuffer* buf) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, buf, append_bytes, no_flush);
  png_set_IHDR(png, info, raw->width, raw->height, raw->bit_depth, raw->color_type,
               raw->interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!raw->palette.empty())
    png_set_PLTE(png, info, const_cast<png_colorp>(raw->palette.data()),
                 static_cast<int>(raw->palette.size()));
  if (!raw->trns_alpha.empty())
    png_set_tRNS(png, info, const_cast<png_bytep>(raw->trns_alpha.data()),
                 static_cast<int>(raw->trns_alpha.size()), nullptr);
  png_write_info(png, info);
  if (raw->bit_depth == 16) png_set_swap(png);  // our rows hold little-endian 16-bit samples
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

std::vector<uint8_t> write_raw_png(const RawPng& raw) {
  WriteBuffer buf;
  std::vector<png_bytep> rows;
  for (auto& row : raw.rows) rows.push_back(const_cast<png_bytep>(row.data()));
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  bool ok = write_raw_core(png, info, &raw, rows.data(), &buf);
  png_destroy_write_struct(&png, &info);
  if (!ok) throw std::runtime_error("test PNG writer failed");
  return buf.bytes;
}

// Alpha over white, rounded to nearest (the documented convention).
uint8_t over_white(int c, int alpha) {
  return static_cast<uint8_t>(std::lround((c * alpha + 255.0 * (255 - alpha)) / 255.0));
}
uint8_t scale16(int v) { return static_cast<uint8_t>(std::lround(v * 255.0 / 65535.0)); }

Image random_image(int w, int h, uint32_t seed) {
  std::mt19937 rng(seed);
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(size_t(w) * h * 3);
  for (auto& b : img.rgb) b = static_cast<uint8_t>(rng() & 0xFF);
  return img;
}

std::vector<uint8_t> encode_jpeg(const Image& img, int quality, int subsampling = TJSAMP_444,
                                 int pixel_format = TJPF_RGB) {
  tjhandle h = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  int rc = tjCompress2(h, img.rgb.data(), img.width, 0, img.height, pixel_format, &out, &size,
                       subsampling, quality, TJFLAG_ACCURATEDCT);
  std::vector<uint8_t> bytes;
  if (rc == 0) bytes.assign(out, out + size);
  tjFree(out);
  tjDestroy(h);
  if (rc != 0) throw std::runtime_error("test JPEG encoder failed");
  return bytes;
}

// A smooth image with some texture: JPEG-friendly, so the tolerance can be tight.
Image smooth_image(int w, int h, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> noise(-4, 4);
  Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(size_t(w) * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int base[3] = {40 + 150 * x / w, 30 + 180 * y / h, 200 - 120 * (x + y) / (w + h)};
      for (int c = 0; c < 3; c++)
        img.rgb[img.offset(x, y) + c] =
            static_cast<uint8_t>(std::clamp(base[c] + noise(rng), 0, 255));
    }
  return img;
}

std::string temp_dir(const std::string& name) {
  fs::path dir = fs::path(testing::TempDir()) / ("visplay_image_test_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// Expects decode to throw std::runtime_error whose message contains `name` and `what`.
void expect_decode_error(const std::vector<uint8_t>& bytes, const std::string& name,
                         const std::string& what, const ImageLimits& limits = {}) {
  try {
    Image img = visplay::decode_image(bytes.data(), bytes.size(), name, limits);
    FAIL() << "decoded " << img.width << "x" << img.height << " from bad input " << name;
  } catch (const std::runtime_error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find(name), std::string::npos) << message;
    EXPECT_NE(message.find(what), std::string::npos) << message;
  }
}

std::vector<uint8_t> be32(uint32_t v) {
  return {uint8_t(v >> 24), uint8_t(v >> 16), uint8_t(v >> 8), uint8_t(v)};
}

// PNG signature + one IHDR chunk (valid CRC) claiming width x height, then an IEND.
std::vector<uint8_t> png_header_only(uint32_t width, uint32_t height) {
  std::vector<uint8_t> bytes = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  std::vector<uint8_t> chunk = {'I', 'H', 'D', 'R'};
  for (uint8_t b : be32(width)) chunk.push_back(b);
  for (uint8_t b : be32(height)) chunk.push_back(b);
  chunk.insert(chunk.end(), {8, 2, 0, 0, 0});  // 8-bit RGB, deflate, no filter, no interlace
  for (uint8_t b : be32(13)) bytes.push_back(b);
  bytes.insert(bytes.end(), chunk.begin(), chunk.end());
  for (uint8_t b : be32(crc32(0, chunk.data(), chunk.size()))) bytes.push_back(b);
  std::vector<uint8_t> iend = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xAE, 0x42, 0x60, 0x82};
  bytes.insert(bytes.end(), iend.begin(), iend.end());
  return bytes;
}

long max_rss_kb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss;
}

}  // namespace

// ---------------------------------------------------------------------------

TEST(Image, SniffFormat) {
  std::vector<uint8_t> png = visplay::encode_png(random_image(3, 2, 1));
  std::vector<uint8_t> jpg = encode_jpeg(random_image(8, 8, 2), 90);
  EXPECT_EQ(visplay::sniff_image_format(png.data(), png.size()), visplay::ImageFormat::png);
  EXPECT_EQ(visplay::sniff_image_format(jpg.data(), jpg.size()), visplay::ImageFormat::jpeg);
  const uint8_t gif[] = {'G', 'I', 'F', '8', '9', 'a'};
  EXPECT_EQ(visplay::sniff_image_format(gif, sizeof(gif)), visplay::ImageFormat::unknown);
  EXPECT_EQ(visplay::sniff_image_format(png.data(), 7), visplay::ImageFormat::unknown);
}

TEST(Image, PngRoundTripBitExact) {
  for (auto [w, h] : {std::pair{1, 1}, {64, 64}, {37, 5}, {3, 111}}) {
    Image img = random_image(w, h, 1000 + w * 7 + h);
    for (int level : {0, 6, 9}) {
      std::vector<uint8_t> bytes = visplay::encode_png(img, level);
      Image back = visplay::decode_image(bytes.data(), bytes.size());
      ASSERT_EQ(back.width, w);
      ASSERT_EQ(back.height, h);
      EXPECT_EQ(back.rgb, img.rgb) << w << "x" << h << " level " << level;
    }
  }
  // Encoding is deterministic.
  Image img = random_image(20, 20, 5);
  EXPECT_EQ(visplay::encode_png(img), visplay::encode_png(img));
}

TEST(Image, SaveAndLoadFile) {
  std::string dir = temp_dir("save");
  Image img = random_image(17, 9, 77);
  std::string path = dir + "/a.png";
  visplay::save_png(path, img);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  Image back = visplay::load_image(path);
  EXPECT_EQ(back.rgb, img.rgb);
  EXPECT_THROW(visplay::save_png(dir + "/no/such/dir/a.png", img), std::runtime_error);
  Image bad = img;
  bad.rgb.pop_back();
  EXPECT_THROW(visplay::encode_png(bad), std::runtime_error);
}

TEST(Image, PngGray8And16) {
  std::mt19937 rng(11);
  const int w = 7, h = 5;
  RawPng gray8 = make_raw(w, h, PNG_COLOR_TYPE_GRAY, 8);
  RawPng gray16 = make_raw(w, h, PNG_COLOR_TYPE_GRAY, 16);
  std::vector<int> v8(w * h), v16(w * h);
  for (int y = 0; y < h; y++) {
    std::vector<uint8_t> r8, r16;
    for (int x = 0; x < w; x++) {
      v8[y * w + x] = rng() % 256;
      v16[y * w + x] = rng() % 65536;
      r8.push_back(v8[y * w + x]);
      r16.push_back(v16[y * w + x] & 0xFF);  // little endian; the writer swaps
      r16.push_back(v16[y * w + x] >> 8);
    }
    gray8.rows.push_back(r8);
    gray16.rows.push_back(r16);
  }
  v16[0] = 65535;  // make sure the extremes are exercised
  gray16.rows[0][0] = 0xFF;
  gray16.rows[0][1] = 0xFF;
  v16[1] = 128;  // 128 * 255 / 65535 = 0.498 -> 0
  gray16.rows[0][2] = 128;
  gray16.rows[0][3] = 0;
  v16[2] = 129;  // 0.502 -> 1
  gray16.rows[0][4] = 129;
  gray16.rows[0][5] = 0;
  auto b8 = write_raw_png(gray8);
  auto b16 = write_raw_png(gray16);
  Image i8 = visplay::decode_image(b8.data(), b8.size());
  Image i16 = visplay::decode_image(b16.data(), b16.size());
  ASSERT_EQ(i8.width, w);
  ASSERT_EQ(i16.height, h);
  for (int i = 0; i < w * h; i++)
    for (int c = 0; c < 3; c++) {
      ASSERT_EQ(i8.rgb[3 * i + c], v8[i]) << i;
      ASSERT_EQ(i16.rgb[3 * i + c], scale16(v16[i])) << i << " value " << v16[i];
    }
}

TEST(Image, PngGrayLowBitDepths) {
  // 1-bit gray: 0 -> 0, 1 -> 255; 4-bit gray: v -> v * 17.
  RawPng g1 = make_raw(10, 2, PNG_COLOR_TYPE_GRAY, 1);
  // 10 pixels packed MSB first in 2 bytes: 1011001110 then 6 padding bits.
  g1.rows = {{0b10110011, 0b10000000}, {0b01001100, 0b01000000}};
  int expected1[2][10] = {{1, 0, 1, 1, 0, 0, 1, 1, 1, 0}, {0, 1, 0, 0, 1, 1, 0, 0, 0, 1}};
  auto b1 = write_raw_png(g1);
  Image i1 = visplay::decode_image(b1.data(), b1.size());
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 10; x++)
      EXPECT_EQ(i1.rgb[i1.offset(x, y) + 1], expected1[y][x] * 255) << x << "," << y;

  RawPng g4 = make_raw(3, 1, PNG_COLOR_TYPE_GRAY, 4);
  g4.rows = {{0x3F, 0x90}};  // pixels 3, 15, 9
  auto b4 = write_raw_png(g4);
  Image i4 = visplay::decode_image(b4.data(), b4.size());
  EXPECT_EQ(i4.rgb, (std::vector<uint8_t>{51, 51, 51, 255, 255, 255, 153, 153, 153}));
}

TEST(Image, PngGrayAlphaAndRgbaCompositeOnWhite) {
  std::mt19937 rng(12);
  const int w = 6, h = 4;
  RawPng ga = make_raw(w, h, PNG_COLOR_TYPE_GRAY_ALPHA, 8);
  RawPng rgba = make_raw(w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8);
  std::vector<std::array<int, 2>> gav(w * h);
  std::vector<std::array<int, 4>> rgbav(w * h);
  for (int y = 0; y < h; y++) {
    std::vector<uint8_t> r1, r2;
    for (int x = 0; x < w; x++) {
      int i = y * w + x;
      gav[i] = {int(rng() % 256), int(rng() % 256)};
      rgbav[i] = {int(rng() % 256), int(rng() % 256), int(rng() % 256), int(rng() % 256)};
      if (i == 0) rgbav[i][3] = 0, gav[i][1] = 0;      // fully transparent -> white
      if (i == 1) rgbav[i][3] = 255, gav[i][1] = 255;  // opaque -> unchanged
      for (int v : gav[i]) r1.push_back(v);
      for (int v : rgbav[i]) r2.push_back(v);
    }
    ga.rows.push_back(r1);
    rgba.rows.push_back(r2);
  }
  auto bga = write_raw_png(ga);
  auto brgba = write_raw_png(rgba);
  Image iga = visplay::decode_image(bga.data(), bga.size());
  Image irgba = visplay::decode_image(brgba.data(), brgba.size());
  for (int i = 0; i < w * h; i++)
    for (int c = 0; c < 3; c++) {
      ASSERT_EQ(iga.rgb[3 * i + c], over_white(gav[i][0], gav[i][1])) << i;
      ASSERT_EQ(irgba.rgb[3 * i + c], over_white(rgbav[i][c], rgbav[i][3])) << i;
    }
  EXPECT_EQ(irgba.rgb[0], 255);
  EXPECT_EQ(irgba.rgb[3], rgbav[1][0]);
}

TEST(Image, PngRgb16) {
  std::mt19937 rng(13);
  const int w = 5, h = 3;
  RawPng raw = make_raw(w, h, PNG_COLOR_TYPE_RGB, 16);
  std::vector<int> values(w * h * 3);
  for (int y = 0; y < h; y++) {
    std::vector<uint8_t> row;
    for (int x = 0; x < w * 3; x++) {
      int v = rng() % 65536;
      values[y * w * 3 + x] = v;
      row.push_back(v & 0xFF);
      row.push_back(v >> 8);
    }
    raw.rows.push_back(row);
  }
  auto bytes = write_raw_png(raw);
  Image img = visplay::decode_image(bytes.data(), bytes.size());
  for (size_t i = 0; i < values.size(); i++) ASSERT_EQ(img.rgb[i], scale16(values[i])) << i;
}

TEST(Image, PngPaletteWithTransparency) {
  RawPng raw = make_raw(4, 2, PNG_COLOR_TYPE_PALETTE, 8);
  raw.palette = {{10, 20, 30}, {200, 100, 0}, {255, 255, 255}, {0, 0, 250}};
  raw.trns_alpha = {255, 128, 0};  // entry 3 has no tRNS entry: opaque
  raw.rows = {{0, 1, 2, 3}, {3, 2, 1, 0}};
  auto bytes = write_raw_png(raw);
  Image img = visplay::decode_image(bytes.data(), bytes.size());
  int alpha[4] = {255, 128, 0, 255};
  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 4; x++) {
      int index = raw.rows[y][x];
      png_color p = raw.palette[index];
      int rgb[3] = {p.red, p.green, p.blue};
      for (int c = 0; c < 3; c++)
        EXPECT_EQ(img.rgb[img.offset(x, y) + c], over_white(rgb[c], alpha[index]))
            << x << "," << y << " c" << c;
    }
  // Hand check of one value: 200 over white at alpha 128 = (200*128 + 255*127)/255 = 227.4 -> 227.
  EXPECT_EQ(img.rgb[img.offset(1, 0)], 227);

  // A 2-bit palette image without tRNS.
  RawPng small = make_raw(3, 1, PNG_COLOR_TYPE_PALETTE, 2);
  small.palette = {{1, 2, 3}, {4, 5, 6}, {7, 8, 9}};
  small.rows = {{0b10010000}};  // indices 2, 1, 0
  auto sb = write_raw_png(small);
  Image si = visplay::decode_image(sb.data(), sb.size());
  EXPECT_EQ(si.rgb, (std::vector<uint8_t>{7, 8, 9, 4, 5, 6, 1, 2, 3}));
}

TEST(Image, PngInterlaced) {
  Image img = random_image(13, 11, 99);
  RawPng raw = make_raw(13, 11, PNG_COLOR_TYPE_RGB, 8);
  raw.interlaced = true;
  for (int y = 0; y < 11; y++)
    raw.rows.emplace_back(img.rgb.begin() + img.offset(0, y),
                          img.rgb.begin() + img.offset(0, y + 1));
  auto bytes = write_raw_png(raw);
  Image back = visplay::decode_image(bytes.data(), bytes.size());
  EXPECT_EQ(back.rgb, img.rgb);
}

TEST(Image, JpegDecodeWithinTolerance) {
  Image img = smooth_image(48, 40, 21);
  auto bytes = encode_jpeg(img, 95);
  Image back = visplay::decode_image(bytes.data(), bytes.size(), "smooth.jpg");
  ASSERT_EQ(back.width, 48);
  ASSERT_EQ(back.height, 40);
  double sum_abs = 0;
  int max_abs = 0;
  for (size_t i = 0; i < img.rgb.size(); i++) {
    int d = std::abs(int(img.rgb[i]) - int(back.rgb[i]));
    sum_abs += d;
    max_abs = std::max(max_abs, d);
  }
  EXPECT_LT(sum_abs / img.rgb.size(), 3.0);
  EXPECT_LE(max_abs, 24);
  // Decoding is deterministic.
  Image again = visplay::decode_image(bytes.data(), bytes.size());
  EXPECT_EQ(again.rgb, back.rgb);

  // A grayscale JPEG decodes to RGB with equal channels.
  Image gray_src = smooth_image(16, 16, 22);
  Image gray_plane;  // one byte per pixel for TJPF_GRAY
  gray_plane.width = 16;
  gray_plane.height = 16;
  for (size_t i = 0; i < 256; i++) gray_plane.rgb.push_back(gray_src.rgb[3 * i]);
  auto gray_bytes = encode_jpeg(gray_plane, 95, TJSAMP_GRAY, TJPF_GRAY);
  Image gray = visplay::decode_image(gray_bytes.data(), gray_bytes.size());
  for (int i = 0; i < 256; i++) {
    EXPECT_EQ(gray.rgb[3 * i], gray.rgb[3 * i + 1]);
    EXPECT_EQ(gray.rgb[3 * i], gray.rgb[3 * i + 2]);
    EXPECT_LE(std::abs(int(gray.rgb[3 * i]) - int(gray_plane.rgb[i])), 12);
  }
}

TEST(Image, OneByOne) {
  Image px;
  px.width = px.height = 1;
  px.rgb = {12, 200, 99};
  auto png = visplay::encode_png(px);
  EXPECT_EQ(visplay::decode_image(png.data(), png.size()).rgb, px.rgb);
  auto jpg = encode_jpeg(px, 100);
  Image j = visplay::decode_image(jpg.data(), jpg.size());
  ASSERT_EQ(j.width, 1);
  ASSERT_EQ(j.height, 1);
  for (int c = 0; c < 3; c++) EXPECT_LE(std::abs(int(j.rgb[c]) - int(px.rgb[c])), 4);
  Image up = visplay::resize_bilinear(px, 3, 2);
  for (int i = 0; i < 6; i++)
    for (int c = 0; c < 3; c++) EXPECT_EQ(up.rgb[3 * i + c], px.rgb[c]);
  Image down = visplay::resize_bilinear(random_image(5, 5, 3), 1, 1);
  EXPECT_EQ(down.rgb.size(), 3u);
}

TEST(Image, EmptyAndUnsupported) {
  expect_decode_error({}, "empty.png", "empty file");
  expect_decode_error({'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0}, "anim.gif", "unsupported");
  expect_decode_error({0x89, 'P', 'N'}, "short.png", "unsupported");
  std::string dir = temp_dir("empty");
  write_file(dir + "/empty.png", {});
  EXPECT_THROW(visplay::load_image(dir + "/empty.png"), std::runtime_error);
  try {
    visplay::load_image(dir + "/missing.png");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.png"), std::string::npos);
  }
  EXPECT_THROW(visplay::load_image(dir), std::runtime_error);  // a directory
}

TEST(Image, TruncatedPngAtEveryLength) {
  auto bytes = visplay::encode_png(random_image(9, 7, 4));
  for (size_t len = 1; len < bytes.size(); len++) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + len);
    try {
      visplay::decode_image(cut.data(), cut.size(), "cut.png");
      FAIL() << "truncated PNG of " << len << " of " << bytes.size() << " bytes decoded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.png"), std::string::npos);
    }
  }
}

TEST(Image, TruncatedJpeg) {
  auto bytes = encode_jpeg(smooth_image(32, 32, 5), 90);
  for (size_t len : {size_t(2), size_t(3), size_t(20), bytes.size() / 2, bytes.size() - 2}) {
    std::vector<uint8_t> cut(bytes.begin(), bytes.begin() + len);
    try {
      visplay::decode_image(cut.data(), cut.size(), "cut.jpg");
      FAIL() << "truncated JPEG of " << len << " bytes decoded";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.jpg"), std::string::npos) << e.what();
    }
  }
}

TEST(Image, CorruptPngCrc) {
  auto bytes = visplay::encode_png(random_image(9, 7, 6));
  // Flip a byte inside IHDR (its CRC no longer matches) and one inside the image data.
  auto ihdr = bytes;
  ihdr[27] ^= 0x01;  // filter method byte
  expect_decode_error(ihdr, "ihdr.png", "invalid PNG");
  auto data = bytes;
  data[45] ^= 0x5A;
  expect_decode_error(data, "data.png", "invalid PNG");
}

TEST(Image, RandomMutationsNeverCrash) {
  // Each mutated file either decodes to a consistent image or throws runtime_error.
  std::mt19937 rng(8);
  auto png = visplay::encode_png(random_image(12, 10, 7));
  auto jpg = encode_jpeg(smooth_image(24, 16, 8), 85);
  int errors = 0, decoded = 0;
  for (int trial = 0; trial < 400; trial++) {
    auto bytes = (trial % 2) ? png : jpg;
    int flips = 1 + rng() % 4;
    for (int f = 0; f < flips; f++) bytes[3 + rng() % (bytes.size() - 3)] = rng() & 0xFF;
    try {
      Image img = visplay::decode_image(bytes.data(), bytes.size(), "fuzz");
      ASSERT_EQ(img.rgb.size(), size_t(img.width) * img.height * 3);
      decoded++;
    } catch (const std::runtime_error&) {
      errors++;
    }
  }
  EXPECT_GT(errors, 50);  // most mutations are caught (PNG CRCs catch all PNG ones)
  EXPECT_EQ(errors + decoded, 400);
}

TEST(Image, TooLargeHeaderRefusedBeforeAllocating) {
  auto header = png_header_only(20000, 20000);
  long rss_before = max_rss_kb();
  auto start = std::chrono::steady_clock::now();
  expect_decode_error(header, "huge.png", "20000x20000");
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(ms, 50.0);
  // 20000 * 20000 * 3 bytes = 1.2 GB: had it been allocated and touched, the peak RSS would jump.
  EXPECT_LT(max_rss_kb() - rss_before, 64 * 1024);

  expect_decode_error(png_header_only(0, 10), "zero.png", "zero size");
  // Under the side limit but over the pixel budget (10000^2 = 1e8 > 64 Mi).
  expect_decode_error(png_header_only(10000, 10000), "budget.png", "pixels");
  // Configurable limits: 65 wide is refused with max_side 64, 64 wide decodes.
  ImageLimits tight;
  tight.max_side = 64;
  auto wide = visplay::encode_png(random_image(65, 1, 9));
  expect_decode_error(wide, "wide.png", "limit", tight);
  auto ok = visplay::encode_png(random_image(64, 1, 9));
  EXPECT_NO_THROW(visplay::decode_image(ok.data(), ok.size(), "ok.png", tight));
  ImageLimits budget;
  budget.max_pixels = 100;
  auto square = visplay::encode_png(random_image(11, 10, 9));
  expect_decode_error(square, "square.png", "pixels", budget);
}

TEST(Image, TooLargeJpegHeaderRefused) {
  auto bytes = encode_jpeg(smooth_image(16, 16, 10), 90);
  // Patch the SOF0 marker's height and width to 20000.
  size_t sof = 0;
  for (size_t i = 2; i + 9 < bytes.size(); i++)
    if (bytes[i] == 0xFF && bytes[i + 1] == 0xC0) {
      sof = i;
      break;
    }
  ASSERT_GT(sof, 0u);
  bytes[sof + 5] = 20000 >> 8;
  bytes[sof + 6] = 20000 & 0xFF;
  bytes[sof + 7] = 20000 >> 8;
  bytes[sof + 8] = 20000 & 0xFF;
  long rss_before = max_rss_kb();
  expect_decode_error(bytes, "huge.jpg", "20000x20000");
  EXPECT_LT(max_rss_kb() - rss_before, 64 * 1024);
}

TEST(Image, ResizeHandComputed) {
  // 2x1 -> 4x1 of [0, 200]: sx = (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25
  // -> clamp -> 0, 0.25, 0.75, 1 -> 0, 50, 150, 200.
  Image row;
  row.width = 2;
  row.height = 1;
  row.rgb = {0, 0, 0, 200, 255, 100};
  Image up = visplay::resize_bilinear(row, 4, 1);
  // Channel 1 is [0, 255]: 0, 63.75 -> 64, 191.25 -> 191, 255.
  // Channel 2 is [0, 100]: 0, 25, 75, 100.
  EXPECT_EQ(up.rgb, (std::vector<uint8_t>{0, 0, 0, 50, 64, 25, 150, 191, 75, 200, 255, 100}));

  // 4x1 -> 2x1: sx = (x + 0.5) * 2 - 0.5 = 0.5, 2.5: the mean of each pair.
  Image four;
  four.width = 4;
  four.height = 1;
  four.rgb = {10, 0, 0, 21, 0, 0, 100, 0, 0, 50, 0, 0};
  Image down = visplay::resize_bilinear(four, 2, 1);
  EXPECT_EQ(down.rgb[0], 16);  // 15.5 rounds up
  EXPECT_EQ(down.rgb[3], 75);

  // 2x2 -> 3x3 of [[0, 100], [200, 40]]: sx = (x + 0.5) * 2/3 - 0.5 = -1/6, 0.5, 7/6
  // -> 0, 0.5, 1 on each axis.
  Image sq;
  sq.width = sq.height = 2;
  sq.rgb = {0, 0, 0, 100, 0, 0, 200, 0, 0, 40, 0, 0};
  Image nine = visplay::resize_bilinear(sq, 3, 3);
  std::vector<int> expected = {0, 50, 100, 100, 85, 70, 200, 120, 40};
  for (int i = 0; i < 9; i++) EXPECT_EQ(nine.rgb[3 * i], expected[i]) << i;

  // Same size is the identity.
  Image img = random_image(13, 7, 42);
  EXPECT_EQ(visplay::resize_bilinear(img, 13, 7).rgb, img.rgb);
  EXPECT_THROW(visplay::resize_bilinear(img, 0, 7), std::runtime_error);
}

TEST(Image, NormalizeChw) {
  Image img;
  img.width = 2;
  img.height = 1;
  img.rgb = {255, 0, 51, 102, 204, 153};
  const float mean[3] = {0.5f, 0.25f, 0.0f};
  const float stdv[3] = {0.5f, 0.25f, 2.0f};
  std::vector<float> chw = visplay::to_chw_normalized(img, mean, stdv);
  ASSERT_EQ(chw.size(), 6u);
  // R plane: (1 - 0.5)/0.5 = 1, (0.4 - 0.5)/0.5 = -0.2
  EXPECT_NEAR(chw[0], 1.0, 1e-6);
  EXPECT_NEAR(chw[1], -0.2, 1e-6);
  // G plane: (0 - 0.25)/0.25 = -1, (0.8 - 0.25)/0.25 = 2.2
  EXPECT_NEAR(chw[2], -1.0, 1e-6);
  EXPECT_NEAR(chw[3], 2.2, 1e-6);
  // B plane: 0.2 / 2 = 0.1, 0.6 / 2 = 0.3
  EXPECT_NEAR(chw[4], 0.1, 1e-6);
  EXPECT_NEAR(chw[5], 0.3, 1e-6);
  const float zero_std[3] = {1, 0, 1};
  EXPECT_THROW(visplay::to_chw_normalized(img, mean, zero_std), std::runtime_error);
}

TEST(Image, LoadForModelResizes) {
  std::string dir = temp_dir("model");
  Image img = random_image(10, 6, 31);
  visplay::save_png(dir + "/x.png", img);
  const float mean[3] = {0, 0, 0}, stdv[3] = {1, 1, 1};
  std::vector<float> chw = visplay::load_image_for_model(dir + "/x.png", 8, mean, stdv);
  ASSERT_EQ(chw.size(), 3u * 8 * 8);
  Image resized = visplay::resize_bilinear(img, 8, 8);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 64; i++) ASSERT_FLOAT_EQ(chw[c * 64 + i], resized.rgb[3 * i + c] / 255.0f);
}

TEST(Image, FolderSkipsBadFiles) {
  std::string dir = temp_dir("folder");
  fs::create_directories(dir + "/sub");
  visplay::save_png(dir + "/b.png", random_image(4, 4, 1));
  visplay::save_png(dir + "/sub/c.PNG", random_image(5, 3, 2));
  write_file(dir + "/a.jpg", encode_jpeg(smooth_image(8, 8, 3), 90));
  write_file(dir + "/empty.png", {});
  auto jpg = encode_jpeg(smooth_image(16, 16, 4), 90);
  write_file(dir + "/cut.jpeg", std::vector<uint8_t>(jpg.begin(), jpg.begin() + jpg.size() / 2));
  write_file(dir + "/notes.txt", {'h', 'i'});
  write_file(dir + "/fake.png", {'h', 'e', 'l', 'l', 'o'});

  visplay::ImageFolder folder(dir);
  ASSERT_EQ(folder.size(), 6u);                             // the .txt is not listed
  EXPECT_EQ(fs::path(folder.path(0)).filename(), "a.jpg");  // sorted
  auto loaded = folder.load_all(/*warn=*/false);
  EXPECT_EQ(loaded.images.size(), 3u);
  ASSERT_EQ(loaded.skipped.size(), 3u);
  std::string all_errors;
  for (auto& s : loaded.skipped) all_errors += s + "\n";
  EXPECT_NE(all_errors.find("empty.png: empty file"), std::string::npos) << all_errors;
  EXPECT_NE(all_errors.find("cut.jpeg"), std::string::npos) << all_errors;
  EXPECT_NE(all_errors.find("fake.png: unsupported"), std::string::npos) << all_errors;
  EXPECT_EQ(loaded.images[1].width, 4);  // b.png
  EXPECT_THROW(visplay::ImageFolder(dir + "/missing"), std::runtime_error);
}
