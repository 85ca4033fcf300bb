// ShapeWorld v1 implementation. The spec is shared/shapeworld.md; every rule there
// maps to one small function here so it can be read side by side with the spec.
#include "data/shapeworld.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace visplay::world {

// ---- random numbers -----------------------------------------------------------

uint64_t splitmix64_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static uint64_t splitmix64_next(uint64_t& state) {
  state += 0x9E3779B97F4A7C15ULL;
  return splitmix64_mix(state);
}

Rng::Rng(uint64_t seed) {
  uint64_t sm = seed;
  for (auto& word : state_) word = splitmix64_next(sm);
}

Rng Rng::for_item(uint64_t seed, uint64_t index) {
  return Rng(splitmix64_mix(seed) ^ splitmix64_mix(index + 0x9E3779B97F4A7C15ULL));
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t Rng::next() {
  uint64_t* s = state_.data();
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t Rng::below(uint64_t n) {
  if (n == 0) throw std::runtime_error("Rng::below: n must be >= 1");
  // limit = 2^64 - (2^64 mod n) = the largest multiple of n that fits; 0 means 2^64.
  uint64_t remainder = (0 - n) % n;  // (2^64 - n) mod n == 2^64 mod n
  for (;;) {
    uint64_t x = next();
    if (remainder == 0 || x < 0 - remainder) return x % n;
  }
}

// ---- names --------------------------------------------------------------------

static const char* const kShapeNames[kNumShapes] = {"circle", "square", "triangle"};
static const char* const kShapePlurals[kNumShapes] = {"circles", "squares", "triangles"};
static const char* const kColorNames[kNumColors] = {"red",    "green",  "blue",
                                                    "yellow", "purple", "gray"};
static const char* const kSizeNames[kNumSizes] = {"small", "large"};
static const uint8_t kColorRgb[kNumColors][3] = {{220, 40, 40},  {40, 170, 60},  {40, 80, 220},
                                                 {230, 200, 40}, {150, 60, 190}, {120, 120, 120}};
static const char* const kTypeNames[kNumQuestionTypes] = {
    "count_all",   "count_shape", "count_color", "count_both", "exist",      "query_color",
    "query_shape", "query_size",  "left_of",     "above",      "more_shape", "more_color"};

const char* shape_name(Shape shape) { return kShapeNames[static_cast<int>(shape)]; }
const char* shape_plural(Shape shape) { return kShapePlurals[static_cast<int>(shape)]; }
const char* color_name(Color color) { return kColorNames[static_cast<int>(color)]; }
const char* size_name(Size size) { return kSizeNames[static_cast<int>(size)]; }
const char* type_name(QuestionType type) { return kTypeNames[static_cast<int>(type)]; }

template <typename E, int N>
static std::optional<E> parse_name(const char* const (&names)[N], const std::string& name) {
  for (int i = 0; i < N; i++)
    if (name == names[i]) return static_cast<E>(i);
  return std::nullopt;
}
std::optional<Shape> parse_shape(const std::string& n) { return parse_name<Shape>(kShapeNames, n); }
std::optional<Color> parse_color(const std::string& n) { return parse_name<Color>(kColorNames, n); }
std::optional<Size> parse_size(const std::string& n) { return parse_name<Size>(kSizeNames, n); }
std::optional<QuestionType> parse_type(const std::string& n) {
  return parse_name<QuestionType>(kTypeNames, n);
}

std::array<uint8_t, 3> color_rgb(Color color) {
  const uint8_t* c = kColorRgb[static_cast<int>(color)];
  return {c[0], c[1], c[2]};
}

int size_radius(Size size) { return size == Size::small ? 5 : 9; }

// ---- placement ------------------------------------------------------------------

bool center_in_bounds(Size size, int cx, int cy) {
  int r = size_radius(size);
  int lo = r + 1, hi = kCanvasSize - 1 - r - 1;
  return cx >= lo && cx <= hi && cy >= lo && cy <= hi;
}

bool objects_spaced(const Object& a, const Object& b) {
  int64_t dx = a.cx - b.cx, dy = a.cy - b.cy;
  int64_t min_dist = a.radius() + b.radius() + 2;
  return dx * dx + dy * dy >= min_dist * min_dist;
}

std::string scene_problem(const Scene& scene) {
  int n = static_cast<int>(scene.objects.size());
  if (n < kMinObjects || n > kMaxObjects)
    return "scene has " + std::to_string(n) + " objects, expected 1..6";
  for (int i = 0; i < n; i++) {
    const Object& o = scene.objects[i];
    if (static_cast<int>(o.shape) >= kNumShapes || static_cast<int>(o.color) >= kNumColors ||
        static_cast<int>(o.size) >= kNumSizes)
      return "object " + std::to_string(i) + " has an invalid shape, color or size";
    if (!center_in_bounds(o.size, o.cx, o.cy))
      return "object " + std::to_string(i) + " center (" + std::to_string(o.cx) + ", " +
             std::to_string(o.cy) +
             ") is outside r + 1 .. 62 - r for r = " + std::to_string(o.radius());
    for (int j = 0; j < i; j++)
      if (!objects_spaced(scene.objects[j], o))
        return "objects " + std::to_string(j) + " and " + std::to_string(i) +
               " are closer than r1 + r2 + 2";
  }
  return "";
}

Scene sample_scene(Rng& rng) {
  std::vector<std::pair<int, int>> candidates;
  for (;;) {
    Scene scene;
    int count = kMinObjects + static_cast<int>(rng.below(kMaxObjects - kMinObjects + 1));
    bool placed_all = true;
    for (int i = 0; i < count && placed_all; i++) {
      Object o;
      o.shape = static_cast<Shape>(rng.below(kNumShapes));
      o.color = static_cast<Color>(rng.below(kNumColors));
      o.size = static_cast<Size>(rng.below(kNumSizes));
      int r = o.radius();
      candidates.clear();
      for (int cy = r + 1; cy <= kCanvasSize - r - 2; cy++)
        for (int cx = r + 1; cx <= kCanvasSize - r - 2; cx++) {
          o.cx = cx;
          o.cy = cy;
          bool ok = true;
          for (const Object& other : scene.objects)
            if (!objects_spaced(other, o)) {
              ok = false;
              break;
            }
          if (ok) candidates.emplace_back(cx, cy);
        }
      if (candidates.empty()) {
        placed_all = false;
        break;
      }
      auto [cx, cy] = candidates[rng.below(candidates.size())];
      o.cx = cx;
      o.cy = cy;
      scene.objects.push_back(o);
    }
    if (placed_all) return scene;
  }
}

// ---- rendering ------------------------------------------------------------------

// Edge function of the directed edge a->b at point p (twice the signed area).
static inline double edge(double ax, double ay, double bx, double by, double px, double py) {
  return (bx - ax) * (py - ay) - (by - ay) * (px - ax);
}

bool object_covers(const Object& object, int x, int y) {
  const double r = object.radius();
  const double cx = object.cx + 0.5, cy = object.cy + 0.5;
  const double px = x + 0.5, py = y + 0.5;
  switch (object.shape) {
    case Shape::circle:
      return (px - cx) * (px - cx) + (py - cy) * (py - cy) <= r * r;
    case Shape::square: {
      const double h = 0.8 * r;
      return std::abs(px - cx) <= h && std::abs(py - cy) <= h;
    }
    case Shape::triangle: {
      const double ax = cx, ay = cy - r;
      const double bx = cx - 0.866 * r, by = cy + 0.5 * r;
      const double qx = cx + 0.866 * r, qy = cy + 0.5 * r;
      double e0 = edge(ax, ay, bx, by, px, py);
      double e1 = edge(bx, by, qx, qy, px, py);
      double e2 = edge(qx, qy, ax, ay, px, py);
      return (e0 >= 0 && e1 >= 0 && e2 >= 0) || (e0 <= 0 && e1 <= 0 && e2 <= 0);
    }
  }
  return false;
}

Image render_scene(const Scene& scene) {
  Image image;
  image.width = image.height = kCanvasSize;
  image.rgb.assign(kCanvasSize * kCanvasSize * 3, kBackground);
  for (const Object& o : scene.objects) {
    auto rgb = color_rgb(o.color);
    int r = o.radius();
    // Every shape lies inside the box of half side r around its float center.
    int x0 = std::max(0, o.cx - r - 1), x1 = std::min(kCanvasSize - 1, o.cx + r + 1);
    int y0 = std::max(0, o.cy - r - 1), y1 = std::min(kCanvasSize - 1, o.cy + r + 1);
    for (int y = y0; y <= y1; y++)
      for (int x = x0; x <= x1; x++)
        if (object_covers(o, x, y)) {
          size_t at = image.offset(x, y);
          image.rgb[at] = rgb[0];
          image.rgb[at + 1] = rgb[1];
          image.rgb[at + 2] = rgb[2];
        }
  }
  return image;
}

// ---- questions ------------------------------------------------------------------

std::string QuestionSpec::text() const {
  std::string c1 = color_name(color1), c2 = color_name(color2);
  std::string s1 = shape_name(shape1), s2 = shape_name(shape2);
  std::string p1 = shape_plural(shape1), p2 = shape_plural(shape2);
  switch (type) {
    case QuestionType::count_all:
      return "how many objects are there?";
    case QuestionType::count_shape:
      return "how many " + p1 + " are there?";
    case QuestionType::count_color:
      return "how many " + c1 + " objects are there?";
    case QuestionType::count_both:
      return "how many " + c1 + " " + p1 + " are there?";
    case QuestionType::exist:
      return "is there a " + c1 + " " + s1 + "?";
    case QuestionType::query_color:
      return "what color is the " + s1 + "?";
    case QuestionType::query_shape:
      return "what shape is the " + c1 + " object?";
    case QuestionType::query_size:
      return "what size is the " + c1 + " " + s1 + "?";
    case QuestionType::left_of:
      return "is the " + c1 + " " + s1 + " left of the " + c2 + " " + s2 + "?";
    case QuestionType::above:
      return "is the " + c1 + " " + s1 + " above the " + c2 + " " + s2 + "?";
    case QuestionType::more_shape:
      return "are there more " + p1 + " than " + p2 + "?";
    case QuestionType::more_color:
      return "are there more " + c1 + " objects than " + c2 + " objects?";
  }
  return "";
}

static std::vector<QuestionSpec> build_all_specs() {
  std::vector<QuestionSpec> specs;
  auto add = [&](QuestionType t, Color c1, Shape s1, Color c2, Shape s2) {
    QuestionSpec q;
    q.type = t;
    q.color1 = c1;
    q.shape1 = s1;
    q.color2 = c2;
    q.shape2 = s2;
    specs.push_back(q);
  };
  const Color c0 = Color::red;
  const Shape s0 = Shape::circle;
  auto color = [](int i) { return static_cast<Color>(i); };
  auto shape = [](int i) { return static_cast<Shape>(i); };
  for (int t = 0; t < kNumQuestionTypes; t++) {
    auto type = static_cast<QuestionType>(t);
    switch (type) {
      case QuestionType::count_all:
        add(type, c0, s0, c0, s0);
        break;
      case QuestionType::count_shape:
      case QuestionType::query_color:
        for (int s = 0; s < kNumShapes; s++) add(type, c0, shape(s), c0, s0);
        break;
      case QuestionType::count_color:
      case QuestionType::query_shape:
        for (int c = 0; c < kNumColors; c++) add(type, color(c), s0, c0, s0);
        break;
      case QuestionType::count_both:
      case QuestionType::exist:
      case QuestionType::query_size:
        for (int c = 0; c < kNumColors; c++)
          for (int s = 0; s < kNumShapes; s++) add(type, color(c), shape(s), c0, s0);
        break;
      case QuestionType::left_of:
      case QuestionType::above:
        for (int c1 = 0; c1 < kNumColors; c1++)
          for (int s1 = 0; s1 < kNumShapes; s1++)
            for (int c2 = 0; c2 < kNumColors; c2++)
              for (int s2 = 0; s2 < kNumShapes; s2++)
                if (c1 != c2 || s1 != s2) add(type, color(c1), shape(s1), color(c2), shape(s2));
        break;
      case QuestionType::more_shape:
        for (int s1 = 0; s1 < kNumShapes; s1++)
          for (int s2 = 0; s2 < kNumShapes; s2++)
            if (s1 != s2) add(type, c0, shape(s1), c0, shape(s2));
        break;
      case QuestionType::more_color:
        for (int c1 = 0; c1 < kNumColors; c1++)
          for (int c2 = 0; c2 < kNumColors; c2++)
            if (c1 != c2) add(type, color(c1), s0, color(c2), s0);
        break;
    }
  }
  return specs;
}

const std::vector<QuestionSpec>& all_question_specs() {
  static const std::vector<QuestionSpec> specs = build_all_specs();
  return specs;
}

// Lower-cases, trims and collapses runs of whitespace to one space.
static std::string normalize_question_text(const std::string& text) {
  std::string out;
  bool pending_space = false;
  for (unsigned char ch : text) {
    if (std::isspace(ch)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    out.push_back(static_cast<char>(std::tolower(ch)));
  }
  return out;
}

std::optional<QuestionSpec> parse_question(const std::string& text) {
  // The world has only 721 questions: look the text up in a table of all of them,
  // which keeps parsing exactly consistent with QuestionSpec::text().
  static const std::map<std::string, QuestionSpec> by_text = [] {
    std::map<std::string, QuestionSpec> table;
    for (const QuestionSpec& spec : all_question_specs()) table.emplace(spec.text(), spec);
    return table;
  }();
  auto it = by_text.find(normalize_question_text(text));
  if (it == by_text.end()) return std::nullopt;
  return it->second;
}

// ---- the oracle -----------------------------------------------------------------

namespace {
struct Matches {
  int count = 0;
  const Object* first = nullptr;
};
// Objects matching an optional color and an optional shape.
Matches find(const Scene& scene, std::optional<Color> color, std::optional<Shape> shape) {
  Matches m;
  for (const Object& o : scene.objects)
    if ((!color || o.color == *color) && (!shape || o.shape == *shape)) {
      if (m.count == 0) m.first = &o;
      m.count++;
    }
  return m;
}
std::string yes_no(bool b) { return b ? "yes" : "no"; }
}  // namespace

std::optional<std::string> oracle_answer(const Scene& scene, const QuestionSpec& q) {
  switch (q.type) {
    case QuestionType::count_all:
      return std::to_string(scene.objects.size());
    case QuestionType::count_shape:
      return std::to_string(find(scene, std::nullopt, q.shape1).count);
    case QuestionType::count_color:
      return std::to_string(find(scene, q.color1, std::nullopt).count);
    case QuestionType::count_both:
      return std::to_string(find(scene, q.color1, q.shape1).count);
    case QuestionType::exist:
      return yes_no(find(scene, q.color1, q.shape1).count > 0);
    case QuestionType::query_color: {
      Matches m = find(scene, std::nullopt, q.shape1);
      if (m.count > 1) return std::nullopt;
      return m.count == 0 ? "none" : color_name(m.first->color);
    }
    case QuestionType::query_shape: {
      Matches m = find(scene, q.color1, std::nullopt);
      if (m.count > 1) return std::nullopt;
      return m.count == 0 ? "none" : shape_name(m.first->shape);
    }
    case QuestionType::query_size: {
      Matches m = find(scene, q.color1, q.shape1);
      if (m.count > 1) return std::nullopt;
      return m.count == 0 ? "none" : size_name(m.first->size);
    }
    case QuestionType::left_of:
    case QuestionType::above: {
      if (q.color1 == q.color2 && q.shape1 == q.shape2) return std::nullopt;
      Matches a = find(scene, q.color1, q.shape1), b = find(scene, q.color2, q.shape2);
      if (a.count != 1 || b.count != 1) return std::nullopt;
      if (q.type == QuestionType::left_of) return yes_no(a.first->cx < b.first->cx);
      return yes_no(a.first->cy < b.first->cy);
    }
    case QuestionType::more_shape:
      if (q.shape1 == q.shape2) return std::nullopt;
      return yes_no(find(scene, std::nullopt, q.shape1).count >
                    find(scene, std::nullopt, q.shape2).count);
    case QuestionType::more_color:
      if (q.color1 == q.color2) return std::nullopt;
      return yes_no(find(scene, q.color1, std::nullopt).count >
                    find(scene, q.color2, std::nullopt).count);
  }
  return std::nullopt;
}

std::optional<std::string> oracle_answer(const Scene& scene, const std::string& question) {
  std::optional<QuestionSpec> spec = parse_question(question);
  if (!spec) return std::nullopt;
  return oracle_answer(scene, *spec);
}

std::vector<Object> relevant_objects(const Scene& scene, const QuestionSpec& q) {
  auto matches = [&](const Object& o, std::optional<Color> color, std::optional<Shape> shape) {
    return (!color || o.color == *color) && (!shape || o.shape == *shape);
  };
  std::vector<Object> out;
  for (const Object& o : scene.objects) {
    bool relevant = false;
    switch (q.type) {
      case QuestionType::count_all:
        relevant = true;
        break;
      case QuestionType::count_shape:
      case QuestionType::query_color:
        relevant = matches(o, std::nullopt, q.shape1);
        break;
      case QuestionType::count_color:
      case QuestionType::query_shape:
        relevant = matches(o, q.color1, std::nullopt);
        break;
      case QuestionType::count_both:
      case QuestionType::exist:
      case QuestionType::query_size:
        relevant = matches(o, q.color1, q.shape1);
        break;
      case QuestionType::left_of:
      case QuestionType::above:
        relevant = matches(o, q.color1, q.shape1) || matches(o, q.color2, q.shape2);
        break;
      case QuestionType::more_shape:
        relevant = matches(o, std::nullopt, q.shape1) || matches(o, std::nullopt, q.shape2);
        break;
      case QuestionType::more_color:
        relevant = matches(o, q.color1, std::nullopt) || matches(o, q.color2, std::nullopt);
        break;
    }
    if (relevant) out.push_back(o);
  }
  return out;
}

std::string describe_object(const Object& o) {
  return std::string(size_name(o.size)) + " " + color_name(o.color) + " " + shape_name(o.shape) +
         " at (" + std::to_string(o.cx) + ", " + std::to_string(o.cy) + ")";
}

std::vector<Question> askable_questions(const Scene& scene) {
  std::vector<Question> out;
  for (const QuestionSpec& spec : all_question_specs())
    if (auto answer = oracle_answer(scene, spec)) out.push_back({spec.type, spec.text(), *answer});
  return out;
}

std::vector<Question> askable_questions(const Scene& scene, QuestionType type) {
  std::vector<Question> out;
  for (const QuestionSpec& spec : all_question_specs())
    if (spec.type == type)
      if (auto answer = oracle_answer(scene, spec))
        out.push_back({spec.type, spec.text(), *answer});
  return out;
}

bool is_hallucination(QuestionType type, const std::string& answer) {
  switch (type) {
    case QuestionType::query_color:
    case QuestionType::query_shape:
    case QuestionType::query_size:
      return answer == "none";
    case QuestionType::count_all:
    case QuestionType::count_shape:
    case QuestionType::count_color:
    case QuestionType::count_both:
      return answer == "0";
    case QuestionType::exist:
      return answer == "no";
    default:
      return false;
  }
}

const std::vector<std::string>& answer_vocabulary() {
  static const std::vector<std::string> vocab = {
      "0",    "1",      "2",      "3",        "4",     "5",      "6",
      "yes",  "no",     "red",    "green",    "blue",  "yellow", "purple",
      "gray", "circle", "square", "triangle", "small", "large",  "none"};
  return vocab;
}

const std::vector<std::string>& benchmark_answer_set(QuestionType type) {
  static const std::vector<std::string> one_to_six = {"1", "2", "3", "4", "5", "6"};
  static const std::vector<std::string> zero_to_three = {"0", "1", "2", "3"};
  static const std::vector<std::string> zero_to_two = {"0", "1", "2"};
  static const std::vector<std::string> yes_no_set = {"yes", "no"};
  static const std::vector<std::string> colors = {"red",    "green", "blue", "yellow",
                                                  "purple", "gray",  "none"};
  static const std::vector<std::string> shapes = {"circle", "square", "triangle", "none"};
  static const std::vector<std::string> sizes = {"small", "large", "none"};
  switch (type) {
    case QuestionType::count_all:
      return one_to_six;
    case QuestionType::count_shape:
    case QuestionType::count_color:
      return zero_to_three;
    case QuestionType::count_both:
      return zero_to_two;
    case QuestionType::query_color:
      return colors;
    case QuestionType::query_shape:
      return shapes;
    case QuestionType::query_size:
      return sizes;
    default:
      return yes_no_set;
  }
}

// ---- benchmarks -----------------------------------------------------------------

std::string item_id(int64_t index) {
  std::string digits = std::to_string(index);
  if (digits.size() < 6) digits.insert(0, 6 - digits.size(), '0');
  return digits;
}

BenchmarkItem sample_benchmark_item(uint64_t seed, uint64_t index) {
  Rng rng = Rng::for_item(seed, index);
  auto type = static_cast<QuestionType>(rng.below(kNumQuestionTypes));
  const std::vector<std::string>& answers = benchmark_answer_set(type);
  for (;;) {
    const std::string& target = answers[rng.below(answers.size())];
    for (int tries = 0; tries < 1000; tries++) {
      Scene scene = sample_scene(rng);
      // The askable questions of this type whose answer is the target, in spec order
      // (same set and order as askable_questions(scene, type), without building texts).
      std::vector<const QuestionSpec*> matching;
      for (const QuestionSpec& spec : all_question_specs())
        if (spec.type == type && oracle_answer(scene, spec) == target) matching.push_back(&spec);
      if (matching.empty()) continue;
      const QuestionSpec& chosen = *matching[rng.below(matching.size())];
      BenchmarkItem item;
      item.id = item_id(static_cast<int64_t>(index));
      item.scene = std::move(scene);
      item.question = {type, chosen.text(), target};
      return item;
    }
  }
}

std::vector<BenchmarkItem> sample_benchmark(uint64_t seed, int64_t count,
                                            void (*progress)(int64_t, int64_t)) {
  if (count < 0) throw std::runtime_error("sample_benchmark: negative count");
  std::vector<BenchmarkItem> items;
  items.reserve(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; i++) {
    items.push_back(sample_benchmark_item(seed, static_cast<uint64_t>(i)));
    if (progress) progress(i + 1, count);
  }
  return items;
}

Scene sample_pool_scene(uint64_t seed, uint64_t index) {
  Rng rng = Rng::for_item(seed, index);
  return sample_scene(rng);
}

// ---- scene JSON -----------------------------------------------------------------

std::string scene_to_json(const Scene& scene) {
  nlohmann::ordered_json objects = nlohmann::ordered_json::array();
  for (const Object& o : scene.objects)
    objects.push_back({{"shape", shape_name(o.shape)},
                       {"color", color_name(o.color)},
                       {"size", size_name(o.size)},
                       {"cx", o.cx},
                       {"cy", o.cy}});
  nlohmann::ordered_json j;
  j["objects"] = objects;
  return j.dump();
}

Scene scene_from_json(const std::string& json_text, const std::string& where) {
  nlohmann::json j = nlohmann::json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) throw std::runtime_error(where + ": invalid JSON");
  if (!j.is_object() || !j.contains("objects") || !j["objects"].is_array())
    throw std::runtime_error(where + ": expected an object with an \"objects\" array");
  Scene scene;
  int index = 0;
  for (const auto& o : j["objects"]) {
    std::string at = where + ": objects[" + std::to_string(index++) + "]";
    if (!o.is_object()) throw std::runtime_error(at + ": not an object");
    auto get_string = [&](const char* key) {
      if (!o.contains(key) || !o[key].is_string())
        throw std::runtime_error(at + ": field \"" + key + "\" missing or not a string");
      return o[key].get<std::string>();
    };
    auto get_int = [&](const char* key) {
      if (!o.contains(key) || !o[key].is_number_integer())
        throw std::runtime_error(at + ": field \"" + key + "\" missing or not an integer");
      int64_t v = o[key].get<int64_t>();
      if (v < 0 || v >= kCanvasSize)
        throw std::runtime_error(at + ": field \"" + key + "\" = " + std::to_string(v) +
                                 " is outside the canvas");
      return static_cast<int>(v);
    };
    Object obj;
    std::string shape = get_string("shape"), color = get_string("color"), size = get_string("size");
    auto s = parse_shape(shape);
    auto c = parse_color(color);
    auto z = parse_size(size);
    if (!s) throw std::runtime_error(at + ": unknown shape \"" + shape + "\"");
    if (!c) throw std::runtime_error(at + ": unknown color \"" + color + "\"");
    if (!z) throw std::runtime_error(at + ": unknown size \"" + size + "\"");
    obj.shape = *s;
    obj.color = *c;
    obj.size = *z;
    obj.cx = get_int("cx");
    obj.cy = get_int("cy");
    scene.objects.push_back(obj);
  }
  std::string problem = scene_problem(scene);
  if (!problem.empty()) throw std::runtime_error(where + ": " + problem);
  return scene;
}

}  // namespace visplay::world
