// Crash safety of the supervised warm start: a pretrain run SIGKILLed again and again at
// seeded random points (after a step, or inside an atomic write just before its rename) and
// resumed from its training state ends with weights and AdamW moments bit-identical to an
// uninterrupted run, with the same validation history and each step logged once. A resume
// with different options is refused.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "model/file_util.h"
#include "model/shapeworld_vocab.h"
#include "rl/pretrain.h"
#include "rl/train_state.h"
#include "runtime/random.h"
#include "tests/rl/tiny_model.h"

namespace fs = std::filesystem;

namespace visplay::rl {
namespace {

int64_t g_events = 0;
int64_t g_kill_at = -1;
void count_event() {
  if (++g_events == g_kill_at) ::raise(SIGKILL);
}
void count_write(const std::string&) { count_event(); }

PretrainOptions small_run(const fs::path& dir) {
  PretrainOptions o;
  o.steps = 14;
  o.batch_size = 2;
  o.scenes = 64;
  o.seed = 11;
  o.lr = 1e-2;
  o.min_lr = 1e-3;
  o.warmup = 3;
  o.eval_every = 5;
  o.eval_questions = 4;
  o.eval_batch = 4;
  o.state_every = 3;
  o.state_path = (dir / "train_state.safetensors").string();
  return o;
}

// A fresh tiny model (the resumed run overwrites its weights from the state), trained with
// `o` into dir: metrics in dir/metrics.jsonl, the final weights and moments in
// dir/final.safetensors, the validation history in dir/validation.json.
void train_into(const fs::path& dir, PretrainOptions o) {
  auto tok = make_shapeworld_tokenizer();
  VLM model(shapeworld_model_config(*tok, "tiny"));
  model.init_weights(o.seed);
  const bool resuming = o.resume && fs::exists(o.state_path);
  MetricsLog log((dir / "metrics.jsonl").string(), /*truncate=*/!resuming);
  PretrainResult r = pretrain(model, *tok, o, &log);
  nlohmann::json v = nlohmann::json::array();
  for (const auto& [step, acc] : r.validation) v.push_back({step, acc});
  write_file_atomic((dir / "validation.json").string(), v.dump());
}

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The metrics lines without their timings.
std::vector<std::string> logged(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    j.erase("seconds");
    out.push_back(j.dump());
  }
  return out;
}

TEST(PretrainResume, KilledAtRandomPointsEqualsUninterruptedRun) {
  testing::use_one_thread();
  const fs::path root =
      fs::temp_directory_path() / ("visplay_pretrain_resume_test_" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "straight");
  fs::create_directories(root / "killed");
  train_into(root / "straight", small_run(root / "straight"));

  // Events: one per step and one per atomic write (each state write). Killing 5..8 events into
  // an attempt always lets at least one state through (a state, three steps, the next state).
  Rng rng(4242);
  int kills = 0;
  for (int attempt = 0;; ++attempt) {
    ASSERT_LT(attempt, 40) << "the killed run does not progress";
    const int64_t kill_at = 5 + rng.randint(0, 4);
    std::cout.flush();
    const pid_t pid = ::fork();
    if (pid == 0) {
      g_kill_at = kill_at;
      set_before_rename_hook(&count_write);
      PretrainOptions o = small_run(root / "killed");
      o.resume = true;
      o.after_step = [](int64_t) { count_event(); };
      try {
        train_into(root / "killed", o);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        ::_exit(3);
      }
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFEXITED(status)) {
      ASSERT_EQ(WEXITSTATUS(status), 0);
      break;
    }
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    ++kills;
  }
  EXPECT_GE(kills, 2);
  // The final states hold the weights and the AdamW moments: equal bytes, infos aside.
  auto tok = make_shapeworld_tokenizer();
  VLM a(shapeworld_model_config(*tok, "tiny")), b(shapeworld_model_config(*tok, "tiny"));
  a.params().set_requires_grad(true);
  b.params().set_requires_grad(true);
  AdamW oa(a.params().tensors(), {}), ob(b.params().tensors(), {});
  load_train_state((root / "straight" / "train_state.safetensors").string(), &a, &oa);
  load_train_state((root / "killed" / "train_state.safetensors").string(), &b, &ob);
  EXPECT_EQ(oa.steps(), 14);
  EXPECT_EQ(ob.steps(), 14);
  for (const std::string& name : a.params().names()) {
    const std::vector<float> x = a.params().get(name).to_vector<float>();
    const std::vector<float> y = b.params().get(name).to_vector<float>();
    ASSERT_EQ(x.size(), y.size());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * sizeof(float)), 0) << name;
  }
  for (size_t i = 0; i < oa.exp_avg().size(); ++i) {
    EXPECT_EQ(oa.exp_avg()[i].to_vector<float>(), ob.exp_avg()[i].to_vector<float>()) << i;
    EXPECT_EQ(oa.exp_avg_sq()[i].to_vector<float>(), ob.exp_avg_sq()[i].to_vector<float>()) << i;
  }
  // Trained at all: the weights left their initialisation.
  VLM init(shapeworld_model_config(*tok, "tiny"));
  init.init_weights(11);
  EXPECT_NE(init.params().get("model.embed_tokens.weight").to_vector<float>(),
            a.params().get("model.embed_tokens.weight").to_vector<float>());
  EXPECT_EQ(file_bytes(root / "straight" / "validation.json"),
            file_bytes(root / "killed" / "validation.json"));
  const std::vector<std::string> la = logged(root / "straight" / "metrics.jsonl");
  EXPECT_EQ(la.size(), 14u + 3u);  // 14 steps, validations after steps 5, 10, 14
  EXPECT_EQ(la, logged(root / "killed" / "metrics.jsonl"));
  std::cout << "pretrain kill test: " << kills << " kills" << std::endl;

  // Other options than the saved state's: refused, naming the option.
  PretrainOptions changed = small_run(root / "killed");
  changed.resume = true;
  changed.lr *= 3;
  try {
    train_into(root / "killed", changed);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("lr"), std::string::npos) << e.what();
  }
  PretrainOptions other_trace = small_run(root / "killed");
  other_trace.resume = true;
  other_trace.trace = sft::TraceStyle::scene;
  try {
    train_into(root / "killed", other_trace);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("trace"), std::string::npos) << e.what();
  }
  fs::remove_all(root);
}

}  // namespace
}  // namespace visplay::rl
