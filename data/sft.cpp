// Warm-start targets from the ShapeWorld oracle (see data/sft.h for the format).
#include "data/sft.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <stdexcept>

namespace visplay::sft {

using world::Color;
using world::Object;
using world::QuestionSpec;
using world::QuestionType;
using world::Scene;
using world::Shape;

namespace {

// Thirds of the 64-pixel canvas: 0..21, 22..42, 43..63.
int third(int coordinate) { return coordinate * 3 / world::kCanvasSize; }

bool matches(const Object& o, const Color* color, const Shape* shape) {
  return (!color || o.color == *color) && (!shape || o.shape == *shape);
}

TraceGroup make_group(const Scene& scene, std::string name, const Color* color,
                      const Shape* shape) {
  TraceGroup group{std::move(name), {}};
  for (const Object& o : scene.objects)
    if (matches(o, color, shape)) group.objects.push_back(o);
  // Reading order (top to bottom, then left to right): an order the model can see. Scene
  // order is the sampler's and invisible, which would make every listed item a guess.
  std::stable_sort(
      group.objects.begin(), group.objects.end(),
      [](const Object& a, const Object& b) { return a.cy != b.cy ? a.cy < b.cy : a.cx < b.cx; });
  return group;
}

std::string color_shape(Color c, Shape s) {
  return std::string(world::color_name(c)) + " " + world::shape_name(s);
}
std::string color_shapes(Color c, Shape s) {
  return std::string(world::color_name(c)) + " " + world::shape_plural(s);
}

// Tags the tokenizer keeps whole (added tokens of the ShapeWorld vocabulary).
const std::vector<std::string>& tag_tokens() {
  static const std::vector<std::string> tags = {"<question>", "</question>", "<think>", "</think>",
                                                "\\boxed{"};
  return tags;
}

}  // namespace

std::string coarse_position(const Object& o) {
  static const char* rows[] = {"top", "middle", "bottom"};
  static const char* cols[] = {"left", "center", "right"};
  return std::string(rows[third(o.cy)]) + " " + cols[third(o.cx)];
}

std::string object_phrase(const Object& o) {
  return std::string(world::size_name(o.size)) + " " + world::color_name(o.color) + " " +
         world::shape_name(o.shape) + " at " + coarse_position(o);
}

// Which noun phrases a question's trace lists. Plural names for groups that may hold
// several objects (counts, existence, comparisons), singular where the question
// presumes at most one (query_*, left_of, above).
std::vector<TraceGroup> trace_groups(const Scene& scene, const QuestionSpec& q) {
  switch (q.type) {
    case QuestionType::count_all:
      return {make_group(scene, "objects", nullptr, nullptr)};
    case QuestionType::count_shape:
      return {make_group(scene, world::shape_plural(q.shape1), nullptr, &q.shape1)};
    case QuestionType::count_color:
      return {make_group(scene, std::string(world::color_name(q.color1)) + " objects", &q.color1,
                         nullptr)};
    case QuestionType::count_both:
    case QuestionType::exist:
      return {make_group(scene, color_shapes(q.color1, q.shape1), &q.color1, &q.shape1)};
    case QuestionType::query_color:
      return {make_group(scene, world::shape_name(q.shape1), nullptr, &q.shape1)};
    case QuestionType::query_shape:
      return {make_group(scene, std::string(world::color_name(q.color1)) + " object", &q.color1,
                         nullptr)};
    case QuestionType::query_size:
      return {make_group(scene, color_shape(q.color1, q.shape1), &q.color1, &q.shape1)};
    case QuestionType::left_of:
    case QuestionType::above:
      return {make_group(scene, color_shape(q.color1, q.shape1), &q.color1, &q.shape1),
              make_group(scene, color_shape(q.color2, q.shape2), &q.color2, &q.shape2)};
    case QuestionType::more_shape:
      return {make_group(scene, world::shape_plural(q.shape1), nullptr, &q.shape1),
              make_group(scene, world::shape_plural(q.shape2), nullptr, &q.shape2)};
    case QuestionType::more_color:
      return {make_group(scene, std::string(world::color_name(q.color1)) + " objects", &q.color1,
                         nullptr),
              make_group(scene, std::string(world::color_name(q.color2)) + " objects", &q.color2,
                         nullptr)};
  }
  throw std::logic_error("trace_groups: unknown question type");
}

const char* trace_style_name(TraceStyle style) {
  return style == TraceStyle::scene ? "scene" : "groups";
}

TraceStyle parse_trace_style(const std::string& name) {
  if (name == "groups") return TraceStyle::groups;
  if (name == "scene") return TraceStyle::scene;
  throw std::runtime_error("trace style \"" + name + "\": expected \"groups\" or \"scene\"");
}

std::string reasoning_trace(const Scene& scene, const QuestionSpec& spec, const std::string& answer,
                            TraceStyle style) {
  std::vector<TraceGroup> groups = trace_groups(scene, spec);
  if (style == TraceStyle::scene && spec.type != QuestionType::count_all) {
    groups.insert(groups.begin(), make_group(scene, "objects", nullptr, nullptr));
  }
  std::string text = "<think>";
  bool first_group = true;
  for (const TraceGroup& group : groups) {
    if (!first_group) text += " ";
    first_group = false;
    text += group.name + ":";
    if (group.objects.empty()) text += " none";
    for (size_t i = 0; i < group.objects.size(); ++i) {
      text += (i ? ", " : " ") + object_phrase(group.objects[i]);
    }
    text += ".";
  }
  text += " so " + answer + ".</think>";
  return text;
}

std::string reasoner_target(const Scene& scene, const QuestionSpec& spec, TraceStyle style) {
  std::optional<std::string> answer = world::oracle_answer(scene, spec);
  if (!answer) {
    throw std::runtime_error("reasoner_target: question \"" + spec.text() +
                             "\" is not askable on the scene " + world::scene_to_json(scene));
  }
  return reasoning_trace(scene, spec, *answer, style) + " " + direct_target(*answer);
}

std::string direct_target(const std::string& answer) { return "\\boxed{" + answer + "}"; }

std::string questioner_target(const std::string& question) {
  return "<question>" + question + "</question>";
}

world::Question sample_question(const Scene& scene, world::Rng& rng) {
  std::vector<std::vector<world::Question>> by_type;
  for (int t = 0; t < world::kNumQuestionTypes; ++t) {
    auto questions = world::askable_questions(scene, static_cast<QuestionType>(t));
    if (!questions.empty()) by_type.push_back(std::move(questions));
  }
  if (by_type.empty()) throw std::runtime_error("sample_question: scene has no askable question");
  const auto& pool = by_type[rng.below(by_type.size())];
  return pool[rng.below(pool.size())];
}

const char* role_name(Role role) {
  switch (role) {
    case Role::questioner:
      return "questioner";
    case Role::reasoner_trace:
      return "reasoner_trace";
    case Role::reasoner_direct:
      return "reasoner_direct";
  }
  return "?";
}

Example sample_example(uint64_t seed, uint64_t index, const ExampleMix& mix, TraceStyle style) {
  double total = mix.questioner + mix.reasoner_trace + mix.reasoner_direct;
  if (!(total > 0) || mix.questioner < 0 || mix.reasoner_trace < 0 || mix.reasoner_direct < 0) {
    throw std::runtime_error("sample_example: role shares must be >= 0 with a positive sum");
  }
  world::Rng rng = world::Rng::for_item(seed ^ 0x5f7a11e5ULL, index);
  // A uniform double in [0, total) from 53 random bits.
  double u = static_cast<double>(rng.next() >> 11) * 0x1.0p-53 * total;
  Example ex;
  if (u < mix.questioner) {
    ex.role = Role::questioner;
    ex.scene = world::sample_scene(rng);
    world::Question q = sample_question(ex.scene, rng);
    ex.type = q.type;
    ex.target = questioner_target(q.text);
    return ex;
  }
  ex.role = u < mix.questioner + mix.reasoner_trace ? Role::reasoner_trace : Role::reasoner_direct;
  world::BenchmarkItem item = world::sample_benchmark_item(seed, index);
  ex.scene = item.scene;
  ex.question = item.question.text;
  ex.answer = item.question.answer;
  ex.type = item.question.type;
  if (ex.role == Role::reasoner_trace) {
    ex.target = reasoner_target(ex.scene, *world::parse_question(ex.question), style);
  } else {
    ex.target = direct_target(ex.answer);
  }
  return ex;
}

std::vector<std::string> split_target(const std::string& target) {
  std::vector<std::string> tokens;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) tokens.push_back(word);
    word.clear();
  };
  size_t i = 0;
  while (i < target.size()) {
    bool tag = false;
    for (const std::string& t : tag_tokens()) {
      if (target.compare(i, t.size(), t) == 0) {
        flush();
        tokens.push_back(t);
        i += t.size();
        tag = true;
        break;
      }
    }
    if (tag) continue;
    unsigned char c = static_cast<unsigned char>(target[i]);
    if (std::isspace(c)) {
      flush();
    } else if (c < 0x80 && std::ispunct(c) && c != '_') {
      flush();
      tokens.push_back(std::string(1, static_cast<char>(c)));
    } else {
      word.push_back(static_cast<char>(c));
    }
    ++i;
  }
  flush();
  return tokens;
}

const std::vector<std::string>& target_tokens() {
  static const std::vector<std::string> tokens = [] {
    std::vector<std::string> out = tag_tokens();
    std::set<std::string> seen(out.begin(), out.end());
    auto add_text = [&](const std::string& text) {
      for (const std::string& t : split_target(text))
        if (seen.insert(t).second) out.push_back(t);
    };
    for (const QuestionSpec& spec : world::all_question_specs()) add_text(spec.text());
    for (const std::string& a : world::answer_vocabulary()) add_text(a);
    add_text("objects object : , . so } at none");
    add_text("top middle bottom left center right");
    for (int s = 0; s < world::kNumShapes; ++s) {
      add_text(world::shape_name(static_cast<Shape>(s)));
      add_text(world::shape_plural(static_cast<Shape>(s)));
    }
    for (int s = 0; s < world::kNumSizes; ++s)
      add_text(world::size_name(static_cast<world::Size>(s)));
    return out;
  }();
  return tokens;
}

}  // namespace visplay::sft
