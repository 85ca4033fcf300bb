// Word-level tokenizer and the ShapeWorld vocabulary: canonical round trips over every
// question the ShapeWorld templates can produce, the spacing rule, stable ids, unknown
// words and bad files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "model/shapeworld_vocab.h"
#include "model/tokenizer.h"

namespace visplay {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

const Tokenizer& sw() {
  static std::unique_ptr<Tokenizer> t = make_shapeworld_tokenizer();
  return *t;
}

// Token strings -> ids through token_to_id, failing loudly on a missing one.
std::vector<int32_t> ids_of(const std::vector<std::string>& tokens) {
  std::vector<int32_t> ids;
  for (const std::string& t : tokens) {
    int32_t id = sw().token_to_id(t);
    EXPECT_GE(id, 0) << "missing token " << json(t).dump();
    ids.push_back(id);
  }
  return ids;
}

// Every question of shapeworld.md's templates, written out here from the spec.
std::vector<std::string> all_questions() {
  const std::vector<std::string> colors = {"red", "green", "blue", "yellow", "purple", "gray"};
  const std::vector<std::string> shapes = {"circle", "square", "triangle"};
  std::vector<std::string> q;
  q.push_back("how many objects are there?");
  for (const auto& s : shapes) {
    q.push_back("how many " + s + "s are there?");
    q.push_back("what color is the " + s + "?");
    for (const auto& s2 : shapes) {
      if (s2 != s) q.push_back("are there more " + s + "s than " + s2 + "s?");
    }
  }
  for (const auto& c : colors) {
    q.push_back("how many " + c + " objects are there?");
    q.push_back("what shape is the " + c + " object?");
    for (const auto& c2 : colors) {
      if (c2 != c) q.push_back("are there more " + c + " objects than " + c2 + " objects?");
    }
    for (const auto& s : shapes) {
      q.push_back("how many " + c + " " + s + "s are there?");
      q.push_back("is there a " + c + " " + s + "?");
      q.push_back("what size is the " + c + " " + s + "?");
      q.push_back("is the " + c + " " + s + " left of the blue circle?");
      q.push_back("is the " + c + " " + s + " above the gray triangle?");
    }
  }
  return q;
}

TEST(TokenizerWordLevel, EveryShapeWorldQuestionRoundTripsWithoutUnk) {
  const int32_t unk = sw().special_ids().unk;
  ASSERT_GE(unk, 0);
  std::vector<std::string> questions = all_questions();
  ASSERT_EQ(questions.size(), 145u);  // 1 + 3 * 4 + 6 * 22
  for (const std::string& q : questions) {
    std::vector<int32_t> ids = sw().encode(q);
    for (int32_t id : ids) EXPECT_NE(id, unk) << q;
    EXPECT_EQ(sw().decode(ids), q);
  }
  const char* answers[] = {"0",    "1",      "2",      "3",        "4",     "5",      "6",
                           "yes",  "no",     "red",    "green",    "blue",  "yellow", "purple",
                           "gray", "circle", "square", "triangle", "small", "large",  "none"};
  for (const char* a : answers) {
    std::string reply = std::string("the answer is \\boxed{") + a + "}.";
    std::vector<int32_t> ids = sw().encode(reply);
    EXPECT_EQ(ids, ids_of({"the", "answer", "is", "\\boxed{", a, "}", "."}));
    EXPECT_EQ(sw().decode(ids), reply);
  }
}

TEST(TokenizerWordLevel, ExactTokens) {
  EXPECT_EQ(sw().encode("\\boxed{2}"), ids_of({"\\boxed{", "2", "}"}));
  EXPECT_EQ(sw().encode("how many red circles are there?"),
            ids_of({"how", "many", "red", "circles", "are", "there", "?"}));
  EXPECT_EQ(sw().encode("<question>is there a red square?</question>"),
            ids_of({"<question>", "is", "there", "a", "red", "square", "?", "</question>"}));
  EXPECT_EQ(sw().encode("<type>count_both</type>"), ids_of({"<type>", "count_both", "</type>"}));
  // Added tokens are found inside words too, before any splitting.
  EXPECT_EQ(sw().encode("yes<|im_end|>no"), ids_of({"yes", "<|im_end|>", "no"}));
  EXPECT_EQ(sw().encode(""), std::vector<int32_t>{});
  EXPECT_EQ(sw().encode(" \t "), std::vector<int32_t>{});
}

// A whole chat prompt with image placeholders and a reasoning trace, in canonical form.
TEST(TokenizerWordLevel, ChatPromptRoundTrips) {
  std::string image;
  for (int i = 0; i < 16; ++i) image += "<|image_pad|>";
  std::string prompt =
      "<|im_start|>system\nyou are a helpful assistant. think step by step, then put the "
      "final answer inside \\boxed{}.<|im_end|>\n<|im_start|>user\n<|vision_start|>" +
      image +
      "<|vision_end|><question>how many red circles are there?</question><|im_end|>\n"
      "<|im_start|>assistant\n<think>i see a red circle at x = 12, y = 30 and a red circle at "
      "(40, 7). so there are 2 red circles.</think> the answer is \\boxed{2}.<|im_end|>";
  std::vector<int32_t> ids = sw().encode(prompt);
  EXPECT_EQ(sw().decode(ids), prompt);
  int pads = 0;
  for (int32_t id : ids) {
    EXPECT_NE(id, sw().special_ids().unk) << sw().id_to_token(id);
    pads += id == sw().special_ids().image_pad;
  }
  EXPECT_EQ(pads, 16);
}

// Non-canonical spacing comes back canonical; unknown words become <unk>.
TEST(TokenizerWordLevel, SpacingRuleAndUnknownWords) {
  EXPECT_EQ(sw().decode(sw().encode("  how   many\tobjects ?\n")), "how many objects?\n");
  EXPECT_EQ(sw().decode(sw().encode("x=12 ,y=3")), "x = 12, y = 3");
  EXPECT_EQ(sw().decode(sw().encode("\\boxed{ yes } .")), "\\boxed{yes}.");
  EXPECT_EQ(sw().decode(sw().encode("<think> i see </think>")), "<think>i see</think>");
  std::vector<int32_t> ids = sw().encode("how many zebras are there?");
  EXPECT_EQ(ids, ids_of({"how", "many", "<unk>", "are", "there", "?"}));
  EXPECT_EQ(sw().decode(ids), "how many <unk> are there?");
  // Upper case is not in the vocabulary.
  EXPECT_EQ(sw().encode("How"), ids_of({"<unk>"}));
}

// Any id sequence decodes to a text that encodes back to the same ids.
TEST(TokenizerWordLevel, RandomIdSequencesSurviveDecodeEncode) {
  std::mt19937 rng(2024);
  const int32_t n = sw().vocab_size();
  for (int trial = 0; trial < 2000; ++trial) {
    std::vector<int32_t> ids(1 + rng() % 30);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng() % n);
    std::string text = sw().decode(ids);
    ASSERT_EQ(sw().encode(text), ids) << "text: " << json(text).dump();
  }
}

// Ids are a contract with checkpoints: these were fixed when the vocabulary was made
// (v1) and must never change. Counted by hand from the table's layout.
TEST(TokenizerWordLevel, ShapeWorldIdsAreStable) {
  const std::vector<std::string> v1_added = {"<|pad|>",
                                             "<|endoftext|>",
                                             "<|im_start|>",
                                             "<|im_end|>",
                                             "<|vision_start|>",
                                             "<|image_pad|>",
                                             "<|vision_end|>",
                                             "<unk>",
                                             "\n",
                                             "<question>",
                                             "</question>",
                                             "<type>",
                                             "</type>",
                                             "<think>",
                                             "</think>",
                                             "\\boxed{",
                                             "}",
                                             "<answer>",
                                             "</answer>"};
  for (size_t id = 0; id < v1_added.size(); ++id) {
    EXPECT_EQ(sw().id_to_token(static_cast<int32_t>(id)), v1_added[id]) << id;
  }
  EXPECT_EQ(sw().token_to_id("0"), 19);
  EXPECT_EQ(sw().token_to_id("6"), 25);
  EXPECT_EQ(sw().token_to_id("64"), 83);
  EXPECT_EQ(sw().token_to_id("?"), 84);
  EXPECT_EQ(sw().token_to_id("\""), 100);
  const std::vector<std::string> v1_answers = {"yes",      "no",     "red",   "green",  "blue",
                                               "yellow",   "purple", "gray",  "circle", "square",
                                               "triangle", "small",  "large", "none"};
  for (size_t i = 0; i < v1_answers.size(); ++i) {
    EXPECT_EQ(sw().token_to_id(v1_answers[i]), 101 + static_cast<int32_t>(i)) << v1_answers[i];
  }
  EXPECT_EQ(sw().token_to_id("circles"), 115);
  EXPECT_GE(sw().vocab_size(), 277);
  EXPECT_LE(sw().vocab_size(), 1000);

  const SpecialTokenIds& s = sw().special_ids();
  EXPECT_EQ(s.pad, 0);
  EXPECT_EQ(s.eos, 1);
  EXPECT_EQ(s.im_start, 2);
  EXPECT_EQ(s.im_end, 3);
  EXPECT_EQ(s.vision_start, 4);
  EXPECT_EQ(s.image_pad, 5);
  EXPECT_EQ(s.vision_end, 6);
  EXPECT_EQ(s.unk, 7);
  EXPECT_EQ(s.bos, -1);
  EXPECT_TRUE(sw().is_special(5));
  EXPECT_FALSE(sw().is_special(15));  // \boxed{ is markup, not special
  EXPECT_FALSE(sw().is_special(101));
  EXPECT_EQ(sw().kind(), "word_level");

  // The table and the tokenizer agree everywhere.
  auto table = shapeworld_vocab();
  ASSERT_EQ(static_cast<int32_t>(table.size()), sw().vocab_size());
  for (size_t id = 0; id < table.size(); ++id) {
    EXPECT_EQ(sw().token_to_id(table[id].text), static_cast<int32_t>(id));
  }
}

std::string temp_dir() {
  fs::path dir = fs::temp_directory_path() / ("visplay_wl_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return dir.string();
}

TEST(TokenizerWordLevel, WrittenFileLoadsTheSame) {
  std::string dir = temp_dir();
  write_shapeworld_tokenizer_json(dir + "/tokenizer.json");
  std::string text = "<|im_start|>user\n<question>is there a blue square?</question><|im_end|>";
  for (const std::string& path : {dir, dir + "/tokenizer.json"}) {
    auto t = load_tokenizer(path);
    EXPECT_EQ(t->kind(), "word_level");
    EXPECT_EQ(t->encode(text), sw().encode(text));
    EXPECT_EQ(t->vocab_size(), sw().vocab_size());
  }
  fs::remove_all(dir);
}

std::string tiny_word_level(const json& model_patch, const json& pre_tokenizer) {
  json root = {{"added_tokens", json::array()},
               {"normalizer", nullptr},
               {"pre_tokenizer", pre_tokenizer},
               {"model",
                {{"type", "WordLevel"},
                 {"vocab", {{"hello", 0}, {"world", 1}, {"!", 2}, {"[UNK]", 3}}},
                 {"unk_token", "[UNK]"}}}};
  root["model"].update(model_patch);
  return root.dump();
}

TEST(TokenizerWordLevel, HandMadeFilesAndErrors) {
  json split = {{"type", "WhitespaceSplit"}};
  auto plain = load_tokenizer_from_json(tiny_word_level(json::object(), split), "tiny.json");
  // Without a Punctuation step "world!" is one (unknown) word.
  EXPECT_EQ(plain->encode("hello world!"), std::vector<int32_t>({0, 3}));
  json both = {{"type", "Sequence"},
               {"pretokenizers", json::array({split, {{"type", "Punctuation"}}})}};
  auto punct = load_tokenizer_from_json(tiny_word_level(json::object(), both), "tiny.json");
  EXPECT_EQ(punct->encode("hello world!"), std::vector<int32_t>({0, 1, 2}));
  EXPECT_EQ(punct->decode(std::vector<int32_t>{0, 1, 2}), "hello world!");

  try {
    load_tokenizer_from_json(tiny_word_level({{"unk_token", "<nope>"}}, split), "bad-unk.json");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("bad-unk.json"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("<nope>"), std::string::npos) << e.what();
  }
  auto no_unk =
      load_tokenizer_from_json(tiny_word_level({{"unk_token", nullptr}}, split), "no-unk.json");
  EXPECT_EQ(no_unk->encode("world hello"), std::vector<int32_t>({1, 0}));
  try {
    no_unk->encode("hello zebra");
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("zebra"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_tokenizer_from_json(tiny_word_level(json::object(), {{"type", "Metaspace"}}),
                                        "metaspace.json"),
               std::runtime_error);
  EXPECT_THROW(
      load_tokenizer_from_json(tiny_word_level({{"vocab", json::object()}}, split), "empty.json"),
      std::runtime_error);
  EXPECT_THROW(plain->decode(std::vector<int32_t>{0, 4}), std::out_of_range);
}

}  // namespace
}  // namespace visplay
