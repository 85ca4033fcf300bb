// ShapeWorld tests: the PRNG against an independent Python implementation, the
// rasteriser against pixels computed by hand from the spec's formulas, the placement
// rules over many sampled scenes, and the oracle against an independent brute force
// that reads the objects back from the rendered pixels.
#include "data/shapeworld.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>
#include <tuple>

using namespace visplay::world;
using visplay::Image;

namespace {

Object make(Shape shape, Color color, Size size, int cx, int cy) {
  Object o;
  o.shape = shape;
  o.color = color;
  o.size = size;
  o.cx = cx;
  o.cy = cy;
  return o;
}

bool painted(const Image& img, int x, int y, Color color) {
  auto rgb = color_rgb(color);
  size_t at = img.offset(x, y);
  return img.rgb[at] == rgb[0] && img.rgb[at + 1] == rgb[1] && img.rgb[at + 2] == rgb[2];
}

// Renders one object alone and checks listed pixels inside/outside.
void check_pixels(const Object& o, const std::vector<std::pair<int, int>>& inside,
                  const std::vector<std::pair<int, int>>& outside) {
  Scene scene;
  scene.objects = {o};
  Image img = render_scene(scene);
  for (auto [x, y] : inside) {
    EXPECT_TRUE(object_covers(o, x, y)) << shape_name(o.shape) << " (" << x << "," << y << ")";
    EXPECT_TRUE(painted(img, x, y, o.color)) << shape_name(o.shape) << " (" << x << "," << y << ")";
  }
  for (auto [x, y] : outside) {
    EXPECT_FALSE(object_covers(o, x, y)) << shape_name(o.shape) << " (" << x << "," << y << ")";
    size_t at = img.offset(x, y);
    EXPECT_EQ(img.rgb[at], 240);
    EXPECT_EQ(img.rgb[at + 1], 240);
    EXPECT_EQ(img.rgb[at + 2], 240);
  }
}

int covered_count(const Object& o) {
  int n = 0;
  for (int y = 0; y < kCanvasSize; y++)
    for (int x = 0; x < kCanvasSize; x++) n += object_covers(o, x, y);
  return n;
}

}  // namespace

TEST(ShapeWorldRng, MatchesIndependentReference) {
  // Reference values from a separate Python implementation of splitmix64 seeding +
  // xoshiro256** + rejection sampling (the algorithm as documented in shapeworld.h).
  Rng zero(0);
  EXPECT_EQ(zero.next(), 0x99ec5f36cb75f2b4ULL);
  EXPECT_EQ(zero.next(), 0xbf6e1f784956452aULL);
  EXPECT_EQ(zero.next(), 0x1a5f849d4933e6e0ULL);
  EXPECT_EQ(zero.next(), 0x6aa594f1262d2d2cULL);
  Rng r42(42);
  std::vector<uint64_t> dice;
  for (int i = 0; i < 12; i++) dice.push_back(r42.below(6));
  EXPECT_EQ(dice, (std::vector<uint64_t>{0, 0, 5, 5, 4, 0, 4, 3, 4, 5, 1, 1}));
  Rng big(12345);
  std::vector<uint64_t> draws;
  for (int i = 0; i < 5; i++) draws.push_back(big.below(1000003));
  EXPECT_EQ(draws, (std::vector<uint64_t>{613607, 901561, 252286, 646193, 486958}));
  EXPECT_THROW(big.below(0), std::runtime_error);
  // Item streams differ from each other and from the plain seed.
  EXPECT_NE(Rng::for_item(1, 0).next(), Rng::for_item(1, 1).next());
  EXPECT_NE(Rng::for_item(1, 0).next(), Rng::for_item(2, 0).next());
}

TEST(ShapeWorldRender, CircleHandComputedPixels) {
  // Circle: (x - cx)^2 + (y - cy)^2 <= r^2 (the +0.5 offsets cancel).
  // Small r = 5 at (20, 30): dx = 5 in, 6 out; (3,4): 9 + 16 = 25 in; (4,4): 32 out; (4,3): 25 in.
  check_pixels(make(Shape::circle, Color::red, Size::small, 20, 30),
               {{25, 30}, {15, 30}, {20, 35}, {20, 25}, {23, 34}, {24, 33}, {16, 27}, {20, 30}},
               {{26, 30}, {14, 30}, {20, 36}, {20, 24}, {24, 34}, {16, 26}, {25, 31}});
  // Large r = 9 at (30, 30): dx = 9 in, 10 out; (5,7): 74 in; (6,7): 85 out; (9,1): 82 out.
  check_pixels(make(Shape::circle, Color::blue, Size::large, 30, 30),
               {{39, 30}, {21, 30}, {30, 39}, {30, 21}, {35, 37}, {25, 23}},
               {{40, 30}, {20, 30}, {30, 40}, {36, 37}, {39, 31}, {24, 23}});
}

TEST(ShapeWorldRender, SquareHandComputedPixels) {
  // Square: |dx| <= 0.8 r and |dy| <= 0.8 r. Small: h = 4.0 exactly, so |dx| = 4 is on
  // the boundary and inside (9 x 9 pixels). Large: h = 7.2, |dx| <= 7 (15 x 15).
  check_pixels(make(Shape::square, Color::green, Size::small, 20, 30),
               {{24, 34}, {16, 26}, {24, 26}, {16, 34}, {20, 30}},
               {{25, 30}, {15, 30}, {20, 35}, {20, 25}, {25, 35}});
  check_pixels(make(Shape::square, Color::yellow, Size::large, 30, 30),
               {{37, 37}, {23, 23}, {37, 23}, {23, 37}},
               {{38, 30}, {22, 30}, {30, 38}, {30, 22}, {38, 38}});
}

TEST(ShapeWorldRender, TriangleHandComputedPixels) {
  // Triangle, relative pixel (i, j) = (x - cx, y - cy). The apex (0, -r) is exactly a
  // pixel centre and lies on two edges (edge functions exactly 0): inside. The bottom
  // edge is at j = r/2 (never a pixel centre). On row j the slanted edges are at
  // |i| = 0.866 (j + r) / 1.5.
  // Large r = 9 at (30, 30): apex (30, 21) in, (30, 20) out, (29, 21) and (31, 21) out;
  // j = 4 (y = 34): |i| <= 7.505 -> x 23..37; j = 5 (y = 35) is below 4.5: out;
  // j = -7 (y = 23): |i| <= 1.155 -> x 29..31; j = 0 (y = 30): |i| <= 5.196 -> x 25..35;
  // j = 1 (y = 31): |i| <= 5.774 -> x 25..35 (36 is out).
  check_pixels(make(Shape::triangle, Color::purple, Size::large, 30, 30),
               {{30, 21},
                {30, 34},
                {37, 34},
                {23, 34},
                {31, 23},
                {29, 23},
                {35, 30},
                {25, 30},
                {35, 31},
                {25, 31}},
               {{30, 20},
                {29, 21},
                {31, 21},
                {30, 35},
                {38, 34},
                {22, 34},
                {32, 23},
                {28, 23},
                {36, 30},
                {24, 30},
                {36, 31},
                {24, 31}});
  // Small r = 5 at (20, 30): apex (20, 25); bottom edge j = 2.5 -> last row y = 32;
  // j = 2: |i| <= 4.041 -> x 16..24; j = -4: |i| <= 0.577 -> x 20; j = -3: |i| <= 1.155.
  check_pixels(make(Shape::triangle, Color::gray, Size::small, 20, 30),
               {{20, 25}, {24, 32}, {16, 32}, {20, 26}, {21, 27}, {19, 27}},
               {{20, 24}, {20, 33}, {25, 32}, {15, 32}, {21, 26}, {19, 26}, {22, 27}});
}

TEST(ShapeWorldRender, CoveredAreasAndTranslationInvariance) {
  // Areas computed by hand: circles are Gauss circle counts N(5) = 81, N(9) = 253;
  // squares 9^2 and 15^2; triangles sum over rows of 2 floor(0.866 k / 1.5) + 1:
  // small k = 0..7 -> 1+1+3+3+5+5+7+9 = 34, large k = 0..13 -> 106.
  std::map<std::pair<Shape, Size>, int> expected = {
      {{Shape::circle, Size::small}, 81},   {{Shape::circle, Size::large}, 253},
      {{Shape::square, Size::small}, 81},   {{Shape::square, Size::large}, 225},
      {{Shape::triangle, Size::small}, 34}, {{Shape::triangle, Size::large}, 106}};
  for (auto [key, area] : expected) {
    auto [shape, size] = key;
    int r = size_radius(size);
    // The same footprint at every valid center: no position-dependent rounding.
    Object ref = make(shape, Color::red, size, r + 1, r + 1);
    std::set<std::pair<int, int>> footprint;
    for (int y = 0; y < kCanvasSize; y++)
      for (int x = 0; x < kCanvasSize; x++)
        if (object_covers(ref, x, y)) footprint.insert({x - ref.cx, y - ref.cy});
    EXPECT_EQ(static_cast<int>(footprint.size()), area)
        << shape_name(shape) << " " << size_name(size);
    for (int cy = r + 1; cy <= 62 - r; cy += 3)
      for (int cx = r + 1; cx <= 62 - r; cx += 5) {
        Object o = make(shape, Color::red, size, cx, cy);
        ASSERT_EQ(covered_count(o), area);
        for (auto [dx, dy] : footprint) ASSERT_TRUE(object_covers(o, cx + dx, cy + dy));
      }
  }
}

TEST(ShapeWorldRender, SceneColorsAndBackground) {
  Scene scene;
  scene.objects = {make(Shape::circle, Color::red, Size::small, 10, 10),
                   make(Shape::square, Color::green, Size::large, 40, 15),
                   make(Shape::triangle, Color::blue, Size::small, 15, 50),
                   make(Shape::circle, Color::yellow, Size::large, 45, 45)};
  ASSERT_EQ(scene_problem(scene), "");
  Image img = render_scene(scene);
  ASSERT_EQ(img.width, 64);
  ASSERT_EQ(img.height, 64);
  EXPECT_TRUE(painted(img, 10, 10, Color::red));
  EXPECT_TRUE(painted(img, 40, 15, Color::green));
  EXPECT_TRUE(painted(img, 15, 50, Color::blue));
  EXPECT_TRUE(painted(img, 45, 45, Color::yellow));
  auto rgb = color_rgb(Color::purple);
  EXPECT_EQ(rgb, (std::array<uint8_t, 3>{150, 60, 190}));
  EXPECT_EQ(color_rgb(Color::gray), (std::array<uint8_t, 3>{120, 120, 120}));
  // Pixels painted = sum of areas (81 + 225 + 34 + 253); the rest is background.
  int colored = 0, background = 0;
  for (int i = 0; i < 64 * 64; i++) {
    bool bg = img.rgb[3 * i] == 240 && img.rgb[3 * i + 1] == 240 && img.rgb[3 * i + 2] == 240;
    bg ? background++ : colored++;
  }
  EXPECT_EQ(colored, 81 + 225 + 34 + 253);
  EXPECT_EQ(background, 64 * 64 - colored);
}

TEST(ShapeWorldScene, PlacementRulesHoldForSampledScenes) {
  Rng rng(7);
  std::map<int, int> counts;
  std::set<int> shapes, colors, sizes;
  int min_cx[2] = {99, 99}, max_cx[2] = {0, 0};
  for (int n = 0; n < 3000; n++) {
    Scene scene = sample_scene(rng);
    int k = static_cast<int>(scene.objects.size());
    counts[k]++;
    ASSERT_GE(k, 1);
    ASSERT_LE(k, 6);
    for (size_t i = 0; i < scene.objects.size(); i++) {
      const Object& a = scene.objects[i];
      int r = a.size == Size::small ? 5 : 9;
      ASSERT_GE(a.cx, r + 1);
      ASSERT_LE(a.cx, 63 - r - 1);
      ASSERT_GE(a.cy, r + 1);
      ASSERT_LE(a.cy, 63 - r - 1);
      int s = static_cast<int>(a.size);
      min_cx[s] = std::min(min_cx[s], a.cx);
      max_cx[s] = std::max(max_cx[s], a.cx);
      shapes.insert(static_cast<int>(a.shape));
      colors.insert(static_cast<int>(a.color));
      sizes.insert(s);
      for (size_t j = 0; j < i; j++) {
        const Object& b = scene.objects[j];
        int rb = b.size == Size::small ? 5 : 9;
        double dist = std::hypot(a.cx - b.cx, a.cy - b.cy);
        ASSERT_GE(dist, r + rb + 2);
      }
    }
    ASSERT_EQ(scene_problem(scene), "");
  }
  // Object counts are uniform in 1..6: 500 expected each, sd ~20.
  for (int k = 1; k <= 6; k++) {
    EXPECT_GT(counts[k], 400) << k;
    EXPECT_LT(counts[k], 600) << k;
  }
  EXPECT_EQ(shapes.size(), 3u);
  EXPECT_EQ(colors.size(), 6u);
  EXPECT_EQ(sizes.size(), 2u);
  // The whole valid range is reached.
  EXPECT_EQ(min_cx[0], 6);
  EXPECT_EQ(max_cx[0], 57);
  EXPECT_EQ(min_cx[1], 10);
  EXPECT_EQ(max_cx[1], 53);
}

TEST(ShapeWorldScene, DeterministicAndProblemsReported) {
  Rng a(99), b(99);
  for (int i = 0; i < 50; i++) ASSERT_EQ(sample_scene(a), sample_scene(b));
  EXPECT_NE(sample_pool_scene(1, 0), sample_pool_scene(1, 1));
  Scene bad;
  EXPECT_NE(scene_problem(bad).find("0 objects"), std::string::npos);
  bad.objects = {make(Shape::circle, Color::red, Size::large, 9, 30)};
  EXPECT_NE(scene_problem(bad).find("outside"), std::string::npos);
  // Touching: dist 20 >= 9 + 9 + 2 is fine, 19 is not.
  bad.objects = {make(Shape::circle, Color::red, Size::large, 20, 30),
                 make(Shape::circle, Color::red, Size::large, 40, 30)};
  EXPECT_EQ(scene_problem(bad), "");
  bad.objects[1].cx = 39;
  EXPECT_NE(scene_problem(bad).find("closer"), std::string::npos);
}

TEST(ShapeWorldScene, JsonRoundTripAndErrors) {
  Rng rng(3);
  for (int i = 0; i < 20; i++) {
    Scene scene = sample_scene(rng);
    EXPECT_EQ(scene_from_json(scene_to_json(scene), "test"), scene);
  }
  EXPECT_THROW(scene_from_json("{", "x"), std::runtime_error);
  EXPECT_THROW(
      scene_from_json(
          R"({"objects":[{"shape":"hexagon","color":"red","size":"small","cx":10,"cy":10}]})", "x"),
      std::runtime_error);
  try {
    scene_from_json(
        R"({"objects":[{"shape":"circle","color":"red","size":"small","cx":"10","cy":10}]})",
        "scenes.jsonl:7");
    FAIL();
  } catch (const std::runtime_error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("scenes.jsonl:7"), std::string::npos) << m;
    EXPECT_NE(m.find("\"cx\""), std::string::npos) << m;
  }
  // Rule violations are caught too.
  EXPECT_THROW(
      scene_from_json(
          R"({"objects":[{"shape":"circle","color":"red","size":"large","cx":5,"cy":30}]})", "x"),
      std::runtime_error);
}

// ---- the oracle against a brute force from pixels --------------------------------

namespace {

struct SeenObject {
  std::string shape, color, size;
  int cx, cy;
};

// Reads the objects back from the image: connected components (4-neighbour) of each
// palette color; area and bounding box identify shape and size (the areas and boxes
// are the hand-computed ones above), the box gives the center.
std::vector<SeenObject> objects_from_pixels(const Image& img) {
  const std::vector<std::pair<std::string, std::array<int, 3>>> palette = {
      {"red", {220, 40, 40}},     {"green", {40, 170, 60}},   {"blue", {40, 80, 220}},
      {"yellow", {230, 200, 40}}, {"purple", {150, 60, 190}}, {"gray", {120, 120, 120}}};
  auto color_at = [&](int x, int y) -> int {
    for (int c = 0; c < 6; c++) {
      size_t at = img.offset(x, y);
      if (img.rgb[at] == palette[c].second[0] && img.rgb[at + 1] == palette[c].second[1] &&
          img.rgb[at + 2] == palette[c].second[2])
        return c;
    }
    return -1;
  };
  std::vector<int> label(64 * 64, -1);
  std::vector<SeenObject> out;
  for (int y = 0; y < 64; y++)
    for (int x = 0; x < 64; x++) {
      int c = color_at(x, y);
      if (c < 0 || label[y * 64 + x] >= 0) continue;
      int id = static_cast<int>(out.size());
      std::vector<std::pair<int, int>> stack = {{x, y}};
      label[y * 64 + x] = id;
      int area = 0, x0 = x, x1 = x, y0 = y, y1 = y;
      while (!stack.empty()) {
        auto [px, py] = stack.back();
        stack.pop_back();
        area++;
        x0 = std::min(x0, px), x1 = std::max(x1, px), y0 = std::min(y0, py), y1 = std::max(y1, py);
        const int nx[4] = {px + 1, px - 1, px, px}, ny[4] = {py, py, py + 1, py - 1};
        for (int k = 0; k < 4; k++) {
          if (nx[k] < 0 || ny[k] < 0 || nx[k] >= 64 || ny[k] >= 64) continue;
          if (label[ny[k] * 64 + nx[k]] >= 0 || color_at(nx[k], ny[k]) != c) continue;
          label[ny[k] * 64 + nx[k]] = id;
          stack.push_back({nx[k], ny[k]});
        }
      }
      int w = x1 - x0 + 1, h = y1 - y0 + 1;
      SeenObject o;
      o.color = palette[c].first;
      if (area == 81 && w == 11)
        o.shape = "circle", o.size = "small";
      else if (area == 253)
        o.shape = "circle", o.size = "large";
      else if (area == 81 && w == 9)
        o.shape = "square", o.size = "small";
      else if (area == 225)
        o.shape = "square", o.size = "large";
      else if (area == 34)
        o.shape = "triangle", o.size = "small";
      else if (area == 106)
        o.shape = "triangle", o.size = "large";
      else
        ADD_FAILURE() << "unrecognised component: area " << area << " box " << w << "x" << h;
      o.cx = (x0 + x1) / 2;
      o.cy = o.shape == "triangle" ? y0 + (o.size == "small" ? 5 : 9) : (y0 + y1) / 2;
      out.push_back(o);
    }
  return out;
}

// Every askable question and its answer, from the seen objects, with the templates
// written out again here.
std::map<std::string, std::string> brute_force_questions(const std::vector<SeenObject>& objs) {
  const std::vector<std::string> shapes = {"circle", "square", "triangle"};
  const std::vector<std::string> colors = {"red", "green", "blue", "yellow", "purple", "gray"};
  auto count = [&](const std::string& color, const std::string& shape) {
    int n = 0;
    for (auto& o : objs)
      n += (color.empty() || o.color == color) && (shape.empty() || o.shape == shape);
    return n;
  };
  auto only = [&](const std::string& color, const std::string& shape) -> const SeenObject* {
    for (auto& o : objs)
      if ((color.empty() || o.color == color) && (shape.empty() || o.shape == shape)) return &o;
    return nullptr;
  };
  auto yn = [](bool b) { return std::string(b ? "yes" : "no"); };
  std::map<std::string, std::string> qa;
  qa["how many objects are there?"] = std::to_string(objs.size());
  for (auto& s : shapes) {
    qa["how many " + s + "s are there?"] = std::to_string(count("", s));
    int n = count("", s);
    if (n <= 1) qa["what color is the " + s + "?"] = n ? only("", s)->color : "none";
  }
  for (auto& c : colors) {
    qa["how many " + c + " objects are there?"] = std::to_string(count(c, ""));
    int n = count(c, "");
    if (n <= 1) qa["what shape is the " + c + " object?"] = n ? only(c, "")->shape : "none";
    for (auto& s : shapes) {
      int m = count(c, s);
      qa["how many " + c + " " + s + "s are there?"] = std::to_string(m);
      qa["is there a " + c + " " + s + "?"] = yn(m > 0);
      if (m <= 1) qa["what size is the " + c + " " + s + "?"] = m ? only(c, s)->size : "none";
    }
  }
  for (auto& c1 : colors)
    for (auto& s1 : shapes)
      for (auto& c2 : colors)
        for (auto& s2 : shapes) {
          if ((c1 == c2 && s1 == s2) || count(c1, s1) != 1 || count(c2, s2) != 1) continue;
          const SeenObject *a = only(c1, s1), *b = only(c2, s2);
          qa["is the " + c1 + " " + s1 + " left of the " + c2 + " " + s2 + "?"] = yn(a->cx < b->cx);
          qa["is the " + c1 + " " + s1 + " above the " + c2 + " " + s2 + "?"] = yn(a->cy < b->cy);
        }
  for (auto& s1 : shapes)
    for (auto& s2 : shapes)
      if (s1 != s2)
        qa["are there more " + s1 + "s than " + s2 + "s?"] = yn(count("", s1) > count("", s2));
  for (auto& c1 : colors)
    for (auto& c2 : colors)
      if (c1 != c2)
        qa["are there more " + c1 + " objects than " + c2 + " objects?"] =
            yn(count(c1, "") > count(c2, ""));
  return qa;
}

}  // namespace

TEST(ShapeWorldOracle, MatchesBruteForceFromPixels) {
  Rng rng(2024);
  std::map<std::string, int> type_counts;
  for (int n = 0; n < 300; n++) {
    Scene scene = sample_scene(rng);
    std::vector<SeenObject> seen = objects_from_pixels(render_scene(scene));
    ASSERT_EQ(seen.size(), scene.objects.size());
    std::map<std::string, std::string> expected = brute_force_questions(seen);
    std::vector<Question> asked = askable_questions(scene);
    std::map<std::string, std::string> got;
    for (const Question& q : asked) {
      got[q.text] = q.answer;
      type_counts[type_name(q.type)]++;
      // Every text parses back to its type, and the text oracle agrees.
      auto spec = parse_question(q.text);
      ASSERT_TRUE(spec.has_value()) << q.text;
      EXPECT_EQ(spec->type, q.type);
      EXPECT_EQ(oracle_answer(scene, q.text), q.answer);
    }
    ASSERT_EQ(got.size(), asked.size());  // no duplicate texts
    ASSERT_EQ(got, expected) << "scene " << n << ": " << scene_to_json(scene);
  }
  EXPECT_EQ(type_counts.size(), 12u);
}

TEST(ShapeWorldOracle, QuestionTextsAndParsing) {
  const auto& specs = all_question_specs();
  EXPECT_EQ(specs.size(), 721u);  // 1+3+6+18+18+3+6+18+306+306+6+30
  std::set<std::string> texts;
  for (const auto& spec : specs) {
    std::string t = spec.text();
    EXPECT_EQ(t.back(), '?');
    EXPECT_EQ(t.find("  "), std::string::npos);
    for (char c : t) EXPECT_FALSE(std::isupper(static_cast<unsigned char>(c)));
    texts.insert(t);
    EXPECT_EQ(parse_question(t), spec);
  }
  EXPECT_EQ(texts.size(), specs.size());
  auto spec = parse_question("  How many   RED circles are there?  ");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(spec->type, QuestionType::count_both);
  EXPECT_EQ(spec->color1, Color::red);
  EXPECT_EQ(spec->shape1, Shape::circle);
  EXPECT_FALSE(parse_question("how many red circle are there?"));
  EXPECT_FALSE(parse_question("is the red circle left of the red circle?"));
  EXPECT_FALSE(parse_question(""));
  EXPECT_FALSE(parse_question("how many objects are there"));
  // Exact wording of a few templates.
  QuestionSpec q;
  q.type = QuestionType::left_of;
  q.color1 = Color::purple;
  q.shape1 = Shape::triangle;
  q.color2 = Color::gray;
  q.shape2 = Shape::square;
  EXPECT_EQ(q.text(), "is the purple triangle left of the gray square?");
  q.type = QuestionType::more_color;
  EXPECT_EQ(q.text(), "are there more purple objects than gray objects?");
  q.type = QuestionType::more_shape;
  EXPECT_EQ(q.text(), "are there more triangles than squares?");
  q.type = QuestionType::query_shape;
  EXPECT_EQ(q.text(), "what shape is the purple object?");
}

TEST(ShapeWorldOracle, HandBuiltSceneAnswers) {
  // Two red circles (one small at left-top), a blue small square, a large green triangle.
  Scene scene;
  scene.objects = {make(Shape::circle, Color::red, Size::small, 10, 10),
                   make(Shape::circle, Color::red, Size::large, 40, 40),
                   make(Shape::square, Color::blue, Size::small, 50, 10),
                   make(Shape::triangle, Color::green, Size::large, 15, 45)};
  ASSERT_EQ(scene_problem(scene), "");
  auto ask = [&](const std::string& text) { return oracle_answer(scene, text); };
  EXPECT_EQ(ask("how many objects are there?"), "4");
  EXPECT_EQ(ask("how many circles are there?"), "2");
  EXPECT_EQ(ask("how many red circles are there?"), "2");
  EXPECT_EQ(ask("how many yellow objects are there?"), "0");
  EXPECT_EQ(ask("is there a blue square?"), "yes");
  EXPECT_EQ(ask("is there a blue circle?"), "no");
  EXPECT_EQ(ask("what color is the circle?"), std::nullopt);  // two circles
  EXPECT_EQ(ask("what color is the square?"), "blue");
  EXPECT_EQ(ask("what shape is the gray object?"), "none");
  EXPECT_EQ(ask("what size is the green triangle?"), "large");
  EXPECT_EQ(ask("what size is the red circle?"), std::nullopt);
  EXPECT_EQ(ask("is the blue square left of the green triangle?"), "no");
  EXPECT_EQ(ask("is the blue square above the green triangle?"), "yes");
  EXPECT_EQ(ask("is the red circle above the blue square?"), std::nullopt);
  EXPECT_EQ(ask("are there more circles than squares?"), "yes");
  EXPECT_EQ(ask("are there more squares than triangles?"), "no");  // 1 vs 1
  EXPECT_EQ(ask("are there more green objects than red objects?"), "no");
  EXPECT_EQ(ask("what is this?"), std::nullopt);
}

TEST(ShapeWorldOracle, HallucinationSliceAndVocabulary) {
  EXPECT_TRUE(is_hallucination(QuestionType::query_color, "none"));
  EXPECT_TRUE(is_hallucination(QuestionType::query_size, "none"));
  EXPECT_TRUE(is_hallucination(QuestionType::count_both, "0"));
  EXPECT_TRUE(is_hallucination(QuestionType::count_shape, "0"));
  EXPECT_TRUE(is_hallucination(QuestionType::exist, "no"));
  EXPECT_FALSE(is_hallucination(QuestionType::exist, "yes"));
  EXPECT_FALSE(is_hallucination(QuestionType::count_color, "1"));
  EXPECT_FALSE(is_hallucination(QuestionType::left_of, "no"));
  EXPECT_FALSE(is_hallucination(QuestionType::more_color, "no"));
  EXPECT_FALSE(is_hallucination(QuestionType::query_shape, "circle"));
  // Every benchmark answer and every oracle answer is in the closed vocabulary.
  std::set<std::string> vocab(answer_vocabulary().begin(), answer_vocabulary().end());
  EXPECT_EQ(vocab.size(), 21u);
  for (int t = 0; t < kNumQuestionTypes; t++)
    for (const auto& a : benchmark_answer_set(static_cast<QuestionType>(t)))
      EXPECT_TRUE(vocab.count(a)) << a;
  Rng rng(5);
  for (int i = 0; i < 50; i++)
    for (const auto& q : askable_questions(sample_scene(rng)))
      EXPECT_TRUE(vocab.count(q.answer)) << q.answer;
  for (int t = 0; t < kNumQuestionTypes; t++) {
    auto type = static_cast<QuestionType>(t);
    EXPECT_EQ(parse_type(type_name(type)), type);
  }
  EXPECT_FALSE(parse_type("count"));
}

TEST(ShapeWorldBenchmark, AnswersBalancedWithinEachType) {
  const int n = 2400;
  std::vector<BenchmarkItem> items = sample_benchmark(11, n);
  ASSERT_EQ(items.size(), static_cast<size_t>(n));
  std::map<QuestionType, std::map<std::string, int>> counts;
  std::map<QuestionType, int> per_type;
  for (const auto& item : items) {
    // Each item is a real, askable question of its scene with the oracle's answer.
    ASSERT_EQ(scene_problem(item.scene), "");
    ASSERT_EQ(oracle_answer(item.scene, item.question.text), item.question.answer);
    ASSERT_EQ(parse_question(item.question.text)->type, item.question.type);
    counts[item.question.type][item.question.answer]++;
    per_type[item.question.type]++;
  }
  ASSERT_EQ(per_type.size(), 12u);
  for (auto& [type, k] : per_type) {
    // 200 expected per type (sd ~14).
    EXPECT_GT(k, 140) << type_name(type);
    EXPECT_LT(k, 260) << type_name(type);
    const auto& answers = benchmark_answer_set(type);
    ASSERT_EQ(counts[type].size(), answers.size()) << type_name(type);
    double expected = static_cast<double>(k) / answers.size();
    for (const auto& a : answers) {
      double sd = std::sqrt(expected * (1 - 1.0 / answers.size()));
      EXPECT_NEAR(counts[type][a], expected, 4.5 * sd) << type_name(type) << " " << a;
    }
  }
  // Same seed -> same benchmark; another seed -> another.
  auto again = sample_benchmark(11, 20);
  for (int i = 0; i < 20; i++) {
    EXPECT_EQ(again[i].scene, items[i].scene);
    EXPECT_EQ(again[i].question.text, items[i].question.text);
    EXPECT_EQ(again[i].id, item_id(i));
  }
  auto other = sample_benchmark(12, 20);
  int same = 0;
  for (int i = 0; i < 20; i++) same += other[i].scene == items[i].scene;
  EXPECT_LT(same, 2);
  EXPECT_EQ(item_id(123), "000123");
  EXPECT_EQ(item_id(1234567), "1234567");
}

TEST(ShapeWorldOracle, RelevantObjects) {
  Scene scene;
  scene.objects = {make(Shape::circle, Color::red, Size::small, 10, 10),
                   make(Shape::circle, Color::red, Size::large, 40, 40),
                   make(Shape::square, Color::blue, Size::small, 50, 10),
                   make(Shape::triangle, Color::green, Size::large, 15, 45)};
  auto about = [&](const std::string& text) {
    std::vector<std::string> out;
    for (const Object& o : relevant_objects(scene, *parse_question(text)))
      out.push_back(describe_object(o));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(about("how many red circles are there?"),
            (V{"small red circle at (10, 10)", "large red circle at (40, 40)"}));
  EXPECT_EQ(about("is the blue square left of the green triangle?"),
            (V{"small blue square at (50, 10)", "large green triangle at (15, 45)"}));
  EXPECT_EQ(about("what shape is the yellow object?"), V{});
  EXPECT_EQ(about("are there more squares than triangles?"),
            (V{"small blue square at (50, 10)", "large green triangle at (15, 45)"}));
  EXPECT_EQ(about("how many objects are there?").size(), 4u);
  // For random scenes, single-description counts equal the number of relevant objects.
  Rng rng(77);
  for (int n = 0; n < 100; n++) {
    Scene s = sample_scene(rng);
    for (const QuestionSpec& spec : all_question_specs()) {
      if (spec.type != QuestionType::count_all && spec.type != QuestionType::count_shape &&
          spec.type != QuestionType::count_color && spec.type != QuestionType::count_both)
        continue;
      ASSERT_EQ(std::to_string(relevant_objects(s, spec).size()), *oracle_answer(s, spec));
    }
  }
}
