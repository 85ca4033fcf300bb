// The `visplay` binary end to end: pretrain a tiny model for a few steps, write a
// benchmark, evaluate it (report fields and consistency with the replies), run the demo
// on tiny worlds, and bad input that must fail with a message naming the problem.
// The binary is found beside this test executable (both live in build/bin).
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace {

namespace fs = std::filesystem;

fs::path visplay_binary() { return fs::read_symlink("/proc/self/exe").parent_path() / "visplay"; }

struct RunResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

// `env` goes before the command (e.g. "env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active").
RunResult run(const std::string& args, const std::string& env = "") {
  const fs::path bin = visplay_binary();
  if (!fs::exists(bin)) {
    ADD_FAILURE() << "the visplay binary is not built: " << bin << " (build the visplay target)";
    return {};
  }
  std::string command = env + " OMP_NUM_THREADS=1 " + bin.string() + " " + args + " 2>&1";
  RunResult r;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return r;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) r.output.append(buffer.data(), n);
  int status = pclose(pipe);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("visplay_cli_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(Cli, PretrainThenEvalWritesAConsistentReport) {
  RunResult p = run("pretrain --out " + path("model") +
                    " --size tiny --steps 4 --batch 4 --seed 3 --eval-every 2 --eval-questions 6");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  for (const char* f :
       {"model.safetensors", "config.json", "tokenizer.json", "metrics.jsonl", "pretrain.json"}) {
    EXPECT_TRUE(fs::exists(dir_ / "model" / f)) << f;
  }
  nlohmann::json summary = read_json(dir_ / "model" / "pretrain.json");
  EXPECT_EQ(summary["steps"].get<int>(), 4);
  EXPECT_EQ(summary["seed"].get<int>(), 3);
  EXPECT_EQ(summary["validation"].size(), 2u);

  RunResult w = run("world --out " + path("bench") + " --scenes 12 --seed 8 --labeled");
  ASSERT_EQ(w.exit_code, 0) << w.output;
  RunResult e =
      run("eval --model " + path("model") + " --bench " + path("bench") + " --out " +
          path("report.json") + " --replies " + path("replies.jsonl") + " --max-new-tokens 16");
  ASSERT_EQ(e.exit_code, 0) << e.output;
  EXPECT_NE(e.output.find("hallucination"), std::string::npos) << e.output;
  nlohmann::json report = read_json(dir_ / "report.json");
  EXPECT_EQ(report["questions"].get<int>(), 12);
  for (const char* key : {"accuracy", "per_type", "hallucination", "no_answer", "blind_baseline"})
    EXPECT_TRUE(report.contains(key)) << key;
  // The accuracy is the share of replies marked correct, re-counted from the replies file.
  std::ifstream replies(path("replies.jsonl"));
  std::string line;
  int lines = 0, correct = 0;
  while (std::getline(replies, line)) {
    nlohmann::json r = nlohmann::json::parse(line);
    ++lines;
    correct += r["correct"].get<bool>();
  }
  EXPECT_EQ(lines, 12);
  EXPECT_DOUBLE_EQ(report["accuracy"].get<double>(), correct / 12.0);
}

// Unless the user has chosen how idle OpenMP threads wait, the binary sets a
// short spin before they sleep (tools/cli/main.cpp); a choice of the user's
// is kept as it is.
TEST_F(Cli, InfoShowsHowIdleThreadsWait) {
  RunResult chosen = run("info", "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT");
  ASSERT_EQ(chosen.exit_code, 0) << chosen.output;
  EXPECT_NE(chosen.output.find("OMP_WAIT_POLICY=passive, GOMP_SPINCOUNT=1000"), std::string::npos)
      << chosen.output;
  RunResult policy = run("info", "env -u GOMP_SPINCOUNT OMP_WAIT_POLICY=active");
  EXPECT_NE(policy.output.find("OMP_WAIT_POLICY=active, GOMP_SPINCOUNT=(unset)"), std::string::npos)
      << policy.output;
  RunResult spin = run("info", "env -u OMP_WAIT_POLICY GOMP_SPINCOUNT=20000");
  EXPECT_NE(spin.output.find("OMP_WAIT_POLICY=(unset), GOMP_SPINCOUNT=20000"), std::string::npos)
      << spin.output;
}

TEST_F(Cli, DemoOnTinyWorldsWritesReportPlotsAndModels) {
  RunResult p =
      run("pretrain --out " + path("base") + " --size tiny --steps 2 --batch 2 --eval-every 0");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  RunResult d = run("demo --out " + path("demo") + " --model " + path("base") +
                    " --pool 6 --validation 6 --test 8 --iterations 1 --seed 2");
  ASSERT_EQ(d.exit_code, 0) << d.output;
  nlohmann::json report = read_json(dir_ / "demo" / "report.json");
  EXPECT_EQ(report["seed"].get<int>(), 2);
  EXPECT_EQ(report["base"]["test"]["questions"].get<int>(), 8);
  EXPECT_TRUE(report["blind_baseline"]["test"].contains("accuracy"));
  ASSERT_TRUE(report.contains("evolve"));
  EXPECT_EQ(report["evolve"]["status"], "done");
  ASSERT_EQ(report["iterations"].size(), 1u);
  EXPECT_EQ(report["iterations"][0]["test"]["questions"].get<int>(), 8);
  EXPECT_TRUE(fs::exists(dir_ / "demo" / "models" / "iter-1" / "reasoner" / "config.json"));
  for (const char* f :
       {"plots/accuracy.png", "plots/per_type.png", "metrics.jsonl", "models/base/config.json",
        "models/base/tokenizer.json", "worlds/pool/scenes.jsonl", "worlds/test/questions.jsonl"}) {
    EXPECT_TRUE(fs::exists(dir_ / "demo" / f)) << f;
  }
  EXPECT_NE(d.output.find("report.json"), std::string::npos) << d.output;
}

TEST_F(Cli, BadInputFailsWithAMessage) {
  RunResult e = run("eval --model " + path("missing") + " --bench " + path("missing-bench"));
  EXPECT_EQ(e.exit_code, 1) << e.output;
  EXPECT_NE(e.output.find("missing"), std::string::npos) << e.output;

  RunResult p = run("pretrain --out " + path("x") + " --size enormous");
  EXPECT_NE(p.exit_code, 0) << p.output;

  // A benchmark folder without answers cannot be scored: the error names the question.
  RunResult b =
      run("pretrain --out " + path("m") + " --size tiny --steps 1 --batch 1 --eval-every 0");
  ASSERT_EQ(b.exit_code, 0) << b.output;
  fs::create_directories(dir_ / "unlabeled" / "images");
  RunResult w = run("world --out " + path("lab") + " --scenes 2 --seed 1");
  ASSERT_EQ(w.exit_code, 0) << w.output;
  fs::copy(dir_ / "lab" / "images", dir_ / "unlabeled" / "images",
           fs::copy_options::recursive | fs::copy_options::overwrite_existing);
  std::ofstream(dir_ / "unlabeled" / "questions.jsonl")
      << R"({"id": "q1", "image": "images/000000.png", "question": "how many objects are there?"})"
      << "\n";
  RunResult u = run("eval --model " + path("m") + " --bench " + path("unlabeled"));
  EXPECT_EQ(u.exit_code, 1) << u.output;
  EXPECT_NE(u.output.find("q1"), std::string::npos) << u.output;
}

// A Hugging Face Qwen2.5-VL directory (the tiny random fixture of tools/gen_qwen25vl_fixture.py)
// through `visplay evolve`: one iteration on a plain folder of images saves both roles in the
// Hugging Face layout, and `visplay eval` scores the base and the trained Reasoner; a missing
// model folder and an empty image folder fail naming them.
TEST_F(Cli, EvolveOnAQwen25VLDirectory) {
  const std::string model = std::string(VISPLAY_SOURCE_DIR) + "/tests/model/fixtures/qwen25vl_tiny";
  RunResult w = run("world --out " + path("pool") + " --scenes 3 --seed 2");
  ASSERT_EQ(w.exit_code, 0) << w.output;
  std::ofstream(dir_ / "tiny.json") << R"({
    "iterations": 1,
    "questioner": {"group_size": 4, "steps": 1, "rollout": {"max_new_tokens": 8}},
    "reasoner": {"group_size": 2, "steps": 1, "rollout": {"max_new_tokens": 8}},
    "uncertainty": {"samples": 3, "sampling": {"max_new_tokens": 4}},
    "data": {"candidate_images": 3, "vote_samples": 3,
             "question_sampling": {"max_new_tokens": 8}, "vote_sampling": {"max_new_tokens": 6}},
    "grpo": {"prompts_per_step": 2, "prompts_per_update": 2, "micro_batch_size": 4,
             "generation_batch": 16, "lr": 0.001},
    "images": {"min_pixels": 3136, "max_pixels": 7056}
  })";
  const std::string tiny = " --config " + path("tiny.json") + " --quiet";
  RunResult e = run("evolve --model " + model + " --images " + path("pool/images") + " --out " +
                    path("run") + tiny);
  ASSERT_EQ(e.exit_code, 0) << e.output;
  for (const char* role : {"questioner", "reasoner"}) {
    const fs::path dir = dir_ / "run" / "iter-1" / role;
    EXPECT_EQ(read_json(dir / "config.json")["model_type"], "qwen2_5_vl") << role;
    EXPECT_TRUE(fs::exists(dir / "model.safetensors")) << role;
    EXPECT_TRUE(fs::exists(dir / "tokenizer.json")) << role;
  }
  // `visplay eval` takes the same directory (its own processor settings), and a trained role.
  RunResult lab = run("world --out " + path("lab") + " --scenes 2 --seed 3 --labeled");
  ASSERT_EQ(lab.exit_code, 0) << lab.output;
  for (const std::string& m : {model, path("run/iter-1/reasoner")}) {
    RunResult ev = run("eval --model " + m + " --bench " + path("lab") +
                       " --max-new-tokens 4 --out " + path("report.json"));
    ASSERT_EQ(ev.exit_code, 0) << ev.output;
    EXPECT_EQ(read_json(dir_ / "report.json")["questions"], 2) << ev.output;
  }
  RunResult missing = run("evolve --model " + path("nope") + " --images " + path("pool/images") +
                          " --out " + path("run2") + tiny);
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("does not exist"), std::string::npos) << missing.output;
  fs::create_directories(dir_ / "empty");
  RunResult empty = run("evolve --model " + model + " --images " + path("empty") + " --out " +
                        path("run3") + tiny);
  EXPECT_EQ(empty.exit_code, 1) << empty.output;
  EXPECT_NE(empty.output.find("holds no images"), std::string::npos) << empty.output;
}

}  // namespace
