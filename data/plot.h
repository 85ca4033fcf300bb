// Minimal PNG plots for reports: a line chart of several series and a bar chart /
// histogram, drawn into an RGB Image with a built-in 5x7 bitmap font and saved with
// the PNG encoder. No dependencies beyond model/image.h; output is deterministic.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/image.h"

namespace visplay::plot {

using Rgb = std::array<uint8_t, 3>;

// A fixed palette for series and bars, chosen to stay distinct in print.
Rgb palette_color(size_t index);

// ---- drawing primitives (all clip to the image) ----------------------------------

// A white canvas of the given size.
Image blank_canvas(int width, int height, Rgb background = {255, 255, 255});
void set_pixel(Image& image, int x, int y, Rgb color);
void fill_rect(Image& image, int x0, int y0, int x1, int y1, Rgb color);  // inclusive corners
void draw_line(Image& image, int x0, int y0, int x1, int y1, Rgb color, int thickness = 1);

// The font: 5x7 glyphs in a 6x8 cell (one column and one row of spacing) for digits,
// letters (lower case drawn as upper case), space and . , - + % : ( ) / _ = ? < > *;
// any other character is drawn as '?'. `scale` multiplies every glyph pixel.
constexpr int kGlyphWidth = 5;
constexpr int kGlyphHeight = 7;
constexpr int kCellWidth = 6;
constexpr int kCellHeight = 8;
// The 7 rows of a glyph, bit 4 = leftmost column.
std::array<uint8_t, 7> glyph_rows(char c);
int text_width(const std::string& text, int scale = 1);
// Draws `text` with its top-left corner at (x, y).
void draw_text(Image& image, int x, int y, const std::string& text, Rgb color, int scale = 1);

// ---- axes --------------------------------------------------------------------------

// "Nice" tick positions covering [lo, hi] with steps of 1, 2 or 5 times a power of
// ten, at most about `target` ticks; the first tick is <= lo and the last >= hi.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
// Formats a tick value with just enough decimals for the step ("0.25", "40", "1.5e+06").
std::string format_tick(double value, double step);

// ---- charts ------------------------------------------------------------------------

struct Series {
  std::string name;
  std::vector<double> x;
  std::vector<double> y;     // same length as x; non-finite points break the line
  std::optional<Rgb> color;  // default: palette_color(series index)
};

struct ChartOptions {
  int width = 640;
  int height = 400;
  std::string title;
  std::string x_label;
  std::string y_label;
  std::optional<double> y_min;  // default: from the data (bars: 0)
  std::optional<double> y_max;
};

// Line chart with axes, ticks, grid, markers and a legend. Throws on a series whose x
// and y lengths differ, or on a canvas too small for the margins.
Image line_chart(const std::vector<Series>& series, const ChartOptions& options = {});

// Bar chart: one bar per value, labels under the bars (thinned when crowded).
Image bar_chart(const std::vector<std::string>& labels, const std::vector<double>& values,
                const ChartOptions& options = {});

// Counts of `samples` in `bins` equal bins over [lo, hi] (values outside are clamped
// into the first/last bin; non-finite values are ignored).
std::vector<double> histogram_counts(const std::vector<double>& samples, int bins, double lo,
                                     double hi);
// Histogram as a bar chart labelled by each bin's lower edge.
Image histogram_chart(const std::vector<double>& samples, int bins, double lo, double hi,
                      const ChartOptions& options = {});

// The geometry shared by the charts (exposed for tests): the plot area inside the
// margins, in pixels, inclusive.
struct PlotArea {
  int left, top, right, bottom;
};
PlotArea plot_area(const ChartOptions& options);

}  // namespace visplay::plot
