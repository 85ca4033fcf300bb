// libFuzzer target: the PNG/JPEG decoder (model/image.cpp) on arbitrary bytes, then
// what the vision encoder does with the result (resize, normalise). The limits are
// tighter than the defaults only so that each run stays fast; the limit checks are
// the same code. PNG chunk CRCs are recomputed first: otherwise libpng rejects nearly
// every mutated file at its first CRC check and the decoding paths behind it are
// never reached (the CRC check itself is covered by the unit tests).
#include <zlib.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "model/image.h"

namespace {

// A copy of a PNG with every complete chunk's CRC set to the right value.
std::vector<uint8_t> with_fixed_png_crcs(const uint8_t* data, size_t size) {
  std::vector<uint8_t> out(data, data + size);
  size_t at = 8;  // after the signature
  while (at + 12 <= out.size()) {
    uint32_t length = (uint32_t(out[at]) << 24) | (uint32_t(out[at + 1]) << 16) |
                      (uint32_t(out[at + 2]) << 8) | uint32_t(out[at + 3]);
    if (length > out.size() - at - 12) break;
    uLong crc = crc32(0L, out.data() + at + 4, static_cast<uInt>(4 + length));
    for (int k = 0; k < 4; ++k)
      out[at + 8 + length + k] = static_cast<uint8_t>(crc >> (24 - 8 * k));
    at += 12 + length;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* raw_data, size_t size) {
  using namespace visplay;
  const std::string name = "fuzz-image";
  std::vector<uint8_t> fixed;
  const uint8_t* data = raw_data;
  if (sniff_image_format(raw_data, size) == ImageFormat::png) {
    fixed = with_fixed_png_crcs(raw_data, size);
    data = fixed.data();
  }
  ImageLimits limits;
  limits.max_side = 2048;
  limits.max_pixels = 1 << 20;
  Image image;
  try {
    image = decode_image(data, size, name, limits);
  } catch (const std::runtime_error& e) {
    fuzz::check_error_names(e, name);
    return 0;
  }
  fuzz::check(image.width >= 1 && image.height >= 1 && image.width <= limits.max_side &&
                  image.height <= limits.max_side &&
                  int64_t(image.width) * image.height <= limits.max_pixels,
              "decoded size " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                  " breaks the limits");
  fuzz::check(image.rgb.size() == size_t(image.width) * image.height * 3,
              "pixel buffer size does not match width * height * 3");
  // Every byte is read (ASan/MSan-style checks see uninitialised or short buffers).
  unsigned checksum = 0;
  for (uint8_t v : image.rgb) checksum += v;
  Image small = resize_bilinear(image, 7, 5);
  const float mean[3] = {0.5f, 0.5f, 0.5f}, stdev[3] = {0.25f, 0.5f, 1.0f};
  std::vector<float> chw = to_chw_normalized(small, mean, stdev);
  for (float v : chw) fuzz::check(v >= -2.0f && v <= 2.0f, "normalised value out of range");
  // A decoded image survives a PNG round trip bit for bit.
  std::vector<uint8_t> png = encode_png(image, 1);
  Image again = decode_image(png.data(), png.size(), name, limits);
  fuzz::check(again.rgb == image.rgb, "PNG round trip changed the pixels");
  fuzz::sink = checksum;
  return 0;
}
