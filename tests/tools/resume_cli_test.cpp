// `visplay pretrain --resume` and `visplay evolve --resume` end to end: the binary is started,
// SIGKILLed from outside as soon as its training state has advanced, restarted with --resume
// (evolve: with no --config and no --model, as after a crash), and the final checkpoint must
// equal, byte for byte, the one of an uninterrupted run. The binary is found beside this test
// executable (both live in build/bin).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "rl/train_state.h"

namespace {

namespace fs = std::filesystem;

fs::path visplay_binary() { return fs::read_symlink("/proc/self/exe").parent_path() / "visplay"; }

// Starts the binary (stdout/stderr to `log`) with OMP_NUM_THREADS=1.
pid_t start(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<std::string> all = {visplay_binary().string()};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    FILE* out = std::fopen(log.c_str(), "a");
    if (out) {
      ::dup2(fileno(out), 1);
      ::dup2(fileno(out), 2);
    }
    ::setenv("OMP_NUM_THREADS", "1", 1);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The state's position as text ("" when there is no readable state yet).
std::string state_position(const fs::path& state) {
  if (!fs::exists(state)) return "";
  try {
    nlohmann::json info = visplay::rl::read_train_state_info(state.string());
    return info.value("phase", std::string("")) + ":" + std::to_string(info.value("iteration", 0)) +
           ":" + std::to_string(info.value("step", int64_t{0}));
  } catch (const std::exception&) {
    return "";
  }
}

// Runs `args` (plus --resume after the first attempt) until it completes, SIGKILLing each
// attempt as soon as the state file shows a position it did not have when the attempt began.
// Returns the number of kills.
int run_with_kills(std::vector<std::string> args, const fs::path& state, const fs::path& log,
                   int max_kills) {
  int kills = 0;
  for (int attempt = 0; attempt < 50; ++attempt) {
    const std::string before = state_position(state);
    const pid_t pid = start(args, log);
    bool killed = false;
    while (kills < max_kills) {
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_all(log);
        return kills;
      }
      const std::string now = state_position(state);
      if (!now.empty() && now != before) {
        ::kill(pid, SIGKILL);
        const int s = wait_for(pid);
        killed = WIFSIGNALED(s);  // it may have finished just before the kill
        if (WIFEXITED(s)) {
          EXPECT_EQ(WEXITSTATUS(s), 0) << read_all(log);
          return kills;
        }
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (!killed) {
      const int s = wait_for(pid);
      EXPECT_TRUE(WIFEXITED(s) && WEXITSTATUS(s) == 0) << read_all(log);
      return kills;
    }
    ++kills;
    if (std::find(args.begin(), args.end(), "--resume") == args.end()) args.push_back("--resume");
  }
  ADD_FAILURE() << "no completion after 50 attempts";
  return kills;
}

class ResumeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(visplay_binary())) << "build the visplay target: " << visplay_binary();
    dir_ = fs::temp_directory_path() /
           ("visplay_resume_cli_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  fs::path dir_;
};

TEST_F(ResumeCli, PretrainKilledAndResumedEqualsUninterrupted) {
  const std::vector<std::string> common = {
      "pretrain", "--size",       "tiny", "--steps",          "40", "--batch",       "2", "--seed",
      "5",        "--eval-every", "15",   "--eval-questions", "4",  "--state-every", "2"};
  std::vector<std::string> straight = common, killed = common;
  straight.insert(straight.end(), {"--out", path("straight")});
  killed.insert(killed.end(), {"--out", path("killed")});
  EXPECT_EQ(run_with_kills(straight, dir_ / "none", dir_ / "straight.log", 0), 0);
  const int kills =
      run_with_kills(killed, dir_ / "killed" / "train_state.safetensors", dir_ / "killed.log", 3);
  EXPECT_GE(kills, 1) << read_all(dir_ / "killed.log");
  std::cout << "pretrain CLI: " << kills << " kills" << std::endl;
  const std::string a = read_all(dir_ / "straight" / "model.safetensors");
  ASSERT_FALSE(a.empty());
  EXPECT_TRUE(a == read_all(dir_ / "killed" / "model.safetensors"));
  // Rerunning into the folder without --resume is refused (the state would be lost).
  const int s = wait_for(start(killed, dir_ / "again.log"));
  EXPECT_TRUE(WIFEXITED(s) && WEXITSTATUS(s) == 1);
  EXPECT_NE(read_all(dir_ / "again.log").find("--resume"), std::string::npos);
}

TEST_F(ResumeCli, EvolveKilledAndResumedWithoutConfigEqualsUninterrupted) {
  ASSERT_EQ(wait_for(start({"pretrain", "--out", path("base"), "--size", "tiny", "--steps", "2",
                            "--batch", "2", "--eval-every", "0"},
                           dir_ / "base.log")),
            0)
      << read_all(dir_ / "base.log");
  ASSERT_EQ(wait_for(start(
                {"world", "--out", path("images"), "--scenes", "4", "--seed", "3", "--unlabeled"},
                dir_ / "world.log")),
            0)
      << read_all(dir_ / "world.log");
  std::ofstream(path("config.json")) << R"({
    "iterations": 1, "seed": 9,
    "questioner": {"group_size": 2, "steps": 6, "rollout": {"max_new_tokens": 6}},
    "reasoner": {"group_size": 2, "steps": 2, "rollout": {"max_new_tokens": 6}},
    "uncertainty": {"samples": 2, "sampling": {"max_new_tokens": 4}},
    "data": {"candidate_images": 4, "vote_samples": 2,
             "question_sampling": {"max_new_tokens": 6}, "vote_sampling": {"max_new_tokens": 4}},
    "grpo": {"prompts_per_step": 2, "prompts_per_update": 2, "micro_batch_size": 4, "lr": 0.001}
  })";
  auto args = [&](const std::string& out) {
    return std::vector<std::string>{
        "evolve",  "--quiet",    "--config",           path("config.json"),
        "--model", path("base"), "--images",           path("images"),
        "--out",   path(out),    "--checkpoint-every", "1"};
  };
  EXPECT_EQ(run_with_kills(args("straight"), dir_ / "none", dir_ / "straight.log", 0), 0);
  // The first attempt is killed with its config; the resumes get only --images and --out.
  const fs::path state = dir_ / "killed" / "train_state.safetensors";
  const std::string before = state_position(state);
  const pid_t pid = start(args("killed"), dir_ / "killed.log");
  while (state_position(state) == before) {
    int status = 0;
    ASSERT_NE(::waitpid(pid, &status, WNOHANG), pid) << "finished before any state was saved";
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ::kill(pid, SIGKILL);
  ASSERT_TRUE(WIFSIGNALED(wait_for(pid)));
  const int kills = run_with_kills(
      {"evolve", "--quiet", "--resume", "--images", path("images"), "--out", path("killed")}, state,
      dir_ / "killed.log", 2);
  std::cout << "evolve CLI: " << 1 + kills << " kills" << std::endl;
  for (const char* role : {"questioner", "reasoner"}) {
    const std::string a = read_all(dir_ / "straight" / "iter-1" / role / "model.safetensors");
    ASSERT_FALSE(a.empty()) << role;
    EXPECT_TRUE(a == read_all(dir_ / "killed" / "iter-1" / role / "model.safetensors")) << role;
  }
}

}  // namespace
