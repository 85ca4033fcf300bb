// libFuzzer target: the PNG/JPEG decoder (model/image.cpp) on arbitrary bytes, then
// what the vision encoder does with the result (resize, normalise). The limits are
// tighter than the defaults only so that each run stays fast; the limit checks are
// the same code.
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "model/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace visplay;
  const std::string name = "fuzz-image";
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
              "decoded size " + std::to_string(image.width) + "x" +
                  std::to_string(image.height) + " breaks the limits");
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
