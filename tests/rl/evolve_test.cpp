// The whole loop on a tiny warm-started ShapeWorld model: one iteration end to end (all three
// phases, checkpoints, metrics, oracle diagnostics), resume, and the refusal to overwrite.
// Also the oracle diagnostics on a hand-made silver set.
#include "rl/evolve.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "data/benchmark.h"
#include "model/image.h"
#include "rl/diagnostics.h"
#include "tests/rl/evolve_world.h"
#include "tests/rl/world_model.h"

namespace fs = std::filesystem;

namespace visplay::rl {
namespace {

std::vector<nlohmann::json> read_jsonl(const fs::path& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

using testing::World;

TEST(Evolve, OneIterationEndToEndThenResume) {
  testing::use_one_thread();
  const auto t0 = std::chrono::steady_clock::now();
  World w("e2e");
  EvolveOptions o;
  o.config = w.tiny_config();
  o.model_dir = (w.root / "model").string();
  o.images_dir = (w.root / "images").string();
  o.out_dir = (w.root / "out").string();
  std::ostringstream console;
  o.console = &console;
  EvolveResult r = run_evolve(o);
  EXPECT_EQ(r.first_iteration, 1);
  EXPECT_EQ(r.last_iteration, 1);
  const fs::path it1 = w.root / "out" / "iter-1";
  for (const char* f :
       {"questioner/model.safetensors", "questioner/config.json", "questioner/tokenizer.json",
        "reasoner/model.safetensors", "silver.jsonl", "summary.json"}) {
    EXPECT_TRUE(fs::exists(it1 / f)) << f;
  }
  EXPECT_EQ(last_complete_iteration(o.out_dir), 1);

  // Metrics: start, 1 questioner step, the data record, reasoner steps, the iteration record.
  std::vector<nlohmann::json> log = read_jsonl(w.root / "out" / "metrics.jsonl");
  int q_steps = 0, r_steps = 0, data = 0, iters = 0;
  for (const auto& rec : log) {
    const std::string ev = rec["event"];
    if (ev == "step" && rec["phase"] == "questioner") {
      ++q_steps;
      EXPECT_EQ(rec["sequences"], 2 * 4);
      EXPECT_TRUE(rec.contains("valid_fraction"));
      EXPECT_TRUE(rec.contains("r_unc_mean"));
      EXPECT_TRUE(rec.contains("kl"));
      EXPECT_TRUE(rec.contains("entropy"));
    }
    if (ev == "step" && rec["phase"] == "reasoner") {
      ++r_steps;
      EXPECT_TRUE(rec.contains("silver_match"));
    }
    if (ev == "data") {
      ++data;
      EXPECT_EQ(rec["candidates"], 6);
      ASSERT_TRUE(rec.contains("oracle"));
      EXPECT_TRUE(rec["oracle"].contains("self_consistency_margin"));
      EXPECT_EQ(rec["confidence_histogram"].size(), 6u);
    }
    if (ev == "iteration") ++iters;
  }
  EXPECT_EQ(q_steps, 1);
  EXPECT_EQ(data, 1);
  EXPECT_EQ(iters, 1);
  // The warm start makes valid questions with mixed boxed answers, so (band 0..1) the
  // Reasoner phase must have run.
  nlohmann::json summary = nlohmann::json::parse(std::ifstream(it1 / "summary.json"));
  EXPECT_GT(summary["valid_questions"].get<int>(), 0) << console.str();
  EXPECT_GT(summary["kept"].get<int>(), 0) << console.str();
  EXPECT_EQ(summary["reasoner_phase"], "trained") << console.str();
  EXPECT_EQ(r_steps, 2);
  std::vector<nlohmann::json> silver = read_jsonl(it1 / "silver.jsonl");
  ASSERT_EQ(silver.size(), 6u);
  int histogram_total = 0;
  for (const auto& x : summary["confidence_histogram"]) histogram_total += x.get<int>();
  EXPECT_EQ(histogram_total, summary["valid_questions"].get<int>());
  EXPECT_NE(console.str().find("questioner step 1/1"), std::string::npos);

  // The trained reasoner differs from the starting checkpoint.
  VLM start = load_checkpoint((w.root / "model").string());
  VLM trained = load_checkpoint((it1 / "reasoner").string());
  EXPECT_NE(start.params().get("lm_head.weight").to_vector<float>(),
            trained.params().get("lm_head.weight").to_vector<float>());

  // Without --resume an existing run is never overwritten.
  EXPECT_THROW(run_evolve(o), std::runtime_error);
  // Resume to 2 iterations: iteration 2 starts from iteration 1's checkpoints.
  o.resume = true;
  o.iterations = 2;
  o.config.reasoner.steps = 0;
  o.config.questioner.steps = 1;
  EvolveResult r2 = run_evolve(o);
  EXPECT_EQ(r2.first_iteration, 2);
  EXPECT_EQ(r2.last_iteration, 2);
  EXPECT_EQ(last_complete_iteration(o.out_dir), 2);
  // Already complete: nothing to do.
  EvolveResult r3 = run_evolve(o);
  EXPECT_EQ(r3.last_iteration, 2);
  EXPECT_TRUE(r3.summaries.empty());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 120.0);
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Seeds derive from (seed, iteration, phase, step): two iterations in one run and one iteration
// plus a resumed one give bit-identical checkpoints.
TEST(Evolve, ResumedRunEqualsUninterruptedRun) {
  testing::use_one_thread();
  World w("resume");
  EvolveOptions o;
  o.config = w.tiny_config();
  o.config.reasoner.steps = 1;
  o.model_dir = (w.root / "model").string();
  o.images_dir = (w.root / "images").string();
  o.out_dir = (w.root / "straight").string();
  o.iterations = 2;
  run_evolve(o);
  o.out_dir = (w.root / "resumed").string();
  o.iterations = 1;
  run_evolve(o);
  o.iterations = 2;
  o.resume = true;
  EvolveResult r = run_evolve(o);
  EXPECT_EQ(r.first_iteration, 2);
  for (const char* role : {"questioner", "reasoner"}) {
    const std::string a = file_bytes(w.root / "straight" / "iter-2" / role / "model.safetensors");
    const std::string b = file_bytes(w.root / "resumed" / "iter-2" / role / "model.safetensors");
    EXPECT_FALSE(a.empty());
    EXPECT_TRUE(a == b) << role;
  }
  EXPECT_EQ(file_bytes(w.root / "straight" / "iter-2" / "silver.jsonl"),
            file_bytes(w.root / "resumed" / "iter-2" / "silver.jsonl"));
}

// The diagnostic label sources (reasoner.labels) end to end: the summary says what was trained
// on (the selection itself: tests/rl/reasoner_data_test.cpp); without ShapeWorld scenes they
// are refused up front.
TEST(Evolve, DiagnosticLabelSourcesTrainOnWellPosedKeptQuestions) {
  testing::use_one_thread();
  World w("labels");
  for (LabelSource source : {LabelSource::silver, LabelSource::oracle}) {
    EvolveOptions o;
    o.config = w.tiny_config();
    o.config.reasoner.labels = source;
    o.model_dir = (w.root / "model").string();
    o.images_dir = (w.root / "images").string();
    o.out_dir = (w.root / ("out-" + to_string(source))).string();
    std::ostringstream console;
    o.console = &console;
    run_evolve(o);
    const fs::path it1 = fs::path(o.out_dir) / "iter-1";
    nlohmann::json summary = nlohmann::json::parse(std::ifstream(it1 / "summary.json"));
    ASSERT_EQ(summary["reasoner_phase"], "trained") << console.str();
    EXPECT_EQ(summary["reasoner_labels"], to_string(source));
    int kept = 0, well_posed = 0;
    for (const auto& q : read_jsonl(it1 / "silver.jsonl")) {
      if (!q["kept"].get<bool>()) continue;
      ++kept;
      well_posed += !q["oracle_answer"].is_null();
    }
    EXPECT_EQ(summary["reasoner_questions"].get<int>(),
              source == LabelSource::silver ? kept : well_posed);
  }
  // Plain images (no scenes.jsonl): the oracle label sources are an error before any work.
  const fs::path plain = w.root / "plain";
  fs::create_directories(plain);
  for (const auto& e : fs::directory_iterator(w.root / "images" / "images")) {
    fs::copy_file(e.path(), plain / e.path().filename());
  }
  EvolveOptions o;
  o.config = w.tiny_config();
  o.config.reasoner.labels = LabelSource::silver_well_posed;
  o.model_dir = (w.root / "model").string();
  o.images_dir = plain.string();
  o.out_dir = (w.root / "out-plain").string();
  std::ostringstream console;
  o.console = &console;
  try {
    run_evolve(o);
    ADD_FAILURE() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("reasoner.labels = silver_well_posed"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(fs::exists(fs::path(o.out_dir) / "iter-1"));
}

TEST(Evolve, MissingTokenizerIsAnError) {
  testing::use_one_thread();
  World w("notok");
  fs::remove(w.root / "model" / "tokenizer.json");
  EvolveOptions o;
  o.config = w.tiny_config();
  o.model_dir = (w.root / "model").string();
  o.images_dir = (w.root / "images").string();
  o.out_dir = (w.root / "out").string();
  try {
    run_evolve(o);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
}

// grpo.master_weights converts a Qwen2.5-VL policy to bf16; the demo model is refused clearly.
TEST(Evolve, MasterWeightsNeedAQwen25VLModel) {
  testing::use_one_thread();
  World w("master");
  EvolveOptions o;
  o.config = w.tiny_config();
  o.config.grpo.master_weights = true;
  o.model_dir = (w.root / "model").string();
  o.images_dir = (w.root / "images").string();
  o.out_dir = (w.root / "out").string();
  try {
    run_evolve(o);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("grpo.master_weights needs a Qwen2.5-VL model"),
              std::string::npos)
        << e.what();
  }
}

// A small red circle at (10, 10) and a large blue square at (40, 40).
world::Scene red_circle_blue_square() {
  world::Scene scene;
  scene.objects = {{world::Shape::circle, world::Color::red, world::Size::small, 10, 10},
                   {world::Shape::square, world::Color::blue, world::Size::large, 40, 40}};
  return scene;
}

// One silver question as the data phase writes it (no label when `label` is empty).
SilverQuestion silver_question(int64_t image, bool valid, const std::string& q,
                               const std::string& label, double c, bool kept,
                               std::vector<std::optional<std::string>> votes,
                               std::optional<std::string> greedy) {
  SilverQuestion s;
  s.image = image;
  s.valid = valid;
  s.question = q;
  s.has_label = !label.empty();
  s.label = label;
  s.confidence = c;
  s.kept = kept;
  s.votes = std::move(votes);
  s.greedy = std::move(greedy);
  return s;
}

// Hand-made scenes and silver questions: accuracies and the margin counted by hand.
TEST(Diagnostics, SilverAccuracyAndSelfConsistencyMargin) {
  testing::use_one_thread();
  const world::Scene two = red_circle_blue_square();
  world::Scene three = two;
  three.objects.push_back(
      {world::Shape::triangle, world::Color::green, world::Size::small, 10, 50});
  std::vector<world::Scene> scenes = {two, three, two, three};
  const auto make = silver_question;
  SilverSet set;
  // 0: answer 2, label right, greedy wrong, kept.
  set.questions.push_back(
      make(0, true, "how many objects are there?", "2", 2.0 / 3, true, {"2", "2", "3"}, "3"));
  // 1: answer 3, label wrong, greedy right, not kept.
  set.questions.push_back(
      make(1, true, "how many objects are there?", "2", 1.0, false, {"2", "2", "2"}, "3"));
  // 2: outside the grammar: no oracle.
  set.questions.push_back(
      make(2, true, "how big is the sky?", "4", 1.0, false, {"4", "4", "4"}, "4"));
  // 3: answer yes (a red circle exists), label right, greedy right, kept.
  set.questions.push_back(
      make(3, true, "is there a red circle?", "yes", 2.0 / 3, true, {"yes", "no", "yes"}, "yes"));
  set.questions.push_back(make(0, false, "", "", 0, false, {}, std::nullopt));
  scenes.push_back(two);
  std::vector<std::optional<std::string>> oracle = oracle_answers(set, scenes);
  ASSERT_EQ(oracle.size(), 5u);
  EXPECT_EQ(oracle[0], "2");
  EXPECT_EQ(oracle[1], "3");
  EXPECT_FALSE(oracle[2].has_value());
  EXPECT_EQ(oracle[3], "yes");
  EXPECT_FALSE(oracle[4].has_value());
  nlohmann::json d = silver_diagnostics(set, oracle);
  EXPECT_DOUBLE_EQ(d["valid_format"].get<double>(), 4.0 / 5);
  EXPECT_DOUBLE_EQ(d["grammar_valid"].get<double>(), 3.0 / 5);
  EXPECT_DOUBLE_EQ(d["answerable"].get<double>(), 3.0 / 5);
  EXPECT_DOUBLE_EQ(d["silver_accuracy_all"].get<double>(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(d["silver_accuracy_kept"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(d["majority_accuracy"].get<double>(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(d["greedy_accuracy"].get<double>(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(d["self_consistency_margin"].get<double>(), 0.0);
  // votes: q0 2/3 right, q1 0/3, q3 2/3 -> 4/9.
  EXPECT_DOUBLE_EQ(d["vote_sample_accuracy"].get<double>(), 4.0 / 9);

  std::optional<double> acc =
      oracle_accuracy({"\\boxed{2}", "\\boxed{2}", "x", "so \\boxed{yes}", ""}, oracle);
  ASSERT_TRUE(acc.has_value());
  EXPECT_DOUBLE_EQ(*acc, 2.0 / 3);
}

// The kept labels about something absent (the hallucination slice's answers) and the kept
// questions the oracle cannot answer are counted apart, by hand.
TEST(Diagnostics, KeptHallucinationLabelsAndUnanswerableQuestions) {
  testing::use_one_thread();
  const world::Scene two = red_circle_blue_square();
  world::Scene twins = two;
  twins.objects.push_back({world::Shape::circle, world::Color::green, world::Size::small, 10, 50});
  auto make = [](int64_t image, const std::string& q, const std::string& label, bool kept) {
    return silver_question(image, true, q, label, 2.0 / 3, kept, {}, std::nullopt);
  };
  SilverSet set;
  // True "no" (absent), label "yes": a hallucinated label, kept.
  set.questions.push_back(make(0, "is there a green square?", "yes", true));
  // True "0" (absent), label right, kept.
  set.questions.push_back(make(0, "how many triangles are there?", "0", true));
  // True "blue": not about something absent; label right, kept.
  set.questions.push_back(make(0, "what color is the square?", "blue", true));
  // Two circles: the oracle cannot answer; kept all the same.
  set.questions.push_back(make(1, "what color is the circle?", "red", true));
  // Absent and right, but not kept: left out of the kept counts.
  set.questions.push_back(make(0, "is there a green triangle?", "no", false));
  // Not answerable and not kept: counted nowhere.
  set.questions.push_back(make(1, "what color is the circle?", "green", false));
  std::vector<world::Scene> scenes = {two, twins};
  const std::vector<std::optional<std::string>> oracle = oracle_answers(set, scenes);
  ASSERT_EQ(oracle[0], "no");
  ASSERT_EQ(oracle[1], "0");
  ASSERT_FALSE(oracle[3].has_value());
  nlohmann::json d = silver_diagnostics(set, oracle);
  EXPECT_DOUBLE_EQ(d["kept_answerable"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(d["silver_accuracy_kept"].get<double>(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(d["kept_unanswerable"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(d["kept_hallucination"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(d["silver_accuracy_kept_hallucination"].get<double>(), 0.5);

  // No kept absent-object question: the accuracy is null, not 0.
  set.questions.resize(3);
  set.questions.erase(set.questions.begin(), set.questions.begin() + 2);
  d = silver_diagnostics(set, oracle_answers(set, scenes));
  EXPECT_DOUBLE_EQ(d["kept_hallucination"].get<double>(), 0.0);
  EXPECT_TRUE(d["silver_accuracy_kept_hallucination"].is_null());
}

}  // namespace
}  // namespace visplay::rl
