// Supervised warm-start targets for the two VisPlay roles on ShapeWorld, written by
// the oracle (docs/warmstart.md):
//
//   questioner       <question>how many red circles are there?</question>
//   reasoner, trace  <think>red circles: small red circle at top left, large red circle
//                    at bottom right. so 2.</think> \boxed{2}
//   reasoner, direct \boxed{2}
//
// The trace enumerates what the question is about, group by group (each group is a
// noun phrase followed by the objects it matches, or "none"), then concludes. The
// answer follows from the enumeration (count the list, read the attribute, compare
// columns), so a sampled trace that sees one object more or less reaches another
// answer: voting over sampled traces is more than repeating greedy decoding.
//
// Every target is written in the word-level tokenizer's canonical spelling (the one
// its decode() produces: one space between words, none after an opening tag or
// "\boxed{", none before punctuation or a closing tag), so decode(encode(t)) == t.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/shapeworld.h"

namespace visplay::sft {

// Coarse position of an object on the 3 x 3 grid of the canvas:
// "{top|middle|bottom} {left|center|right}" (c * 3 / 64: 0..21, 22..42, 43..63).
std::string coarse_position(const world::Object& object);
// "small red circle at top left"
std::string object_phrase(const world::Object& object);

// One group of the trace: a noun phrase and the objects it matches.
struct TraceGroup {
  std::string name;  // "red circles", "circle", "objects"
  std::vector<world::Object> objects;
};
// The groups a question's trace lists, in question order (left_of: the first object
// then the second; more_shape: the first shape then the second). Within a group the
// objects are in reading order (by cy, then cx), never in the invisible scene order.
std::vector<TraceGroup> trace_groups(const world::Scene& scene, const world::QuestionSpec& spec);

// What a step-by-step trace lists before it concludes.
//   groups: the question's groups only      <think>red circles: small red circle at top
//                                            left. so 1.</think>
//   scene:  every object first (reading order), then the question's groups (count_all's
//           only group is the scene itself, so it is not repeated)
//           <think>objects: small red circle at top left, large blue square at middle
//           center. red circles: small red circle at top left. so 1.</think>
// The scene trace makes every answer a function of one sampled description of the whole
// image, so votes over sampled traces vote over descriptions (longer: up to ~100 tokens).
enum class TraceStyle : uint8_t { groups, scene };
const char* trace_style_name(TraceStyle style);
// "groups" / "scene"; throws naming the value otherwise.
TraceStyle parse_trace_style(const std::string& name);

// "<think>red circles: small red circle at top left. so 1.</think>"
std::string reasoning_trace(const world::Scene& scene, const world::QuestionSpec& spec,
                            const std::string& answer, TraceStyle style = TraceStyle::groups);
// The step-by-step reasoner target: trace, a space, "\boxed{answer}". Throws when the
// question is not askable on the scene (naming the question).
std::string reasoner_target(const world::Scene& scene, const world::QuestionSpec& spec,
                            TraceStyle style = TraceStyle::groups);
// The direct-mode reasoner target: "\boxed{answer}".
std::string direct_target(const std::string& answer);
// The questioner target: "<question>{question text}</question>".
std::string questioner_target(const std::string& question);

// A question for the questioner to learn: the type uniform among the types askable on
// the scene, then uniform among that type's askable questions. Every scene has some
// (count_all is always askable).
world::Question sample_question(const world::Scene& scene, world::Rng& rng);

// One supervised example: the image's scene, the role's prompt text slot and target.
enum class Role : uint8_t { questioner, reasoner_trace, reasoner_direct };
const char* role_name(Role role);

struct Example {
  Role role = Role::questioner;
  world::Scene scene;
  std::string question;  // the question in the prompt (empty for the questioner)
  std::string answer;    // oracle answer (reasoner roles), for validation
  world::QuestionType type = world::QuestionType::count_all;
  std::string target;  // the response, without the end-of-turn token
};

// Mix of roles in a training set (shares, normalised by their sum).
struct ExampleMix {
  double questioner = 0.2;
  double reasoner_trace = 0.6;
  double reasoner_direct = 0.2;
};

// Example `index` of a training set seeded with `seed`: a role drawn by the mix; for
// reasoner roles a question drawn by the benchmark recipe (types uniform, answers
// balanced within each type: the same balance the tests measure), for the questioner a
// fresh scene and sample_question on it. Deterministic in (seed, index).
Example sample_example(uint64_t seed, uint64_t index, const ExampleMix& mix = {},
                       TraceStyle style = TraceStyle::groups);

// Every token any target can contain, in a fixed order: the tag tokens, then words
// and punctuation (for checking them against a vocabulary).
const std::vector<std::string>& target_tokens();
// Splits a canonical target into tokens the way the word-level tokenizer does:
// the tag tokens whole, then whitespace, then each ASCII punctuation mark alone.
std::vector<std::string> split_target(const std::string& target);

}  // namespace visplay::sft
