// ShapeWorld v1: the built-in procedural world (contract: shared/shapeworld.md,
// documentation: docs/shapeworld.md). Scenes of 1..6 flat shapes on a 64x64 canvas,
// a pixel-exact renderer, and an oracle that answers every templated question.
//
// Determinism: all randomness comes from `world::Rng` (xoshiro256** seeded through
// splitmix64, unbiased bounded integers by rejection), never from std:: distributions,
// so the same seed gives the same scenes with any compiler or standard library.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/image.h"

namespace visplay::world {

// ---- random numbers ---------------------------------------------------------

// xoshiro256** (Blackman & Vigna). Seeding: the four state words are four
// consecutive outputs of splitmix64 started at `seed`.
class Rng {
 public:
  explicit Rng(uint64_t seed = 0);
  // An independent stream for item `index` of a run seeded with `seed`: seeded with
  // splitmix64-mix(seed) ^ splitmix64-mix(index + golden) so nearby seeds/indices differ.
  static Rng for_item(uint64_t seed, uint64_t index);

  uint64_t next();
  // Uniform integer in [0, n), n >= 1. Rejection sampling on the top bits: draws
  // x = next() until x < limit, limit = 2^64 - (2^64 mod n), returns x % n.
  uint64_t below(uint64_t n);

  const std::array<uint64_t, 4>& state() const { return state_; }
  void set_state(const std::array<uint64_t, 4>& state) { state_ = state; }

 private:
  std::array<uint64_t, 4> state_;
};

// splitmix64 finaliser (the mixing step of splitmix64), exposed for seeding.
uint64_t splitmix64_mix(uint64_t x);

// ---- scenes -----------------------------------------------------------------

constexpr int kCanvasSize = 64;
constexpr int kMinObjects = 1;
constexpr int kMaxObjects = 6;
constexpr uint8_t kBackground = 240;

enum class Shape : uint8_t { circle, square, triangle };
enum class Color : uint8_t { red, green, blue, yellow, purple, gray };
enum class Size : uint8_t { small, large };
constexpr int kNumShapes = 3;
constexpr int kNumColors = 6;
constexpr int kNumSizes = 2;

const char* shape_name(Shape shape);    // "circle"
const char* shape_plural(Shape shape);  // "circles"
const char* color_name(Color color);    // "red"
const char* size_name(Size size);       // "small"
std::optional<Shape> parse_shape(const std::string& name);
std::optional<Color> parse_color(const std::string& name);
std::optional<Size> parse_size(const std::string& name);
std::array<uint8_t, 3> color_rgb(Color color);
int size_radius(Size size);  // small 5, large 9

struct Object {
  Shape shape = Shape::circle;
  Color color = Color::red;
  Size size = Size::small;
  int cx = 0;  // integer center; x to the right, y down
  int cy = 0;

  int radius() const { return size_radius(size); }
  bool operator==(const Object&) const = default;
};

struct Scene {
  std::vector<Object> objects;
  bool operator==(const Scene&) const = default;
};

// Placement rule for one object: r + 1 <= cx, cy <= 63 - r - 1.
bool center_in_bounds(Size size, int cx, int cy);
// Spacing rule: dist(c1, c2) >= r1 + r2 + 2 (checked exactly in integers).
bool objects_spaced(const Object& a, const Object& b);
// Empty when the scene satisfies every rule of the spec (1..6 objects, bounds,
// spacing); otherwise a description of the first violation.
std::string scene_problem(const Scene& scene);

// Scene sampler: object count uniform in 1..6; for each object in turn shape, color,
// size uniform (in that order), then the center uniform among all centers valid
// given the objects placed so far (enumerated row by row: cy outer, cx inner). If an
// object has no valid center, the whole scene is drawn again from the same Rng.
Scene sample_scene(Rng& rng);

// The rasteriser predicate: is pixel (x, y) covered by the object? (spec: pixel
// centre (x + .5, y + .5), float centre (cx + .5, cy + .5), boundary inside, double math)
bool object_covers(const Object& object, int x, int y);
// Renders 64x64 RGB: background (240, 240, 240), objects painted in scene order.
Image render_scene(const Scene& scene);

// ---- questions and the oracle -------------------------------------------------

enum class QuestionType : uint8_t {
  count_all,
  count_shape,
  count_color,
  count_both,
  exist,
  query_color,
  query_shape,
  query_size,
  left_of,
  above,
  more_shape,
  more_color,
};
constexpr int kNumQuestionTypes = 12;

const char* type_name(QuestionType type);  // "count_all"
std::optional<QuestionType> parse_type(const std::string& name);

// A question before it is put in words: the type and its slots. Slots a type does
// not use are left at their defaults.
struct QuestionSpec {
  QuestionType type = QuestionType::count_all;
  Color color1 = Color::red, color2 = Color::red;
  Shape shape1 = Shape::circle, shape2 = Shape::circle;

  std::string text() const;  // the template wording, e.g. "how many red circles are there?"
  bool operator==(const QuestionSpec&) const = default;
};

// Every well-formed question of the world (721 of them), in a fixed order: by type,
// then by the slots in enum order (color before shape, first before second).
const std::vector<QuestionSpec>& all_question_specs();

// Parses a question text; tolerant of case, surrounding spaces and repeated spaces.
// Returns nullopt for anything that is not a template question.
std::optional<QuestionSpec> parse_question(const std::string& text);

// The oracle: the answer to `spec` on `scene`, or nullopt when the question is not
// askable there (query_* about 2+ matches, left_of/above without both unique).
std::optional<std::string> oracle_answer(const Scene& scene, const QuestionSpec& spec);
// Same from text; nullopt when the text is not a template question or not askable.
std::optional<std::string> oracle_answer(const Scene& scene, const std::string& question);

// The objects a question is about, in scene order: those matching any of its
// descriptions (count_all: every object; count_shape: that shape; left_of: both
// objects; more_color: both colors; ...). For a warm-start reasoning trace, which
// names these objects before it answers.
std::vector<Object> relevant_objects(const Scene& scene, const QuestionSpec& spec);
// "small red circle at (10, 20)"
std::string describe_object(const Object& object);

struct Question {
  QuestionType type = QuestionType::count_all;
  std::string text;
  std::string answer;
};

// Every askable question of the scene with its answer, in all_question_specs() order.
std::vector<Question> askable_questions(const Scene& scene);
std::vector<Question> askable_questions(const Scene& scene, QuestionType type);

// The hallucination slice: query_* answered "none", count_* answered "0", exist "no".
bool is_hallucination(QuestionType type, const std::string& answer);

// The closed answer vocabulary: 0-6, yes, no, the colors, the shapes, small, large, none.
const std::vector<std::string>& answer_vocabulary();
// The answer set the benchmark recipe draws from for each type (spec table).
const std::vector<std::string>& benchmark_answer_set(QuestionType type);

// ---- benchmarks ---------------------------------------------------------------

struct BenchmarkItem {
  std::string id;  // "000123"
  Scene scene;
  Question question;
};

// Item `index` of a benchmark seeded with `seed`, drawn by the spec's recipe with
// Rng::for_item(seed, index): type uniform, then the target answer uniform from the
// type's answer set, then fresh scenes until one has an askable question of that
// type with that answer (picked uniformly among them); after 1000 scenes without one,
// a new target answer is drawn (the type is kept).
BenchmarkItem sample_benchmark_item(uint64_t seed, uint64_t index);
// Items 0..count-1. `progress(done, total)` is called after each item when given.
std::vector<BenchmarkItem> sample_benchmark(uint64_t seed, int64_t count,
                                            void (*progress)(int64_t, int64_t) = nullptr);
// Scene `index` of an unlabeled set seeded with `seed` (sample_scene on Rng::for_item).
Scene sample_pool_scene(uint64_t seed, uint64_t index);

// Zero-padded id: 6 digits (more when index >= 10^6).
std::string item_id(int64_t index);

// Scene <-> JSON text:
// {"objects":[{"shape":"circle","color":"red","size":"small","cx":10,"cy":20},...]}
std::string scene_to_json(const Scene& scene);
// Throws std::runtime_error naming `where` and the field on malformed input or a
// scene that breaks the rules.
Scene scene_from_json(const std::string& json_text, const std::string& where);

}  // namespace visplay::world
