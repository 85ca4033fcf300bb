// Chat template and role prompts: ids equal the tokenizer's encoding of the rendered text,
// the image-pad run has the requested length, the ShapeWorld texts are the agreed ones, and
// missing special tokens are reported.
#include "rl/roles.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/shapeworld.h"
#include "model/shapeworld_vocab.h"
#include "rl/answer.h"

namespace visplay::rl {
namespace {

// A small word-level vocabulary with the chat and vision specials, built here so the test
// does not depend on the shipped ShapeWorld vocabulary.
std::unique_ptr<Tokenizer> make_word_tokenizer(bool with_image_pad = true) {
  nlohmann::json vocab = nlohmann::json::object();
  std::vector<std::string> words = {
      "[UNK]", "user",  "assistant", "ask",      "a",      "question",   "about",
      "the",   "image", ".",         ":",        "answer", "directly",   "reason",
      "step",  "by",    "how",       "many",     "red",    "circles",    "are",
      "there", "?",     "2",         "\\boxed{", "}",      "<question>", "</question>"};
  std::vector<std::string> specials = {"<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                       "<|vision_end|>"};
  if (with_image_pad) specials.push_back("<|image_pad|>");
  int id = 0;
  for (const auto& w : words) vocab[w] = id++;
  nlohmann::json added = nlohmann::json::array();
  for (const auto& s : specials) {
    vocab[s] = id;
    added.push_back({{"id", id}, {"content", s}, {"special", true}});
    ++id;
  }
  for (const char* tag : {"\\boxed{", "<question>", "</question>"}) {
    added.push_back({{"id", vocab[tag]}, {"content", tag}, {"special", false}});
  }
  nlohmann::json root = {
      {"model", {{"type", "WordLevel"}, {"vocab", vocab}, {"unk_token", "[UNK]"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         nlohmann::json::array({{{"type", "WhitespaceSplit"}},
                                {{"type", "Punctuation"}, {"behavior", "Isolated"}}})}}},
      {"added_tokens", added}};
  return load_tokenizer_from_json(root.dump(), "test-word-level");
}

std::vector<int64_t> widen(const std::vector<int32_t>& ids) {
  return std::vector<int64_t>(ids.begin(), ids.end());
}

TEST(Roles, ShapeWorldPromptMatchesTemplate) {
  auto tok = make_word_tokenizer();
  ChatFormat fmt = ChatFormat::shapeworld();
  PromptConfig prompts = shapeworld_prompts();
  const int64_t n = 7;
  std::string text = render_prompt_text(fmt, n, prompts.questioner);
  std::string expected = "<|im_start|> user <|vision_start|> ";
  for (int i = 0; i < n; ++i) expected += "<|image_pad|> ";
  expected += "<|vision_end|> ask a question about the image . <|im_end|> <|im_start|> assistant";
  EXPECT_EQ(text, expected);

  std::vector<int64_t> ids = build_questioner_prompt(fmt, *tok, n, prompts);
  EXPECT_EQ(ids, widen(tok->encode(text)));
  const auto& sp = tok->special_ids();
  int64_t pads = std::count(ids.begin(), ids.end(), static_cast<int64_t>(sp.image_pad));
  EXPECT_EQ(pads, n);
  EXPECT_EQ(ids.front(), sp.im_start);
  EXPECT_EQ(ids.back(), tok->token_to_id("assistant"));
  // No word fell back to unk.
  EXPECT_EQ(std::count(ids.begin(), ids.end(), static_cast<int64_t>(sp.unk)), 0);
}

TEST(Roles, ReasonerModesUseTheirTemplates) {
  auto tok = make_word_tokenizer();
  ChatFormat fmt = ChatFormat::shapeworld();
  PromptConfig prompts = shapeworld_prompts();
  const std::string q = "how many red circles are there?";
  EXPECT_EQ(reasoner_prompt_text(prompts, ReasonerMode::direct, q),
            "question : how many red circles are there? answer directly .");
  EXPECT_EQ(reasoner_prompt_text(prompts, ReasonerMode::vote, q),
            "question : how many red circles are there? reason step by step .");
  EXPECT_EQ(reasoner_prompt_text(prompts, ReasonerMode::train, q),
            "question : how many red circles are there? reason step by step .");
  for (ReasonerMode mode : {ReasonerMode::direct, ReasonerMode::vote, ReasonerMode::train}) {
    std::vector<int64_t> ids = build_reasoner_prompt(fmt, *tok, 3, q, mode, prompts);
    EXPECT_EQ(
        ids,
        widen(tok->encode(render_prompt_text(fmt, 3, reasoner_prompt_text(prompts, mode, q)))));
    EXPECT_EQ(std::count(ids.begin(), ids.end(), static_cast<int64_t>(tok->special_ids().unk)), 0);
  }
  PromptConfig broken = prompts;
  broken.reasoner_vote = "no placeholder";
  EXPECT_THROW(reasoner_prompt_text(broken, ReasonerMode::vote, q), std::runtime_error);
}

TEST(Roles, QwenTemplateText) {
  std::string text = render_prompt_text(ChatFormat::qwen(), 2, "Hi?");
  EXPECT_EQ(text,
            "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
            "<|vision_start|><|image_pad|><|image_pad|><|vision_end|>Hi?<|im_end|>\n"
            "<|im_start|>assistant\n");
  EXPECT_EQ(ChatFormat::from_name("qwen").after_text, ChatFormat::qwen().after_text);
  EXPECT_THROW(ChatFormat::from_name("llama"), std::runtime_error);
}

TEST(Roles, ResponsesRoundTripThroughParsers) {
  auto tok = make_word_tokenizer();
  ChatFormat fmt = ChatFormat::shapeworld();
  std::string qtext = format_questioner_response(fmt, "how many red circles are there?");
  std::vector<int64_t> ids = encode_response(*tok, qtext);
  EXPECT_EQ(ids.back(), stop_token_id(*tok));
  std::string decoded = decode_response(*tok, ids);
  ParsedQuestion parsed = parse_questioner_output(decoded);
  ASSERT_TRUE(parsed.valid) << decoded;
  EXPECT_EQ(parsed.question, "how many red circles are there?");

  std::string rtext = format_reasoner_response(fmt, "", "2");
  std::string rdecoded = decode_response(*tok, encode_response(*tok, rtext));
  auto boxed = extract_boxed(rdecoded);
  ASSERT_TRUE(boxed.has_value()) << rdecoded;
  EXPECT_EQ(*boxed, "2");
}

TEST(Roles, MissingSpecialTokenIsAnError) {
  auto tok = make_word_tokenizer(/*with_image_pad=*/false);
  try {
    build_prompt(ChatFormat::shapeworld(), *tok, 4, "ask");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("<|image_pad|>"), std::string::npos) << e.what();
  }
  auto ok = make_word_tokenizer();
  EXPECT_THROW(build_prompt(ChatFormat::shapeworld(), *ok, -1, "ask"), std::runtime_error);
}

}  // namespace
}  // namespace visplay::rl

namespace visplay::rl {
namespace {

// The Qwen2 BPE vocabulary: inserting the pad run as ids equals encoding the whole text.
TEST(Roles, QwenPromptIdsEqualEncodedText) {
  std::unique_ptr<Tokenizer> tok;
  try {
    tok = load_tokenizer(std::string(VISPLAY_SHARED_DIR) + "/tokenizers/qwen2");
  } catch (const std::exception& e) {
    GTEST_SKIP() << "no Qwen2 tokenizer: " << e.what();
  }
  ChatFormat fmt = ChatFormat::for_tokenizer(*tok);
  EXPECT_EQ(fmt.name, "qwen");
  PromptConfig prompts;  // the paper-style English defaults
  std::vector<int64_t> ids = build_reasoner_prompt(fmt, *tok, 5, "Is the cat left of the dog?",
                                                   ReasonerMode::train, prompts);
  std::string text = render_prompt_text(
      fmt, 5, reasoner_prompt_text(prompts, ReasonerMode::train, "Is the cat left of the dog?"));
  std::vector<int32_t> expected = tok->encode(text);
  EXPECT_EQ(ids, std::vector<int64_t>(expected.begin(), expected.end()));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), static_cast<int64_t>(tok->special_ids().image_pad)),
            5);
}

}  // namespace
}  // namespace visplay::rl

namespace visplay::rl {
namespace {

// The shipped ShapeWorld vocabulary covers every ShapeWorld prompt, every question template and
// every answer, and the response formats parse back after decoding.
TEST(Roles, ShapeWorldVocabularyCoversPromptsQuestionsAndAnswers) {
  std::unique_ptr<Tokenizer> tok = make_shapeworld_tokenizer();
  ChatFormat fmt = ChatFormat::for_tokenizer(*tok);
  EXPECT_EQ(fmt.name, "shapeworld");
  const int64_t unk = tok->special_ids().unk;
  PromptConfig prompts = resolve_prompts(PromptConfig{}, *tok);
  auto no_unk = [&](const std::vector<int64_t>& ids) {
    return std::count(ids.begin(), ids.end(), unk) == 0;
  };
  EXPECT_TRUE(no_unk(build_questioner_prompt(fmt, *tok, 16, prompts)));
  for (const world::QuestionSpec& spec : world::all_question_specs()) {
    const std::string q = spec.text();
    for (ReasonerMode mode : {ReasonerMode::direct, ReasonerMode::vote, ReasonerMode::train}) {
      ASSERT_TRUE(no_unk(build_reasoner_prompt(fmt, *tok, 16, q, mode, prompts))) << q;
    }
    std::string decoded =
        decode_response(*tok, encode_response(*tok, format_questioner_response(fmt, q)));
    ParsedQuestion parsed = parse_questioner_output(decoded);
    ASSERT_TRUE(parsed.valid) << decoded;
    EXPECT_EQ(parsed.question, q);
    EXPECT_TRUE(world::parse_question(parsed.question).has_value()) << parsed.question;
  }
  for (const std::string& a : world::answer_vocabulary()) {
    std::vector<int64_t> ids = encode_response(*tok, format_reasoner_response(fmt, "", a));
    EXPECT_TRUE(no_unk(ids)) << a;
    std::optional<std::string> boxed = extract_boxed(decode_response(*tok, ids));
    ASSERT_TRUE(boxed.has_value()) << a;
    EXPECT_EQ(*boxed, a);
  }
  // Explicit prompt settings are kept; only the paper's English defaults are replaced.
  PromptConfig custom;
  custom.reasoner_vote = "question : {question} answer directly .";
  EXPECT_EQ(resolve_prompts(custom, *tok).reasoner_vote, custom.reasoner_vote);
  EXPECT_EQ(resolve_prompts(custom, *tok).reasoner_train, shapeworld_prompts().reasoner_train);
}

// Byte-level BPE decodes partial characters as raw bytes; the loop's texts must be valid UTF-8
// (JSON logs and training states refuse anything else), replaced as Python's errors="replace".
TEST(Roles, InvalidUtf8BecomesReplacementCharacters) {
  const std::string r = "\xEF\xBF\xBD";
  EXPECT_EQ(replace_invalid_utf8("plain ascii"), "plain ascii");
  EXPECT_EQ(replace_invalid_utf8("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80"),
            "\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(replace_invalid_utf8("a\xE2\x82"), "a" + r);          // cut 3-byte character: one
  EXPECT_EQ(replace_invalid_utf8("\xE2\x82x\x83"), r + "x" + r);  // stray continuation byte
  EXPECT_EQ(replace_invalid_utf8("\xC0\xAF"), r + r);             // overlong lead, then stray
  EXPECT_EQ(replace_invalid_utf8("\xED\xA0\x80"), r + r + r);     // surrogate: no valid prefix
  EXPECT_EQ(replace_invalid_utf8("\xF0\x9F\x98"), r);
  EXPECT_EQ(replace_invalid_utf8("\xFF"), r);
}

}  // namespace
}  // namespace visplay::rl
