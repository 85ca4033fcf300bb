// Plot helper tests: the font against glyphs written out here, tick generation,
// point and bar placement against the documented linear mapping, histogram counts.
#include "data/plot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <set>

using namespace visplay;
using namespace visplay::plot;

namespace {

bool pixel_is(const Image& img, int x, int y, Rgb c) {
  size_t at = img.offset(x, y);
  return img.rgb[at] == c[0] && img.rgb[at + 1] == c[1] && img.rgb[at + 2] == c[2];
}

int count_color(const Image& img, Rgb c) {
  int n = 0;
  for (int y = 0; y < img.height; y++)
    for (int x = 0; x < img.width; x++) n += pixel_is(img, x, y, c);
  return n;
}

}  // namespace

TEST(Plot, GlyphsAndText) {
  // '1' as drawn: ..#.. / .##.. / ..#.. x4 / .###.
  std::array<uint8_t, 7> one = {0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110};
  EXPECT_EQ(glyph_rows('1'), one);
  EXPECT_EQ(glyph_rows('a'), glyph_rows('A'));
  EXPECT_EQ(glyph_rows('~'), glyph_rows('?'));
  EXPECT_NE(glyph_rows('O'), glyph_rows('0'));
  // Every glyph but space has ink, and distinct characters look distinct.
  std::set<std::array<uint8_t, 7>> seen;
  for (char c : std::string("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.,-+%:()/_=<>*?")) {
    auto rows = glyph_rows(c);
    int ink = 0;
    for (auto r : rows) ink += __builtin_popcount(r);
    EXPECT_GT(ink, 0) << c;
    EXPECT_TRUE(seen.insert(rows).second) << "duplicate glyph for " << c;
  }
  EXPECT_EQ(text_width("abc"), 17);
  EXPECT_EQ(text_width("abc", 2), 34);
  EXPECT_EQ(text_width(""), 0);

  // "11" at (3, 2): ink exactly where the hand-written rows say, second glyph 6 px right.
  Image img = blank_canvas(20, 12);
  const Rgb red = {200, 0, 0};
  draw_text(img, 3, 2, "11", red);
  int ink = 0;
  for (int y = 0; y < 12; y++)
    for (int x = 0; x < 20; x++) {
      bool expected = false;
      for (int g = 0; g < 2; g++) {
        int gx = x - 3 - 6 * g, gy = y - 2;
        if (gx >= 0 && gx < 5 && gy >= 0 && gy < 7 && (one[gy] & (1 << (4 - gx)))) expected = true;
      }
      EXPECT_EQ(pixel_is(img, x, y, red), expected) << x << "," << y;
      ink += expected;
    }
  EXPECT_EQ(ink, 2 * 10);
  // Scale 2 quadruples the ink; drawing off the canvas is clipped, not a crash.
  Image big = blank_canvas(30, 20);
  draw_text(big, 0, 0, "1", red, 2);
  EXPECT_EQ(count_color(big, red), 40);
  draw_text(big, -5, 15, "1111111111", red);
}

TEST(Plot, LinesAndRects) {
  Image img = blank_canvas(10, 10);
  const Rgb c = {1, 2, 3};
  draw_line(img, 1, 1, 8, 1, c);
  EXPECT_EQ(count_color(img, c), 8);
  draw_line(img, 0, 0, 9, 9, c);  // diagonal: 10 pixels, (1,1) already painted
  EXPECT_EQ(count_color(img, c), 8 + 9);
  EXPECT_TRUE(pixel_is(img, 5, 5, c));
  Image rect = blank_canvas(10, 10);
  fill_rect(rect, 7, 8, 2, 3, c);  // corners in any order, inclusive
  EXPECT_EQ(count_color(rect, c), 6 * 6);
  fill_rect(rect, -5, -5, 20, 20, c);
  EXPECT_EQ(count_color(rect, c), 100);
  EXPECT_THROW(blank_canvas(0, 5), std::runtime_error);
}

TEST(Plot, NiceTicks) {
  auto near = [](std::vector<double> got, std::vector<double> want) {
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); i++) EXPECT_NEAR(got[i], want[i], 1e-12) << i;
  };
  near(nice_ticks(0, 1, 5), {0, 0.2, 0.4, 0.6, 0.8, 1.0});
  near(nice_ticks(0, 97, 5), {0, 20, 40, 60, 80, 100});
  near(nice_ticks(-3, 7, 5), {-4, -2, 0, 2, 4, 6, 8});
  near(nice_ticks(0.31, 0.58, 6), {0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6});
  near(nice_ticks(5, 5, 5), {4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6});
  EXPECT_THROW(nice_ticks(0, NAN), std::runtime_error);
  EXPECT_EQ(format_tick(0.25, 0.05), "0.25");
  EXPECT_EQ(format_tick(40, 20), "40");
  EXPECT_EQ(format_tick(0.2, 0.2), "0.2");
  EXPECT_EQ(format_tick(-4, 2), "-4");
  EXPECT_EQ(format_tick(2e6, 1e6), "2e+06");
}

TEST(Plot, LineChartPlacesPoints) {
  ChartOptions o;
  o.title = "accuracy";
  o.x_label = "iteration";
  o.y_label = "acc";
  o.y_min = 0.0;
  o.y_max = 1.0;
  const Rgb c0 = {10, 200, 10}, c1 = {200, 10, 200};
  Series a{"test", {0, 5, 10}, {0.2, 0.5, 0.9}, c0};
  Series b{"val", {0, 10}, {0.6, NAN}, c1};  // the NaN point is skipped
  Image img = line_chart({a, b}, o);
  ASSERT_EQ(img.width, 640);
  ASSERT_EQ(img.height, 400);
  PlotArea p = plot_area(o);
  // x ticks for 0..10 have step 2 -> axis 0..10; y forced to 0..1.
  auto px = [&](double x) {
    return static_cast<int>(std::lround(p.left + x / 10 * (p.right - p.left)));
  };
  auto py = [&](double y) {
    return static_cast<int>(std::lround(p.bottom - y * (p.bottom - p.top)));
  };
  EXPECT_TRUE(pixel_is(img, px(5), py(0.5), c0));
  EXPECT_TRUE(pixel_is(img, px(10), py(0.9), c0));
  EXPECT_TRUE(pixel_is(img, px(7.5), py(0.7), c0));  // on the segment between them
  EXPECT_TRUE(pixel_is(img, px(0), py(0.6), c1));
  // Axes are black along the plot area's left and bottom edges.
  EXPECT_TRUE(pixel_is(img, p.left, (p.top + p.bottom) / 2, {0, 0, 0}));
  EXPECT_TRUE(pixel_is(img, (p.left + p.right) / 2 + 3, p.bottom, {0, 0, 0}));
  // The top-right corner region holds no ink.
  EXPECT_TRUE(pixel_is(img, 639, 0, {255, 255, 255}));
  // Saves as a PNG that decodes to the same pixels.
  std::string path = (std::filesystem::path(testing::TempDir()) / "visplay_plot_test.png").string();
  save_png(path, img);
  EXPECT_EQ(load_image(path).rgb, img.rgb);
  Series bad{"bad", {0, 1}, {1}, std::nullopt};
  EXPECT_THROW(line_chart({bad}, o), std::runtime_error);
  ChartOptions tiny;
  tiny.width = 60;
  tiny.height = 60;
  EXPECT_THROW(line_chart({a}, tiny), std::runtime_error);
  EXPECT_NO_THROW(line_chart({}, ChartOptions{}));  // empty axes
}

TEST(Plot, HistogramCountsAndBars) {
  std::vector<double> samples = {0.05, 0.15, 0.15, 0.95, 1.0, -1.0, NAN, 0.5};
  std::vector<double> counts = histogram_counts(samples, 10, 0.0, 1.0);
  std::vector<double> expected = {2, 2, 0, 0, 0, 1, 0, 0, 0, 2};  // -1 -> bin 0, 1.0 -> bin 9
  EXPECT_EQ(counts, expected);
  EXPECT_THROW(histogram_counts(samples, 0, 0, 1), std::runtime_error);
  EXPECT_THROW(histogram_counts(samples, 3, 1, 1), std::runtime_error);

  ChartOptions o;
  Image img = bar_chart({"a", "b", "c"}, {1, 3, 0}, o);
  PlotArea p = plot_area(o);
  double slot = (p.right - p.left) / 3.0;
  Rgb bar = palette_color(0);
  // y axis 0..3: bar b reaches the top, bar a a third of the way, bar c is empty.
  int center_a = static_cast<int>(p.left + 0.5 * slot),
      center_b = static_cast<int>(p.left + 1.5 * slot),
      center_c = static_cast<int>(p.left + 2.5 * slot);
  EXPECT_TRUE(pixel_is(img, center_b, p.top + 1, bar));
  EXPECT_TRUE(pixel_is(img, center_b, p.bottom - 1, bar));
  int third = static_cast<int>(std::lround(p.bottom - (p.bottom - p.top) / 3.0));
  EXPECT_TRUE(pixel_is(img, center_a, third + 1, bar));
  EXPECT_FALSE(pixel_is(img, center_a, third - 2, bar));
  for (int y = p.top; y < p.bottom; y++) ASSERT_FALSE(pixel_is(img, center_c, y, bar)) << y;
  EXPECT_THROW(bar_chart({"a"}, {1, 2}, o), std::runtime_error);
  Image hist = histogram_chart(samples, 10, 0.0, 1.0, o);
  EXPECT_GT(count_color(hist, bar), 0);
}
