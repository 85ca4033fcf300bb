// Image decoding/encoding/resizing. See image.h for the conventions.
//
// libpng reports errors by longjmp. We never let a longjmp cross a C++ frame that
// owns objects with destructors: every libpng call runs inside a small "core"
// function whose locals are trivial; the buffers it fills are owned by the caller's
// state struct, and the png structs are freed by a guard in the caller. The core
// returns an error code and the caller turns it into a std::runtime_error.
#include "model/image.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace visplay {

namespace fs = std::filesystem;

static std::string size_text(int64_t w, int64_t h) {
  return std::to_string(w) + "x" + std::to_string(h);
}

// Checks header dimensions against the limits; returns an empty string when fine.
static std::string check_dimensions(int64_t width, int64_t height, const ImageLimits& limits) {
  if (width <= 0 || height <= 0) return "image has zero size (" + size_text(width, height) + ")";
  if (width > limits.max_side || height > limits.max_side)
    return "image is " + size_text(width, height) + ", above the size limit of " +
           std::to_string(limits.max_side) + " pixels per side";
  if (width * height > limits.max_pixels)
    return "image is " + size_text(width, height) + " = " + std::to_string(width * height) +
           " pixels, above the limit of " + std::to_string(limits.max_pixels) + " pixels";
  return "";
}

ImageFormat sniff_image_format(const uint8_t* data, size_t size) {
  static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  if (size >= 8 && std::memcmp(data, png_signature, 8) == 0) return ImageFormat::png;
  if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return ImageFormat::jpeg;
  return ImageFormat::unknown;
}

// ---------------------------------------------------------------------------
// PNG decoding

namespace {

struct PngReadState {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  ImageLimits limits;
  char error[512] = {0};
  // Filled by the core:
  uint32_t width = 0, height = 0;
  int channels = 0;  // 3 (RGB) or 4 (RGBA) after the transforms
  std::vector<uint8_t> pixels;
  std::vector<png_bytep> rows;
};

void png_error_to_state(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngReadState*>(png_get_error_ptr(png));
  std::snprintf(state->error, sizeof(state->error), "%s", message);
  png_longjmp(png, 1);
}

void png_ignore_warning(png_structp, png_const_charp) {}

void png_read_from_state(png_structp png, png_bytep out, size_t count) {
  auto* state = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (state->size - state->pos < count) png_error(png, "truncated file (unexpected end of data)");
  std::memcpy(out, state->data + state->pos, count);
  state->pos += count;
}

// All libpng read calls. Returns false with state->error set on any failure.
// Only trivially destructible locals here (longjmp lands in this frame).
bool png_read_core(png_structp png, png_infop info, PngReadState* state) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_read_fn(png, state, png_read_from_state);
  png_set_user_limits(png, static_cast<uint32_t>(state->limits.max_side),
                      static_cast<uint32_t>(state->limits.max_side));
  png_set_chunk_malloc_max(png, 16u << 20);  // no ancillary chunk may make us allocate > 16 MB
  png_read_info(png, info);

  state->width = png_get_image_width(png, info);
  state->height = png_get_image_height(png, info);
  {  // scoped so that no object with a destructor is alive when libpng may longjmp
    std::string problem = check_dimensions(state->width, state->height, state->limits);
    if (!problem.empty()) {
      std::snprintf(state->error, sizeof(state->error), "%s", problem.c_str());
      return false;
    }
  }
  int color_type = png_get_color_type(png, info);
  int bit_depth = png_get_bit_depth(png, info);
  if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (bit_depth == 16) png_set_scale_16(png);
  if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
    png_set_gray_to_rgb(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);

  state->channels = png_get_channels(png, info);
  size_t row_bytes = png_get_rowbytes(png, info);
  if ((state->channels != 3 && state->channels != 4) ||
      row_bytes != static_cast<size_t>(state->width) * state->channels) {
    std::snprintf(state->error, sizeof(state->error),
                  "unsupported PNG layout after conversion (%d channels, %zu bytes per row)",
                  state->channels, row_bytes);
    return false;
  }
  state->pixels.resize(row_bytes * state->height);
  state->rows.resize(state->height);
  for (uint32_t y = 0; y < state->height; y++)
    state->rows[y] = state->pixels.data() + y * row_bytes;
  png_read_image(png, state->rows.data());
  png_read_end(png, nullptr);  // catches a file cut after the image data
  return true;
}

}  // namespace

Image decode_png(const uint8_t* data, size_t size, const std::string& name,
                 const ImageLimits& limits) {
  if (size == 0) throw std::runtime_error(name + ": empty file");
  if (sniff_image_format(data, size) != ImageFormat::png)
    throw std::runtime_error(name + ": not a PNG file (bad signature)");
  // Check the IHDR dimensions ourselves first, so a hostile header is refused with a
  // clear message before libpng or we allocate anything.
  if (size >= 24 && std::memcmp(data + 12, "IHDR", 4) == 0) {
    auto be32 = [&](size_t at) {
      return (int64_t(data[at]) << 24) | (int64_t(data[at + 1]) << 16) |
             (int64_t(data[at + 2]) << 8) | int64_t(data[at + 3]);
    };
    std::string problem = check_dimensions(be32(16), be32(20), limits);
    if (!problem.empty()) throw std::runtime_error(name + ": " + problem);
  }

  PngReadState state;
  state.data = data;
  state.size = size;
  state.limits = limits;
  png_structp png =
      png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_error_to_state, png_ignore_warning);
  if (!png) throw std::runtime_error(name + ": cannot create the PNG decoder");
  png_infop info = png_create_info_struct(png);
  struct Guard {
    png_structp* png;
    png_infop* info;
    ~Guard() { png_destroy_read_struct(png, *info ? info : nullptr, nullptr); }
  } guard{&png, &info};
  if (!info) throw std::runtime_error(name + ": cannot create the PNG decoder");

  if (!png_read_core(png, info, &state))
    throw std::runtime_error(name + ": invalid PNG: " + std::string(state.error));

  Image image;
  image.width = static_cast<int>(state.width);
  image.height = static_cast<int>(state.height);
  size_t pixel_count = static_cast<size_t>(image.width) * image.height;
  if (state.channels == 3) {
    image.rgb = std::move(state.pixels);
  } else {
    // Composite RGBA over white, rounding to nearest.
    image.rgb.resize(pixel_count * 3);
    const uint8_t* src = state.pixels.data();
    for (size_t i = 0; i < pixel_count; i++) {
      uint32_t alpha = src[4 * i + 3];
      for (int c = 0; c < 3; c++) {
        uint32_t blended = src[4 * i + c] * alpha + 255u * (255u - alpha);
        image.rgb[3 * i + c] = static_cast<uint8_t>((blended + 127u) / 255u);
      }
    }
  }
  return image;
}

// ---------------------------------------------------------------------------
// JPEG decoding

Image decode_jpeg(const uint8_t* data, size_t size, const std::string& name,
                  const ImageLimits& limits) {
  if (size == 0) throw std::runtime_error(name + ": empty file");
  if (sniff_image_format(data, size) != ImageFormat::jpeg)
    throw std::runtime_error(name + ": not a JPEG file (bad signature)");
  tjhandle decoder = tjInitDecompress();
  if (!decoder) throw std::runtime_error(name + ": cannot create the JPEG decoder");
  struct Guard {
    tjhandle handle;
    ~Guard() { tjDestroy(handle); }
  } guard{decoder};

  int width = 0, height = 0, subsampling = 0, colorspace = 0;
  auto* bytes = const_cast<unsigned char*>(data);  // TurboJPEG 2 takes non-const pointers
  if (tjDecompressHeader3(decoder, bytes, static_cast<unsigned long>(size), &width, &height,
                          &subsampling, &colorspace) != 0)
    throw std::runtime_error(name + ": invalid JPEG header: " + tjGetErrorStr2(decoder));
  // TurboJPEG accepts a stream that ends before its frame header and reports 0x0.
  if (width <= 0 || height <= 0)
    throw std::runtime_error(name + ": invalid JPEG header: no frame size (" +
                             size_text(width, height) + "; truncated or no SOF marker)");
  std::string problem = check_dimensions(width, height, limits);
  if (!problem.empty()) throw std::runtime_error(name + ": " + problem);
  if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
    throw std::runtime_error(name + ": unsupported JPEG colorspace (CMYK/YCCK)");

  Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  // STOPONWARNING: a truncated or damaged stream is an error, not a gray-filled image.
  // LIMITSCANS: refuse progressive files with absurd scan counts (a known DoS).
  int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS | TJFLAG_ACCURATEDCT;
  if (tjDecompress2(decoder, bytes, static_cast<unsigned long>(size), image.rgb.data(), width, 0,
                    height, TJPF_RGB, flags) != 0)
    throw std::runtime_error(name + ": invalid JPEG: " + tjGetErrorStr2(decoder));
  return image;
}

Image decode_image(const uint8_t* data, size_t size, const std::string& name,
                   const ImageLimits& limits) {
  if (size == 0) throw std::runtime_error(name + ": empty file");
  switch (sniff_image_format(data, size)) {
    case ImageFormat::png:
      return decode_png(data, size, name, limits);
    case ImageFormat::jpeg:
      return decode_jpeg(data, size, name, limits);
    default:
      throw std::runtime_error(name + ": unsupported image format (neither PNG nor JPEG)");
  }
}

static std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw std::runtime_error(path + ": no such file");
  if (!fs::is_regular_file(path, ec)) throw std::runtime_error(path + ": not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open for reading");
  in.seekg(0, std::ios::end);
  std::streamoff length = in.tellg();
  in.seekg(0, std::ios::beg);
  if (length < 0) throw std::runtime_error(path + ": cannot determine the file size");
  std::vector<uint8_t> bytes(static_cast<size_t>(length));
  if (length > 0 && !in.read(reinterpret_cast<char*>(bytes.data()), length))
    throw std::runtime_error(path + ": read error");
  return bytes;
}

Image load_image(const std::string& path, const ImageLimits& limits) {
  std::vector<uint8_t> bytes = read_file_bytes(path);
  return decode_image(bytes.data(), bytes.size(), path, limits);
}

// ---------------------------------------------------------------------------
// PNG encoding

namespace {

struct PngWriteState {
  std::vector<uint8_t> out;
  std::vector<png_bytep> rows;
  char error[512] = {0};
};

void png_write_error_to_state(png_structp png, png_const_charp message) {
  auto* state = static_cast<PngWriteState*>(png_get_error_ptr(png));
  std::snprintf(state->error, sizeof(state->error), "%s", message);
  png_longjmp(png, 1);
}

void png_write_to_state(png_structp png, png_bytep data, size_t count) {
  auto* state = static_cast<PngWriteState*>(png_get_io_ptr(png));
  state->out.insert(state->out.end(), data, data + count);
}

void png_flush_nothing(png_structp) {}

bool png_write_core(png_structp png, png_infop info, const Image* image, int level,
                    PngWriteState* state) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, state, png_write_to_state, png_flush_nothing);
  png_set_IHDR(png, info, static_cast<uint32_t>(image->width), static_cast<uint32_t>(image->height),
               8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, level);
  png_write_info(png, info);
  png_write_image(png, state->rows.data());
  png_write_end(png, nullptr);
  return true;
}

}  // namespace

std::vector<uint8_t> encode_png(const Image& image, int compression_level) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw std::runtime_error("encode_png: image " + size_text(image.width, image.height) + " has " +
                             std::to_string(image.rgb.size()) +
                             " bytes, expected width * height * 3");
  if (compression_level < 0 || compression_level > 9)
    throw std::runtime_error("encode_png: compression level " + std::to_string(compression_level) +
                             " is not in 0..9");
  PngWriteState state;
  state.rows.resize(image.height);
  for (int y = 0; y < image.height; y++)
    state.rows[y] = const_cast<png_bytep>(image.rgb.data() + image.offset(0, y));
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &state, png_write_error_to_state, nullptr);
  if (!png) throw std::runtime_error("encode_png: cannot create the PNG encoder");
  png_infop info = png_create_info_struct(png);
  struct Guard {
    png_structp* png;
    png_infop* info;
    ~Guard() { png_destroy_write_struct(png, *info ? info : nullptr); }
  } guard{&png, &info};
  if (!info) throw std::runtime_error("encode_png: cannot create the PNG encoder");
  if (!png_write_core(png, info, &image, compression_level, &state))
    throw std::runtime_error("encode_png: " + std::string(state.error));
  return std::move(state.out);
}

void save_png(const std::string& path, const Image& image, int compression_level) {
  std::vector<uint8_t> bytes = encode_png(image, compression_level);
  std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(path + ": cannot open for writing");
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.close();
    if (!out) throw std::runtime_error(path + ": write error");
  }
  std::error_code ec;
  fs::rename(temp, path, ec);
  if (ec) throw std::runtime_error(path + ": cannot rename the temporary file: " + ec.message());
}

// ---------------------------------------------------------------------------
// Resizing and normalisation

Image resize_bilinear(const Image& image, int out_width, int out_height) {
  if (image.width <= 0 || image.height <= 0 ||
      image.rgb.size() != static_cast<size_t>(image.width) * image.height * 3)
    throw std::runtime_error("resize_bilinear: invalid source image " +
                             size_text(image.width, image.height));
  if (out_width <= 0 || out_height <= 0)
    throw std::runtime_error("resize_bilinear: invalid target size " +
                             size_text(out_width, out_height));
  // Per output column/row: the two source indices and the weight of the second.
  auto axis = [](int in_size, int out_size, std::vector<int>& lo, std::vector<int>& hi,
                 std::vector<double>& frac) {
    lo.resize(out_size);
    hi.resize(out_size);
    frac.resize(out_size);
    double scale = static_cast<double>(in_size) / out_size;
    for (int o = 0; o < out_size; o++) {
      double s = (o + 0.5) * scale - 0.5;
      s = std::clamp(s, 0.0, static_cast<double>(in_size - 1));
      int i0 = static_cast<int>(std::floor(s));
      lo[o] = i0;
      hi[o] = std::min(i0 + 1, in_size - 1);
      frac[o] = s - i0;
    }
  };
  std::vector<int> x0, x1, y0, y1;
  std::vector<double> fx, fy;
  axis(image.width, out_width, x0, x1, fx);
  axis(image.height, out_height, y0, y1, fy);

  Image out;
  out.width = out_width;
  out.height = out_height;
  out.rgb.resize(static_cast<size_t>(out_width) * out_height * 3);
  for (int y = 0; y < out_height; y++) {
    for (int x = 0; x < out_width; x++) {
      for (int c = 0; c < 3; c++) {
        double p00 = image.rgb[image.offset(x0[x], y0[y]) + c];
        double p01 = image.rgb[image.offset(x1[x], y0[y]) + c];
        double p10 = image.rgb[image.offset(x0[x], y1[y]) + c];
        double p11 = image.rgb[image.offset(x1[x], y1[y]) + c];
        double top = p00 + (p01 - p00) * fx[x];
        double bottom = p10 + (p11 - p10) * fx[x];
        double value = top + (bottom - top) * fy[y];
        out.rgb[out.offset(x, y) + c] =
            static_cast<uint8_t>(std::clamp(std::floor(value + 0.5), 0.0, 255.0));
      }
    }
  }
  return out;
}

std::vector<float> to_chw_normalized(const Image& image, const float mean[3], const float std[3]) {
  size_t plane = static_cast<size_t>(image.width) * image.height;
  if (image.rgb.size() != plane * 3)
    throw std::runtime_error("to_chw_normalized: image " + size_text(image.width, image.height) +
                             " has " + std::to_string(image.rgb.size()) + " bytes");
  for (int c = 0; c < 3; c++)
    if (!(std[c] > 0.0f) || !std::isfinite(std[c]) || !std::isfinite(mean[c]))
      throw std::runtime_error("to_chw_normalized: channel " + std::to_string(c) + " has mean " +
                               std::to_string(mean[c]) + " and std " + std::to_string(std[c]) +
                               " (std must be finite and > 0)");
  std::vector<float> chw(plane * 3);
  for (int c = 0; c < 3; c++)
    for (size_t i = 0; i < plane; i++)
      chw[c * plane + i] = (image.rgb[3 * i + c] / 255.0f - mean[c]) / std[c];
  return chw;
}

std::vector<float> load_image_for_model(const std::string& path, int size, const float mean[3],
                                        const float std[3], const ImageLimits& limits) {
  Image image = load_image(path, limits);
  if (image.width != size || image.height != size) image = resize_bilinear(image, size, size);
  return to_chw_normalized(image, mean, std);
}

// ---------------------------------------------------------------------------
// Image folders

static bool has_image_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
  return ext == ".png" || ext == ".jpg" || ext == ".jpeg";
}

ImageFolder::ImageFolder(const std::string& dir, ImageLimits limits) : dir_(dir), limits_(limits) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw std::runtime_error(dir + ": not a directory");
  auto options = fs::directory_options::skip_permission_denied;
  for (auto it = fs::recursive_directory_iterator(dir, options, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && has_image_extension(it->path()))
      paths_.push_back(it->path().string());
  }
  if (ec) throw std::runtime_error(dir + ": cannot list the folder: " + ec.message());
  std::sort(paths_.begin(), paths_.end());
}

Image ImageFolder::load(size_t i) const { return load_image(paths_.at(i), limits_); }

bool ImageFolder::try_load(size_t i, Image* image, std::string* error) const {
  try {
    *image = load(i);
    return true;
  } catch (const std::exception& e) {  // bad files and allocation failures alike
    if (error) *error = e.what();
    return false;
  }
}

ImageFolder::Loaded ImageFolder::load_all(bool warn) const {
  Loaded loaded;
  for (size_t i = 0; i < paths_.size(); i++) {
    Image image;
    std::string error;
    if (try_load(i, &image, &error)) {
      loaded.paths.push_back(paths_[i]);
      loaded.images.push_back(std::move(image));
    } else {
      if (warn) std::fprintf(stderr, "warning: skipping image %s\n", error.c_str());
      loaded.skipped.push_back(error);
    }
  }
  if (warn && !loaded.skipped.empty())
    std::fprintf(stderr, "warning: skipped %zu of %zu images in %s\n", loaded.skipped.size(),
                 paths_.size(), dir_.c_str());
  return loaded;
}

}  // namespace visplay
