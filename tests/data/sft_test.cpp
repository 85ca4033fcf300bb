// Warm-start targets: every target parses back (question parser, \boxed{} extraction),
// traces agree with the oracle, all tokens are known, sampling is deterministic.
#include "data/sft.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "data/benchmark.h"
#include "model/shapeworld_vocab.h"

namespace visplay::sft {
namespace {

using world::Color;
using world::Object;
using world::QuestionType;
using world::Scene;
using world::Shape;
using world::Size;

Object obj(Shape shape, Color color, Size size, int cx, int cy) {
  Object o;
  o.shape = shape;
  o.color = color;
  o.size = size;
  o.cx = cx;
  o.cy = cy;
  return o;
}

std::string between(const std::string& text, const std::string& open, const std::string& close) {
  size_t a = text.find(open);
  size_t b = text.rfind(close);
  if (a == std::string::npos || b == std::string::npos || b < a + open.size()) return "";
  return text.substr(a + open.size(), b - a - open.size());
}

TEST(Sft, CoarsePositionThirds) {
  // Thirds of 64 columns: 0..21 left, 22..42 center, 43..63 right (same for rows).
  EXPECT_EQ(coarse_position(obj(Shape::circle, Color::red, Size::small, 21, 6)), "top left");
  EXPECT_EQ(coarse_position(obj(Shape::circle, Color::red, Size::small, 22, 22)), "middle center");
  EXPECT_EQ(coarse_position(obj(Shape::circle, Color::red, Size::small, 42, 42)), "middle center");
  EXPECT_EQ(coarse_position(obj(Shape::circle, Color::red, Size::small, 43, 43)), "bottom right");
  EXPECT_EQ(coarse_position(obj(Shape::circle, Color::red, Size::small, 57, 20)), "top right");
}

TEST(Sft, HandWrittenTraces) {
  Scene scene;
  scene.objects = {obj(Shape::circle, Color::red, Size::small, 10, 10),
                   obj(Shape::square, Color::blue, Size::large, 50, 30),
                   obj(Shape::circle, Color::red, Size::large, 30, 50)};
  auto spec = [](const std::string& text) {
    auto q = world::parse_question(text);
    EXPECT_TRUE(q.has_value()) << text;
    return *q;
  };
  EXPECT_EQ(reasoner_target(scene, spec("how many red circles are there?")),
            "<think>red circles: small red circle at top left, large red circle at bottom "
            "center. so 2.</think> \\boxed{2}");
  EXPECT_EQ(reasoner_target(scene, spec("is there a green triangle?")),
            "<think>green triangles: none. so no.</think> \\boxed{no}");
  Scene two = scene;
  two.objects[2].color = Color::green;
  EXPECT_EQ(reasoner_target(two, spec("is the blue square left of the red circle?")),
            "<think>blue square: large blue square at middle right. red circle: small red "
            "circle at top left. so no.</think> \\boxed{no}");
  EXPECT_THROW(reasoner_target(scene, spec("what color is the circle?")), std::runtime_error);
  EXPECT_EQ(reasoner_target(scene, spec("what color is the square?")),
            "<think>square: large blue square at middle right. so blue.</think> \\boxed{blue}");
  EXPECT_EQ(reasoner_target(scene, spec("are there more circles than triangles?")),
            "<think>circles: small red circle at top left, large red circle at bottom center. "
            "triangles: none. so yes.</think> \\boxed{yes}");
  EXPECT_EQ(direct_target("none"), "\\boxed{none}");
  EXPECT_EQ(questioner_target("how many objects are there?"),
            "<question>how many objects are there?</question>");
}

// Scene traces list every object in reading order first, then the question's groups;
// count_all's only group is the scene, listed once.
TEST(Sft, SceneTracesListTheWholeSceneFirst) {
  Scene scene;
  scene.objects = {obj(Shape::circle, Color::red, Size::small, 30, 50),
                   obj(Shape::square, Color::blue, Size::large, 50, 30),
                   obj(Shape::circle, Color::red, Size::small, 10, 10)};
  auto spec = [](const std::string& text) { return *world::parse_question(text); };
  EXPECT_EQ(reasoner_target(scene, spec("how many red circles are there?"), TraceStyle::scene),
            "<think>objects: small red circle at top left, large blue square at middle right, "
            "small red circle at bottom center. red circles: small red circle at top left, "
            "small red circle at bottom center. so 2.</think> \\boxed{2}");
  EXPECT_EQ(reasoner_target(scene, spec("how many objects are there?"), TraceStyle::scene),
            reasoner_target(scene, spec("how many objects are there?"), TraceStyle::groups));
  EXPECT_EQ(reasoner_target(scene, spec("is there a green triangle?"), TraceStyle::scene),
            "<think>objects: small red circle at top left, large blue square at middle right, "
            "small red circle at bottom center. green triangles: none. so no.</think> "
            "\\boxed{no}");
  EXPECT_EQ(parse_trace_style("scene"), TraceStyle::scene);
  EXPECT_EQ(parse_trace_style(trace_style_name(TraceStyle::groups)), TraceStyle::groups);
  EXPECT_THROW(parse_trace_style("objects"), std::runtime_error);
}

TEST(Sft, TraceListsObjectsInReadingOrder) {
  Scene scene;
  scene.objects = {obj(Shape::circle, Color::red, Size::small, 50, 50),
                   obj(Shape::circle, Color::blue, Size::small, 30, 10),
                   obj(Shape::square, Color::red, Size::small, 10, 30),
                   obj(Shape::circle, Color::green, Size::small, 10, 10)};
  auto spec = world::parse_question("how many circles are there?");
  ASSERT_TRUE(spec.has_value());
  EXPECT_EQ(reasoner_target(scene, *spec),
            "<think>circles: small green circle at top left, small blue circle at top center, "
            "small red circle at bottom right. so 3.</think> \\boxed{3}");
}

TEST(Sft, SplitTargetLikeTheWordLevelTokenizer) {
  EXPECT_EQ(split_target("<think>red circles: none. so 0.</think> \\boxed{0}"),
            (std::vector<std::string>{"<think>", "red", "circles", ":", "none", ".", "so", "0", ".",
                                      "</think>", "\\boxed{", "0", "}"}));
}

// Over many sampled examples: questioner targets parse back into askable questions of
// all 12 types; trace and direct targets box the oracle answer; counting traces list
// exactly as many objects as the answer; every token is a known target token.
TEST(Sft, SampledTargetsParseBack) {
  const std::set<std::string> known(target_tokens().begin(), target_tokens().end());
  std::set<QuestionType> questioner_types;
  std::map<Role, int> roles;
  for (uint64_t i = 0; i < 1500; ++i) {
    Example ex = sample_example(77, i);
    roles[ex.role]++;
    for (const std::string& tok : split_target(ex.target)) {
      ASSERT_TRUE(known.count(tok)) << "unknown token '" << tok << "' in " << ex.target;
    }
    ASSERT_TRUE(world::scene_problem(ex.scene).empty());
    if (ex.role == Role::questioner) {
      std::string q = between(ex.target, "<question>", "</question>");
      auto spec = world::parse_question(q);
      ASSERT_TRUE(spec.has_value()) << ex.target;
      EXPECT_EQ(spec->text(), q);  // grammatical: exactly the template wording
      EXPECT_TRUE(world::oracle_answer(ex.scene, *spec).has_value()) << q;
      questioner_types.insert(spec->type);
      continue;
    }
    auto spec = world::parse_question(ex.question);
    ASSERT_TRUE(spec.has_value()) << ex.question;
    std::string oracle = *world::oracle_answer(ex.scene, *spec);
    EXPECT_EQ(ex.answer, oracle);
    auto boxed = extract_boxed(ex.target);
    ASSERT_TRUE(boxed.has_value()) << ex.target;
    EXPECT_EQ(*boxed, oracle) << ex.target;
    if (ex.role == Role::reasoner_direct) {
      EXPECT_EQ(ex.target, "\\boxed{" + oracle + "}");
      continue;
    }
    std::string think = between(ex.target, "<think>", "</think>");
    ASSERT_FALSE(think.empty()) << ex.target;
    EXPECT_NE(think.find(" so " + oracle + "."), std::string::npos) << ex.target;
    bool counting =
        spec->type == QuestionType::count_all || spec->type == QuestionType::count_shape ||
        spec->type == QuestionType::count_color || spec->type == QuestionType::count_both;
    if (counting) {
      int listed = 0;
      for (size_t p = think.find(" at "); p != std::string::npos; p = think.find(" at ", p + 1))
        ++listed;
      EXPECT_EQ(std::to_string(listed), oracle) << ex.target;
    }
  }
  EXPECT_EQ(questioner_types.size(), 12u);
  EXPECT_GT(roles[Role::questioner], 200);
  EXPECT_GT(roles[Role::reasoner_trace], 700);
  EXPECT_GT(roles[Role::reasoner_direct], 200);
}

TEST(Sft, DeterministicInSeedAndIndex) {
  for (uint64_t i = 0; i < 20; ++i) {
    Example a = sample_example(5, i), b = sample_example(5, i);
    EXPECT_EQ(a.target, b.target);
    EXPECT_EQ(a.scene, b.scene);
    EXPECT_EQ(a.question, b.question);
  }
  int differ = 0;
  for (uint64_t i = 0; i < 20; ++i)
    differ += sample_example(5, i).target != sample_example(6, i).target;
  EXPECT_GT(differ, 10);
}

TEST(Sft, BadMixIsAnError) {
  ExampleMix mix{0, 0, 0};
  EXPECT_THROW(sample_example(1, 0, mix), std::runtime_error);
}

}  // namespace
}  // namespace visplay::sft

namespace visplay::sft {
namespace {

// Every target token is a word of the ShapeWorld vocabulary (never <unk>), and targets are
// in the tokenizer's canonical spelling: decode(encode(t)) == t.
TEST(Sft, TargetsRoundTripThroughTheShapeWorldTokenizer) {
  auto tokenizer = make_shapeworld_tokenizer();
  const int32_t unk = tokenizer->special_ids().unk;
  ASSERT_GE(unk, 0);
  for (const std::string& tok : target_tokens()) {
    EXPECT_GE(tokenizer->token_to_id(tok), 0) << "missing from the vocabulary: '" << tok << "'";
  }
  size_t longest_scene_trace = 0;
  for (TraceStyle style : {TraceStyle::groups, TraceStyle::scene}) {
    for (uint64_t i = 0; i < 400; ++i) {
      Example ex = sample_example(3, i, ExampleMix{}, style);
      std::vector<int32_t> ids = tokenizer->encode(ex.target);
      for (int32_t id : ids) ASSERT_NE(id, unk) << ex.target;
      EXPECT_EQ(ids.size(), split_target(ex.target).size()) << ex.target;
      EXPECT_EQ(tokenizer->decode(ids), ex.target);
      if (style == TraceStyle::scene)
        longest_scene_trace = std::max(longest_scene_trace, ids.size());
    }
  }
  // rl::kSceneTraceMaxNewTokens (128) must hold the longest scene target and its end token.
  EXPECT_GT(longest_scene_trace, 60u);
  EXPECT_LT(longest_scene_trace, 128u);
}

}  // namespace
}  // namespace visplay::sft
