// Minimal PNG plots (see plot.h). Everything is integer pixel drawing on an RGB8
// Image; coordinates map linearly from data to the plot area and are rounded.
#include "data/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace visplay::plot {

Rgb palette_color(size_t index) {
  static const Rgb colors[] = {{31, 119, 180},  {214, 39, 40}, {44, 160, 44},   {255, 127, 14},
                               {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207}};
  return colors[index % (sizeof(colors) / sizeof(colors[0]))];
}

static const Rgb kBlack = {0, 0, 0};
static const Rgb kGrid = {225, 225, 225};
static const Rgb kText = {40, 40, 40};

// ---- primitives -----------------------------------------------------------------

Image blank_canvas(int width, int height, Rgb background) {
  if (width <= 0 || height <= 0)
    throw std::runtime_error("plot: invalid canvas size " + std::to_string(width) + "x" +
                             std::to_string(height));
  Image image;
  image.width = width;
  image.height = height;
  image.rgb.resize(static_cast<size_t>(width) * height * 3);
  for (size_t i = 0; i < image.rgb.size(); i += 3) {
    image.rgb[i] = background[0];
    image.rgb[i + 1] = background[1];
    image.rgb[i + 2] = background[2];
  }
  return image;
}

void set_pixel(Image& image, int x, int y, Rgb color) {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height) return;
  size_t at = image.offset(x, y);
  image.rgb[at] = color[0];
  image.rgb[at + 1] = color[1];
  image.rgb[at + 2] = color[2];
}

void fill_rect(Image& image, int x0, int y0, int x1, int y1, Rgb color) {
  if (x0 > x1) std::swap(x0, x1);
  if (y0 > y1) std::swap(y0, y1);
  x0 = std::max(x0, 0), y0 = std::max(y0, 0);
  x1 = std::min(x1, image.width - 1), y1 = std::min(y1, image.height - 1);
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) set_pixel(image, x, y, color);
}

// Bresenham; thickness t paints a t x t square at each step.
void draw_line(Image& image, int x0, int y0, int x1, int y1, Rgb color, int thickness) {
  int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  int lo = -(thickness - 1) / 2, hi = thickness / 2;
  for (;;) {
    for (int oy = lo; oy <= hi; oy++)
      for (int ox = lo; ox <= hi; ox++) set_pixel(image, x0 + ox, y0 + oy, color);
    if (x0 == x1 && y0 == y1) break;
    int e2 = 2 * err;
    if (e2 >= dy) err += dy, x0 += sx;
    if (e2 <= dx) err += dx, y0 += sy;
  }
}

// ---- the font ---------------------------------------------------------------------

namespace {
struct Glyph {
  char c;
  const char* rows[7];
};
// Drawn by hand: '#' is ink. 5 columns, 7 rows.
const Glyph kGlyphs[] = {
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"####.", "....#", "....#", ".###.", "....#", "....#", "####."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
    {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
    {'D', {"####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."}},
    {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
    {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
    {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
    {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
    {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
    {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
    {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
    {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
    {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
    {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
    {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
    {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
    {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
    {'%', {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"}},
    {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {'/', {".....", "....#", "...#.", "..#..", ".#...", "#....", "....."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'<', {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}},
    {'>', {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}},
    {'*', {".....", "#.#.#", ".###.", "#####", ".###.", "#.#.#", "....."}},
    {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
};

std::array<uint8_t, 7> rows_of(const Glyph& g) {
  std::array<uint8_t, 7> rows{};
  for (int r = 0; r < 7; r++)
    for (int c = 0; c < 5; c++)
      if (g.rows[r][c] == '#') rows[r] |= static_cast<uint8_t>(1 << (4 - c));
  return rows;
}
}  // namespace

std::array<uint8_t, 7> glyph_rows(char c) {
  char upper = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const Glyph* fallback = nullptr;
  for (const Glyph& g : kGlyphs) {
    if (g.c == upper) return rows_of(g);
    if (g.c == '?') fallback = &g;
  }
  return rows_of(*fallback);
}

int text_width(const std::string& text, int scale) {
  if (text.empty()) return 0;
  return (static_cast<int>(text.size()) * kCellWidth - 1) * scale;
}

void draw_text(Image& image, int x, int y, const std::string& text, Rgb color, int scale) {
  for (size_t i = 0; i < text.size(); i++) {
    std::array<uint8_t, 7> rows = glyph_rows(text[i]);
    int gx = x + static_cast<int>(i) * kCellWidth * scale;
    for (int r = 0; r < kGlyphHeight; r++)
      for (int c = 0; c < kGlyphWidth; c++)
        if (rows[r] & (1 << (4 - c)))
          fill_rect(image, gx + c * scale, y + r * scale, gx + (c + 1) * scale - 1,
                    y + (r + 1) * scale - 1, color);
  }
}

// ---- axes -----------------------------------------------------------------------

static double nice_step(double range, int target) {
  double raw = range / std::max(1, target);
  double power = std::pow(10.0, std::floor(std::log10(raw)));
  double fraction = raw / power;
  double nice = fraction <= 1.0 ? 1.0 : fraction <= 2.0 ? 2.0 : fraction <= 5.0 ? 5.0 : 10.0;
  return nice * power;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi))
    throw std::runtime_error("plot: non-finite axis range");
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {  // a flat range still gets an axis around the value
    double pad = lo == 0 ? 1.0 : std::abs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  double step = nice_step(hi - lo, target);
  double first = std::floor(lo / step + 1e-9);
  double last = std::ceil(hi / step - 1e-9);
  std::vector<double> ticks;
  for (double k = first; k <= last + 0.5; k += 1.0) {
    double t = k * step;
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);  // avoid "-0"
  }
  return ticks;
}

std::string format_tick(double value, double step) {
  char buf[32];
  double magnitude = std::max(std::abs(value), std::abs(step));
  if (magnitude >= 1e6 || (magnitude < 1e-3 && magnitude > 0)) {
    std::snprintf(buf, sizeof(buf), "%.2g", value);
  } else {
    int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
    std::snprintf(buf, sizeof(buf), "%.*f", std::clamp(decimals, 0, 6), value);
  }
  return buf;
}

// ---- charts ---------------------------------------------------------------------

PlotArea plot_area(const ChartOptions& o) {
  PlotArea a;
  a.left = 64;
  a.right = o.width - 20;
  a.top = o.title.empty() ? 20 : 40;
  a.bottom = o.height - (o.x_label.empty() ? 28 : 44);
  if (a.right - a.left < 40 || a.bottom - a.top < 40)
    throw std::runtime_error("plot: canvas " + std::to_string(o.width) + "x" +
                             std::to_string(o.height) + " is too small for a chart");
  return a;
}

namespace {

struct Axis {
  double lo, hi;
  std::vector<double> ticks;
};

Axis make_axis(double lo, double hi, std::optional<double> force_lo, std::optional<double> force_hi,
               int target) {
  Axis axis;
  axis.ticks = nice_ticks(force_lo.value_or(lo), force_hi.value_or(hi), target);
  axis.lo = force_lo.value_or(axis.ticks.front());
  axis.hi = force_hi.value_or(axis.ticks.back());
  if (axis.hi <= axis.lo) axis.hi = axis.lo + 1;
  // Keep only the ticks inside a forced range.
  std::vector<double> inside;
  for (double t : axis.ticks)
    if (t >= axis.lo - 1e-9 * (axis.hi - axis.lo) && t <= axis.hi + 1e-9 * (axis.hi - axis.lo))
      inside.push_back(t);
  axis.ticks = inside;
  return axis;
}

int map_x(double x, const Axis& axis, const PlotArea& a) {
  return static_cast<int>(
      std::lround(a.left + (x - axis.lo) / (axis.hi - axis.lo) * (a.right - a.left)));
}
int map_y(double y, const Axis& axis, const PlotArea& a) {
  return static_cast<int>(
      std::lround(a.bottom - (y - axis.lo) / (axis.hi - axis.lo) * (a.bottom - a.top)));
}

// Title, axis labels, the y grid with labels, and the two axis lines.
void draw_frame(Image& img, const ChartOptions& o, const PlotArea& a, const Axis& y_axis) {
  if (!o.title.empty())
    draw_text(img, (o.width - text_width(o.title, 2)) / 2, 8, o.title, kText, 2);
  if (!o.y_label.empty()) draw_text(img, 4, a.top - 12, o.y_label, kText);
  if (!o.x_label.empty())
    draw_text(img, (a.left + a.right - text_width(o.x_label)) / 2, o.height - 14, o.x_label, kText);
  double step = y_axis.ticks.size() > 1 ? y_axis.ticks[1] - y_axis.ticks[0] : 1.0;
  for (double t : y_axis.ticks) {
    int y = map_y(t, y_axis, a);
    draw_line(img, a.left + 1, y, a.right, y, kGrid);
    draw_line(img, a.left - 4, y, a.left, y, kBlack);
    std::string label = format_tick(t, step);
    draw_text(img, a.left - 7 - text_width(label), y - 3, label, kText);
  }
  draw_line(img, a.left, a.top, a.left, a.bottom, kBlack);
  draw_line(img, a.left, a.bottom, a.right, a.bottom, kBlack);
}

}  // namespace

Image line_chart(const std::vector<Series>& series, const ChartOptions& o) {
  PlotArea a = plot_area(o);
  double x_lo = INFINITY, x_hi = -INFINITY, y_lo = INFINITY, y_hi = -INFINITY;
  for (const Series& s : series) {
    if (s.x.size() != s.y.size())
      throw std::runtime_error("plot: series \"" + s.name + "\" has " + std::to_string(s.x.size()) +
                               " x values but " + std::to_string(s.y.size()) + " y values");
    for (size_t i = 0; i < s.x.size(); i++) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x_lo = std::min(x_lo, s.x[i]), x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]), y_hi = std::max(y_hi, s.y[i]);
    }
  }
  if (!std::isfinite(x_lo)) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;  // no data: empty axes
  Axis x_axis = make_axis(x_lo, x_hi, std::nullopt, std::nullopt, 8);
  Axis y_axis = make_axis(y_lo, y_hi, o.y_min, o.y_max, 6);

  Image img = blank_canvas(o.width, o.height);
  draw_frame(img, o, a, y_axis);
  double x_step = x_axis.ticks.size() > 1 ? x_axis.ticks[1] - x_axis.ticks[0] : 1.0;
  for (double t : x_axis.ticks) {
    int x = map_x(t, x_axis, a);
    draw_line(img, x, a.bottom, x, a.bottom + 4, kBlack);
    std::string label = format_tick(t, x_step);
    draw_text(img, x - text_width(label) / 2, a.bottom + 8, label, kText);
  }
  for (size_t k = 0; k < series.size(); k++) {
    const Series& s = series[k];
    Rgb color = s.color.value_or(palette_color(k));
    bool have_previous = false;
    int px = 0, py = 0;
    for (size_t i = 0; i < s.x.size(); i++) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        have_previous = false;
        continue;
      }
      int x = map_x(s.x[i], x_axis, a), y = map_y(s.y[i], y_axis, a);
      if (have_previous) draw_line(img, px, py, x, y, color, 2);
      fill_rect(img, x - 2, y - 2, x + 2, y + 2, color);
      px = x, py = y;
      have_previous = true;
    }
    // Legend entry: a swatch and the name, stacked at the top left of the plot area.
    int ly = a.top + 6 + static_cast<int>(k) * 12;
    fill_rect(img, a.left + 8, ly, a.left + 17, ly + 6, color);
    draw_text(img, a.left + 22, ly, s.name, kText);
  }
  return img;
}

Image bar_chart(const std::vector<std::string>& labels, const std::vector<double>& values,
                const ChartOptions& o) {
  if (labels.size() != values.size())
    throw std::runtime_error("plot: " + std::to_string(labels.size()) + " labels for " +
                             std::to_string(values.size()) + " bars");
  PlotArea a = plot_area(o);
  double lo = 0, hi = 0;
  for (double v : values)
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (hi == lo) hi = lo + 1;
  Axis y_axis = make_axis(lo, hi, o.y_min, o.y_max, 6);
  Image img = blank_canvas(o.width, o.height);
  draw_frame(img, o, a, y_axis);
  size_t n = values.size();
  if (n == 0) return img;
  double slot = static_cast<double>(a.right - a.left) / n;
  // Thin the labels so that they never overlap.
  size_t widest = 1;
  for (const auto& l : labels) widest = std::max(widest, l.size());
  size_t every =
      std::max<size_t>(1, static_cast<size_t>(std::ceil((widest * kCellWidth + 4) / slot)));
  int zero_y = map_y(std::clamp(0.0, y_axis.lo, y_axis.hi), y_axis, a);
  for (size_t i = 0; i < n; i++) {
    int x0 = static_cast<int>(std::lround(a.left + i * slot + slot * 0.15));
    int x1 = static_cast<int>(std::lround(a.left + (i + 1) * slot - slot * 0.15)) - 1;
    x1 = std::max(x0, x1);
    if (std::isfinite(values[i])) {
      double v = std::clamp(values[i], y_axis.lo, y_axis.hi);
      int y = map_y(v, y_axis, a);
      if (y != zero_y)
        fill_rect(img, x0, std::min(y, zero_y), x1, std::max(y, zero_y) - (y < zero_y),
                  palette_color(0));
    }
    if (i % every == 0) {
      int center = (x0 + x1) / 2;
      draw_text(img, center - text_width(labels[i]) / 2, a.bottom + 8, labels[i], kText);
    }
  }
  draw_line(img, a.left, a.bottom, a.right, a.bottom, kBlack);  // keep the axis on top
  return img;
}

std::vector<double> histogram_counts(const std::vector<double>& samples, int bins, double lo,
                                     double hi) {
  if (bins <= 0 || !(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi))
    throw std::runtime_error("plot: histogram needs bins > 0 and a finite range lo < hi");
  std::vector<double> counts(bins, 0.0);
  for (double v : samples) {
    if (!std::isfinite(v)) continue;
    int b = static_cast<int>(std::floor((v - lo) / (hi - lo) * bins));
    counts[std::clamp(b, 0, bins - 1)] += 1;
  }
  return counts;
}

Image histogram_chart(const std::vector<double>& samples, int bins, double lo, double hi,
                      const ChartOptions& options) {
  std::vector<double> counts = histogram_counts(samples, bins, lo, hi);
  double width = (hi - lo) / bins;
  std::vector<std::string> labels;
  for (int b = 0; b < bins; b++) labels.push_back(format_tick(lo + b * width, width));
  return bar_chart(labels, counts, options);
}

}  // namespace visplay::plot
