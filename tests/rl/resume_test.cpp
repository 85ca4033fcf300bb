// Crash safety of the evolve loop: a run SIGKILLed again and again at seeded random points —
// after a GRPO step or a silver chunk, or inside an atomic file write just before its rename —
// and resumed each time must end with checkpoints, silver sets and logged step metrics
// bit-identical to an uninterrupted run. Each attempt runs in a forked child so that the kill
// is a real SIGKILL of a process. Also: a resumed run with another configuration is refused.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "model/file_util.h"
#include "rl/evolve.h"
#include "rl/train_state.h"
#include "runtime/random.h"
#include "tests/rl/evolve_world.h"

namespace fs = std::filesystem;

namespace visplay::rl {
namespace {

using testing::World;

// Kill points counted in the child: every after_step call and every atomic write (just before
// its rename, i.e. after the temporary file is complete and synced).
int64_t g_events = 0;
int64_t g_kill_at = -1;

void count_event() {
  if (++g_events == g_kill_at) ::raise(SIGKILL);
}
void count_write(const std::string&) { count_event(); }

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The deterministic part of every logged GRPO step (timings dropped), in log order.
std::vector<std::string> logged_steps(const fs::path& metrics) {
  std::ifstream in(metrics);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    if (j["event"] != "step" && j["event"] != "data" && j["event"] != "iteration") continue;
    nlohmann::json keep = nlohmann::json::object();
    for (const char* key : {"event", "iteration", "phase", "step", "loss", "kl", "reward_mean",
                            "grad_norm", "entropy", "kept", "valid_questions", "updates"}) {
      if (j.contains(key)) keep[key] = j[key];
    }
    out.push_back(keep.dump());
  }
  return out;
}

VisPlayConfig kill_test_config(const World& w) {
  VisPlayConfig c = w.tiny_config();
  c.iterations = 2;
  c.questioner.steps = 3;
  c.reasoner.steps = 3;
  c.checkpoint_every = 2;        // kills between saves lose a step that must be redone identically
  c.grpo.generation_batch = 10;  // 2 candidates per silver chunk: 3 chunks per phase
  return c;
}

// Runs the loop (resuming whatever out_dir holds) in a forked child that SIGKILLs itself at
// kill point `kill_at` (-1: never). Returns the child's wait status.
int run_child(const EvolveOptions& base, int64_t kill_at) {
  std::cout.flush();
  std::cerr.flush();
  const pid_t pid = ::fork();
  if (pid == 0) {
    g_events = 0;
    g_kill_at = kill_at;
    set_before_rename_hook(&count_write);
    EvolveOptions o = base;
    o.resume = true;
    o.after_step = [](int, const std::string&, int64_t) { count_event(); };
    try {
      run_evolve(o);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      std::fflush(stderr);
      ::_exit(3);
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(Resume, RunKilledAtRandomPointsEqualsUninterruptedRun) {
  testing::use_one_thread();
  const auto t0 = std::chrono::steady_clock::now();
  World w("kill");
  EvolveOptions o;
  o.config = kill_test_config(w);
  o.model_dir = (w.root / "model").string();
  o.images_dir = (w.root / "images").string();

  o.out_dir = (w.root / "straight").string();
  EvolveResult straight = run_evolve(o);
  ASSERT_EQ(straight.last_iteration, 2);
  // The reasoner phase must really train in both iterations, or half the loop is untested.
  for (const nlohmann::json& s : straight.summaries) ASSERT_EQ(s["reasoner_phase"], "trained");

  // Kill at a seeded random point 8..15 events into each attempt: at least one state is saved
  // per attempt (the config.json write at the start, then at most 6 events up to the next
  // state write), so the run always progresses.
  o.out_dir = (w.root / "killed").string();
  Rng rng(20261129);
  int kills = 0, mid_write_kills = 0;
  for (int attempt = 0;; ++attempt) {
    ASSERT_LT(attempt, 40) << "the killed run does not progress";
    const int64_t kill_at = 8 + rng.randint(0, 8);
    const int status = run_child(o, kill_at);
    if (WIFEXITED(status)) {
      ASSERT_EQ(WEXITSTATUS(status), 0) << "attempt " << attempt << " failed";
      break;
    }
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
    ++kills;
    // A kill inside a write leaves its temporary file: the next attempt must cope with it.
    for (const auto& e : fs::recursive_directory_iterator(o.out_dir)) {
      if (e.path().filename().string().find(".tmp.") != std::string::npos) {
        ++mid_write_kills;
        break;
      }
    }
  }
  EXPECT_GE(kills, 3);
  EXPECT_GE(mid_write_kills, 1);
  EXPECT_EQ(last_complete_iteration(o.out_dir), 2);
  // Resumes cleaned up what the killed writes left behind.
  for (const auto& e : fs::recursive_directory_iterator(o.out_dir)) {
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos) << e.path();
  }

  for (const char* file :
       {"iter-1/questioner/model.safetensors", "iter-1/reasoner/model.safetensors",
        "iter-2/questioner/model.safetensors", "iter-2/reasoner/model.safetensors",
        "iter-1/silver.jsonl", "iter-2/silver.jsonl"}) {
    const std::string a = file_bytes(w.root / "straight" / file);
    const std::string b = file_bytes(w.root / "killed" / file);
    ASSERT_FALSE(a.empty()) << file;
    EXPECT_TRUE(a == b) << file << " differs after " << kills << " kills";
  }
  // The trained weights moved (the comparison above is not between two untouched copies).
  EXPECT_NE(file_bytes(w.root / "model" / "model.safetensors"),
            file_bytes(w.root / "killed" / "iter-2" / "reasoner" / "model.safetensors"));
  // Steps logged after the last saved state were dropped on resume: the log has each step once,
  // with the same values.
  const std::vector<std::string> a = logged_steps(w.root / "straight" / "metrics.jsonl");
  const std::vector<std::string> b = logged_steps(w.root / "killed" / "metrics.jsonl");
  EXPECT_EQ(a.size(), 2u * (3 + 1 + 3 + 1));
  EXPECT_EQ(a, b);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::cout << "kill test: " << kills << " kills (" << mid_write_kills << " inside a write), "
            << seconds << " s" << std::endl;
  EXPECT_LT(seconds, 60.0);
}

// Resuming inside an iteration with a changed configuration would silently break the
// bit-exactness: it is an error naming the key.
TEST(Resume, ChangedConfigurationIsRefused) {
  testing::use_one_thread();
  World w("config");
  EvolveOptions o;
  o.config = kill_test_config(w);
  o.model_dir = (w.root / "model").string();
  o.images_dir = (w.root / "images").string();
  o.out_dir = (w.root / "out").string();
  // Killed after the third questioner step (events: the config.json write, step 1, step 2, the
  // state write, step 3): the state of step 2 is on disk (checkpoint_every 2).
  const int status = run_child(o, 5);
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  const nlohmann::json info = read_train_state_info(evolve_state_path(o.out_dir));
  EXPECT_EQ(info["phase"], "questioner");
  EXPECT_EQ(info["step"], 2);
  // Without --resume the folder is not overwritten.
  EXPECT_THROW(run_evolve(o), std::runtime_error);
  o.resume = true;
  o.config.grpo.lr *= 2;
  try {
    run_evolve(o);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("grpo.lr"), std::string::npos) << e.what();
  }
  // iterations and checkpoint_every may change; --model may be left out (the state names it).
  o.config.grpo.lr /= 2;
  o.config.checkpoint_every = 1;
  o.iterations = 1;
  o.model_dir.clear();
  EvolveResult r = run_evolve(o);
  EXPECT_EQ(r.last_iteration, 1);
}

}  // namespace
}  // namespace visplay::rl
