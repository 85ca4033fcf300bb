// Images: decoding (PNG via libpng, JPEG via TurboJPEG) to RGB8, PNG encoding,
// bilinear resizing and normalisation to float CHW for the vision encoder, and a
// folder-of-images dataset. No Tensor here: plain byte and float buffers.
//
// Conventions (documented in docs/shapeworld.md, section "Images"):
// - Every decoded image is RGB, 8 bits per channel, row-major, no padding.
// - PNG: gray, gray+alpha, palette (with or without tRNS), RGB and RGBA at any
//   bit depth (1..16) are converted to RGB8. 16-bit samples are scaled to 8 bits
//   with rounding (v * 255 / 65535). Alpha is composited over a WHITE background:
//   out = round((c * a + 255 * (255 - a)) / 255). Gamma chunks are ignored.
// - JPEG: decoded to RGB8 by TurboJPEG (grayscale JPEGs are expanded to RGB).
//   Any libjpeg warning (e.g. a truncated stream) is treated as an error.
// - Size limits are checked from the header, before any pixel buffer is allocated.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace visplay {

struct Image {
  int width = 0;
  int height = 0;
  std::vector<uint8_t> rgb;  // width * height * 3 bytes, row-major, RGBRGB...

  // Byte offset of pixel (x, y), channel 0.
  size_t offset(int x, int y) const { return (static_cast<size_t>(y) * width + x) * 3; }
};

// Refuse images larger than this before allocating anything.
struct ImageLimits {
  int max_side = 16384;                     // width and height must be in 1..max_side
  int64_t max_pixels = 64LL * 1024 * 1024;  // width * height must not exceed this
};

enum class ImageFormat { unknown, png, jpeg };

// Sniffs the format from the first bytes (PNG signature, JPEG SOI marker FF D8 FF).
ImageFormat sniff_image_format(const uint8_t* data, size_t size);

// Decode from memory. `name` is used in error messages (a file name or "<memory>").
// Throws std::runtime_error("<name>: <reason>") on empty, truncated, corrupt,
// unsupported or too large input.
Image decode_image(const uint8_t* data, size_t size, const std::string& name = "<memory>",
                   const ImageLimits& limits = {});
Image decode_png(const uint8_t* data, size_t size, const std::string& name = "<memory>",
                 const ImageLimits& limits = {});
Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name = "<memory>",
                  const ImageLimits& limits = {});

// Reads a whole file and decodes it (format sniffed from its bytes, not its name).
Image load_image(const std::string& path, const ImageLimits& limits = {});

// Encodes RGB8 as a non-interlaced 8-bit RGB PNG. Output is deterministic.
std::vector<uint8_t> encode_png(const Image& image, int compression_level = 6);
// Writes the PNG to `path` (via a temporary file and rename, so a reader never sees
// half a file). Throws naming the path on failure.
void save_png(const std::string& path, const Image& image, int compression_level = 6);

// Bilinear resize without antialiasing, half-pixel-centre convention (as OpenCV
// INTER_LINEAR and torch interpolate(align_corners=False, antialias=False)):
// output pixel (x, y) samples the source at
//   sx = (x + 0.5) * in_w / out_w - 0.5,  sy = (y + 0.5) * in_h / out_h - 0.5,
// clamped to [0, in_w - 1] x [0, in_h - 1]; the result is rounded to nearest.
// Computed in double precision, so results do not depend on the platform.
Image resize_bilinear(const Image& image, int out_width, int out_height);

// Converts to float CHW (3 x height x width): value = (byte / 255 - mean[c]) / std[c].
std::vector<float> to_chw_normalized(const Image& image, const float mean[3], const float std[3]);

// Loads, resizes to size x size if needed, and normalises: what the vision encoder eats.
std::vector<float> load_image_for_model(const std::string& path, int size, const float mean[3],
                                        const float std[3], const ImageLimits& limits = {});

// A folder of images is a dataset: every *.png, *.jpg, *.jpeg (any case) under the
// folder, recursively, sorted by path so the order is the same everywhere.
class ImageFolder {
 public:
  // Throws if `dir` does not exist or is not a directory.
  explicit ImageFolder(const std::string& dir, ImageLimits limits = {});

  size_t size() const { return paths_.size(); }
  const std::string& path(size_t i) const { return paths_.at(i); }
  const std::vector<std::string>& paths() const { return paths_; }

  // Decodes image i; throws std::runtime_error naming the file on a bad file.
  Image load(size_t i) const;
  // Decodes image i; on failure returns false and sets `error` (never throws for bad files).
  bool try_load(size_t i, Image* image, std::string* error) const;

  // Decodes every image, skipping bad files: each skip prints one warning line on
  // stderr (when `warn` is set) and is recorded in `skipped`.
  struct Loaded {
    std::vector<std::string> paths;
    std::vector<Image> images;
    std::vector<std::string> skipped;  // "<path>: <reason>"
  };
  Loaded load_all(bool warn = true) const;

 private:
  std::string dir_;
  ImageLimits limits_;
  std::vector<std::string> paths_;
};

}  // namespace visplay
