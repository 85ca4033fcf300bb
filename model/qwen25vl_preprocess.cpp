// Qwen2.5-VL image preprocessing (as Qwen2VLImageProcessor) and the instruct
// chat template.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "model/qwen25vl.h"

namespace visplay {
namespace {

using json = nlohmann::json;

// The antialiased bicubic filter of torch's interpolate (Keys kernel, a = -0.5).
double bicubic_aa_filter(double x) {
  const double a = -0.5;
  x = std::fabs(x);
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

// For each output index along one axis: the first input index and the integer
// weights (fixed point with `precision` fractional bits) of the input samples
// it averages. When shrinking, the filter is stretched by the scale (that is
// the antialiasing). This is torch's uint8 antialiased path (as Pillow's):
// normalised double weights, quantised to int16 with the most precision that
// keeps the largest weight below 2^15.
struct AxisTaps {
  std::vector<int64_t> first;
  std::vector<std::vector<int64_t>> weights;
  int precision = 0;
};

AxisTaps axis_taps(int64_t in_size, int64_t out_size) {
  AxisTaps taps;
  double scale = static_cast<double>(in_size) / out_size;
  double support = scale >= 1.0 ? 2.0 * scale : 2.0;
  double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  std::vector<std::vector<double>> real;
  double w_max = 0;
  for (int64_t i = 0; i < out_size; ++i) {
    double center = scale * (i + 0.5);
    int64_t lo = std::max<int64_t>(static_cast<int64_t>(center - support + 0.5), 0);
    int64_t hi = std::min<int64_t>(static_cast<int64_t>(center + support + 0.5), in_size);
    std::vector<double> w;
    double total = 0;
    for (int64_t j = lo; j < hi; ++j) {
      w.push_back(bicubic_aa_filter((j - center + 0.5) * invscale));
      total += w.back();
    }
    for (double& x : w) {
      x = total != 0 ? x / total : 0;
      w_max = std::max(w_max, x);
    }
    taps.first.push_back(lo);
    real.push_back(std::move(w));
  }
  while (taps.precision < 15 &&
         static_cast<int64_t>(0.5 + w_max * static_cast<double>(1 << (taps.precision + 1))) <
             (1 << 15))
    ++taps.precision;
  for (const std::vector<double>& w : real) {
    std::vector<int64_t> q;
    for (double x : w)
      q.push_back(static_cast<int64_t>(x * static_cast<double>(1 << taps.precision) +
                                       (x < 0 ? -0.5 : 0.5)));
    taps.weights.push_back(std::move(q));
  }
  return taps;
}

// sum(w * v) in fixed point, rounded (ties up) and clamped to a byte.
uint8_t fixed_point_round(int64_t acc, int precision) {
  int64_t v = (acc + (int64_t{1} << (precision - 1))) >> precision;
  return static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
}

}  // namespace

Image qwen25vl_resize_bicubic(const Image& image, int out_width, int out_height) {
  if (out_width <= 0 || out_height <= 0 || image.width <= 0 || image.height <= 0)
    throw std::runtime_error("qwen25vl_resize_bicubic: bad size " + std::to_string(image.width) +
                             "x" + std::to_string(image.height) + " -> " +
                             std::to_string(out_width) + "x" + std::to_string(out_height));
  // Horizontal pass (skipped when the width is unchanged) rounded to bytes,
  // then the vertical pass, as torch's uint8 kernel.
  Image mid = image;
  if (out_width != image.width) {
    AxisTaps tx = axis_taps(image.width, out_width);
    mid.width = out_width;
    mid.rgb.assign(static_cast<size_t>(image.height) * out_width * 3, 0);
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < out_width; ++x)
        for (int c = 0; c < 3; ++c) {
          int64_t acc = 0;
          for (size_t k = 0; k < tx.weights[x].size(); ++k)
            acc += tx.weights[x][k] *
                   image.rgb[image.offset(static_cast<int>(tx.first[x] + k), y) + c];
          mid.rgb[mid.offset(x, y) + c] = fixed_point_round(acc, tx.precision);
        }
  }
  if (out_height == image.height) return mid;
  AxisTaps ty = axis_taps(image.height, out_height);
  Image out;
  out.width = out_width, out.height = out_height;
  out.rgb.resize(static_cast<size_t>(out_width) * out_height * 3);
  for (int y = 0; y < out_height; ++y)
    for (int x = 0; x < out_width; ++x)
      for (int c = 0; c < 3; ++c) {
        int64_t acc = 0;
        for (size_t k = 0; k < ty.weights[y].size(); ++k)
          acc += ty.weights[y][k] * mid.rgb[mid.offset(x, static_cast<int>(ty.first[y] + k)) + c];
        out.rgb[out.offset(x, y) + c] = fixed_point_round(acc, ty.precision);
      }
  return out;
}

std::array<int64_t, 2> qwen25vl_smart_resize(int64_t height, int64_t width, int64_t factor,
                                             int64_t min_pixels, int64_t max_pixels) {
  if (height <= 0 || width <= 0 || factor <= 0)
    throw std::runtime_error("qwen25vl_smart_resize: bad size " + std::to_string(height) + "x" +
                             std::to_string(width));
  double h = static_cast<double>(height), w = static_cast<double>(width),
         f = static_cast<double>(factor);
  if (std::max(h, w) / std::min(h, w) > 200)
    throw std::runtime_error("qwen25vl_smart_resize: aspect ratio of " + std::to_string(height) +
                             "x" + std::to_string(width) + " is above 200");
  // Python's round() rounds halves to even: nearbyint in the default mode does too.
  int64_t hb = static_cast<int64_t>(std::nearbyint(h / f)) * factor;
  int64_t wb = static_cast<int64_t>(std::nearbyint(w / f)) * factor;
  if (hb * wb > max_pixels) {
    double beta = std::sqrt(h * w / static_cast<double>(max_pixels));
    hb = std::max(factor, static_cast<int64_t>(std::floor(h / beta / f)) * factor);
    wb = std::max(factor, static_cast<int64_t>(std::floor(w / beta / f)) * factor);
  } else if (hb * wb < min_pixels) {
    double beta = std::sqrt(static_cast<double>(min_pixels) / (h * w));
    hb = static_cast<int64_t>(std::ceil(h * beta / f)) * factor;
    wb = static_cast<int64_t>(std::ceil(w * beta / f)) * factor;
  }
  return {hb, wb};
}

Qwen25VLPixels qwen25vl_preprocess(const std::vector<Image>& images,
                                   const Qwen25VLImageConfig& cfg) {
  const int64_t P = cfg.patch_size, T = cfg.temporal_patch_size, m = cfg.merge_size;
  const int64_t patch_dim = 3 * T * P * P;
  Qwen25VLPixels out;
  std::vector<float> values;
  for (const Image& source : images) {
    auto [H, W] =
        qwen25vl_smart_resize(source.height, source.width, P * m, cfg.min_pixels, cfg.max_pixels);
    Image resized = (H == source.height && W == source.width)
                        ? source
                        : qwen25vl_resize_bicubic(source, static_cast<int>(W), static_cast<int>(H));
    int64_t gh = H / P, gw = W / P;
    // Patch order: merge blocks in raster order, the m x m patches inside each,
    // each patch flattened as (channel, frame, y, x) with the frame repeated.
    for (int64_t bh = 0; bh < gh / m; ++bh)
      for (int64_t bw = 0; bw < gw / m; ++bw)
        for (int64_t dy = 0; dy < m; ++dy)
          for (int64_t dx = 0; dx < m; ++dx) {
            int64_t py0 = (bh * m + dy) * P, px0 = (bw * m + dx) * P;
            for (int c = 0; c < 3; ++c) {
              // (v / 255 - mean) / std, in double then rounded to f32.
              for (int64_t t = 0; t < T; ++t)
                for (int64_t y = 0; y < P; ++y)
                  for (int64_t x = 0; x < P; ++x) {
                    double v = resized.rgb[resized.offset(static_cast<int>(px0 + x),
                                                          static_cast<int>(py0 + y)) +
                                           c];
                    values.push_back(
                        static_cast<float>((v / 255.0 - cfg.image_mean[c]) / cfg.image_std[c]));
                  }
            }
          }
    out.grids.push_back({1, gh, gw});
  }
  int64_t rows = static_cast<int64_t>(values.size()) / patch_dim;
  out.pixel_values = Tensor::from_vector(values, {rows, patch_dim});
  return out;
}

Qwen25VLImageConfig load_qwen25vl_image_config(const std::string& dir) {
  namespace fs = std::filesystem;
  Qwen25VLImageConfig cfg;
  fs::path pre = fs::path(dir) / "preprocessor_config.json",
           proc = fs::path(dir) / "processor_config.json";
  json j;
  std::string path;
  for (const fs::path& p : {pre, proc}) {
    if (!fs::exists(p)) continue;
    std::ifstream in(p);
    try {
      in >> j;
    } catch (const std::exception& e) {
      throw std::runtime_error(p.string() + ": invalid JSON: " + e.what());
    }
    if (p == proc) {
      if (!j.contains("image_processor")) continue;
      j = j["image_processor"];
    }
    path = p.string();
    break;
  }
  if (path.empty()) return cfg;
  auto get_int = [&](const json& o, const char* name, int64_t& field) {
    if (!o.contains(name) || o[name].is_null()) return;
    if (!o[name].is_number_integer())
      throw std::runtime_error(path + ": field '" + name + "' must be an integer");
    field = o[name].get<int64_t>();
  };
  if (j.contains("size") && j["size"].is_object()) {
    get_int(j["size"], "shortest_edge", cfg.min_pixels);
    get_int(j["size"], "longest_edge", cfg.max_pixels);
  }
  get_int(j, "min_pixels", cfg.min_pixels);
  get_int(j, "max_pixels", cfg.max_pixels);
  get_int(j, "patch_size", cfg.patch_size);
  get_int(j, "temporal_patch_size", cfg.temporal_patch_size);
  get_int(j, "merge_size", cfg.merge_size);
  for (const char* name : {"image_mean", "image_std"}) {
    if (!j.contains(name)) continue;
    const json& a = j[name];
    if (!a.is_array() || a.size() != 3)
      throw std::runtime_error(path + ": field '" + name + "' must be a list of 3 numbers");
    auto& dst = std::string(name) == "image_mean" ? cfg.image_mean : cfg.image_std;
    for (int c = 0; c < 3; ++c) dst[c] = a[c].get<double>();
  }
  if (cfg.min_pixels <= 0 || cfg.max_pixels < cfg.min_pixels || cfg.patch_size <= 0 ||
      cfg.temporal_patch_size <= 0 || cfg.merge_size <= 0)
    throw std::runtime_error(path +
                             ": need 0 < min_pixels <= max_pixels and positive patch/merge sizes");
  return cfg;
}

std::string qwen25vl_chat_prompt(const std::string& user_text,
                                 const std::vector<int64_t>& image_tokens,
                                 const std::string& system) {
  std::string s = "<|im_start|>system\n" + system + "<|im_end|>\n<|im_start|>user\n";
  for (int64_t n : image_tokens) {
    s += "<|vision_start|>";
    for (int64_t i = 0; i < n; ++i) s += "<|image_pad|>";
    s += "<|vision_end|>";
  }
  s += user_text + "<|im_end|>\n<|im_start|>assistant\n";
  return s;
}

}  // namespace visplay
