// The training-state file (rl/train_state.h): weights, AdamW moments and step, and the info
// document round-trip bit for bit; a write killed just before its rename leaves the previous
// state intact; foreign or mismatched files are clear errors; the silver set round-trips
// exactly; and with the NaN guard tripping, the last saved state stays the last good one.
#include "rl/train_state.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "model/checkpoint.h"
#include "model/file_util.h"
#include "rl/grpo_trainer.h"
#include "rl/rollout.h"
#include "runtime/random.h"
#include "tests/rl/tiny_model.h"

namespace fs = std::filesystem;

namespace visplay::rl {
namespace {

using testing::image_prompt;
using testing::tiny_config;

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() /
             ("visplay_train_state_test_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// Raw bytes of tensors (bit patterns: NaN-safe and exact).
std::string bytes_of(const std::vector<Tensor>& tensors) {
  std::string out;
  for (const Tensor& t : tensors) {
    Tensor c = t.contiguous();
    out.append(static_cast<const char*>(c.raw_data()), static_cast<size_t>(c.numel()) * 4);
  }
  return out;
}

// A model and an AdamW over its parameters after two updates with random gradients, so that
// weights and both moments hold non-trivial values.
struct Trained {
  VLM model;
  std::unique_ptr<AdamW> optimizer;
  explicit Trained(uint64_t seed) : model(tiny_config()) {
    model.init_weights(seed);
    model.params().set_requires_grad(true);
    optimizer = std::make_unique<AdamW>(model.params().tensors(), AdamWOptions{1e-2});
    Rng rng(seed + 1);
    for (int step = 0; step < 2; ++step) {
      for (const Tensor& p : model.params().tensors()) p.set_grad(randn(p.shape(), rng));
      optimizer->step();
      optimizer->zero_grad();
    }
  }
};

TEST(TrainState, RoundTripIsBitExact) {
  testing::use_one_thread();
  TempDir dir("roundtrip");
  const std::string path = (dir.path / "state.safetensors").string();
  Trained a(3);
  const nlohmann::json info = {{"kind", "test"}, {"step", 17}, {"x", 2.0 / 3.0}};
  save_train_state(path, info, &a.model, a.optimizer.get());

  Trained b(99);  // different weights and moments: every value must be overwritten
  ASSERT_NE(bytes_of(b.model.params().tensors()), bytes_of(a.model.params().tensors()));
  b.optimizer->set_steps(-5);
  load_train_state(path, &b.model, b.optimizer.get());
  EXPECT_EQ(bytes_of(b.model.params().tensors()), bytes_of(a.model.params().tensors()));
  EXPECT_EQ(bytes_of(b.optimizer->exp_avg()), bytes_of(a.optimizer->exp_avg()));
  EXPECT_EQ(bytes_of(b.optimizer->exp_avg_sq()), bytes_of(a.optimizer->exp_avg_sq()));
  EXPECT_EQ(b.optimizer->steps(), 2);
  const nlohmann::json back = read_train_state_info(path);
  EXPECT_EQ(back, info);
  EXPECT_EQ(back["x"].get<double>(), 2.0 / 3.0);

  // The next update from the restored state equals the next update of the original.
  Rng ga(7), gb(7);
  for (const Tensor& p : a.model.params().tensors()) p.set_grad(randn(p.shape(), ga));
  for (const Tensor& p : b.model.params().tensors()) p.set_grad(randn(p.shape(), gb));
  a.optimizer->step();
  b.optimizer->step();
  EXPECT_EQ(bytes_of(b.model.params().tensors()), bytes_of(a.model.params().tensors()));
}

// Mixed precision (bf16 weights, f32 masters and moments): a run saved after 3 of 6 steps and
// resumed into a fresh model and optimizer ends bit for bit where the uninterrupted run does.
// A resume that rebuilds the masters from the bf16 weights instead does not (the check can
// fail), and a state without masters is refused.
TEST(TrainState, MixedPrecisionResumeEqualsUninterruptedRun) {
  testing::use_one_thread();
  TempDir dir("mixed");
  const std::string path = (dir.path / "state.safetensors").string();
  auto make_store = [](uint64_t seed) {
    ParamStore store;
    Rng rng(seed);
    store.set("a", (randn({37, 5}, rng) * 0.5).to(DType::bf16).detach());
    store.set("b", randn({64}, rng).to(DType::bf16).detach());
    store.set("c", randn({9}, rng).detach());  // f32: its own master
    store.set_requires_grad(true);
    return store;
  };
  AdamWOptions o{2e-3, 0.9, 0.99, 1e-8, 0.1};
  o.master_weights = true;
  auto run_steps = [](ParamStore& store, AdamW& opt, int from, int to) {
    for (int step = from; step < to; ++step) {
      Rng rng(1000 + step);
      for (const Tensor& p : store.tensors()) p.set_grad(randn(p.shape(), rng).to(p.dtype()));
      opt.step();
      opt.zero_grad();
    }
  };
  auto bits = [](const std::vector<Tensor>& ts) {
    std::string out;
    for (const Tensor& t : ts) {
      if (!t.defined()) continue;
      Tensor c = t.contiguous();
      out.append(static_cast<const char*>(c.raw_data()),
                 static_cast<size_t>(c.numel()) * dtype_size(c.dtype()));
    }
    return out;
  };

  ParamStore full = make_store(1);
  AdamW full_opt(full.tensors(), o);
  run_steps(full, full_opt, 0, 6);

  ParamStore first = make_store(1);
  AdamW first_opt(first.tensors(), o);
  run_steps(first, first_opt, 0, 3);
  save_train_state(path, {{"kind", "mixed"}}, &first, &first_opt);

  ParamStore resumed = make_store(2);  // other weights, so other masters: all must be loaded
  AdamW resumed_opt(resumed.tensors(), o);
  load_train_state(path, &resumed, &resumed_opt);
  EXPECT_EQ(bits(resumed_opt.master()), bits(first_opt.master()));
  run_steps(resumed, resumed_opt, 3, 6);
  EXPECT_EQ(bits(resumed.tensors()), bits(full.tensors()));
  EXPECT_EQ(bits(resumed_opt.master()), bits(full_opt.master()));
  EXPECT_EQ(bits(resumed_opt.exp_avg()), bits(full_opt.exp_avg()));

  // Masters rebuilt from the loaded bf16 weights lose what rounding dropped.
  ParamStore rebuilt = make_store(2);
  load_train_state(path, &rebuilt, nullptr);
  AdamW rebuilt_opt(rebuilt.tensors(), o);
  rebuilt_opt.exp_avg() = first_opt.exp_avg();
  rebuilt_opt.exp_avg_sq() = first_opt.exp_avg_sq();
  for (Tensor& t : rebuilt_opt.exp_avg()) t = t.clone();
  for (Tensor& t : rebuilt_opt.exp_avg_sq()) t = t.clone();
  rebuilt_opt.set_steps(3);
  run_steps(rebuilt, rebuilt_opt, 3, 6);
  EXPECT_NE(bits(rebuilt_opt.master()), bits(full_opt.master()));

  // A state saved by a plain (no master) optimizer cannot resume a mixed-precision one.
  AdamWOptions plain = o;
  plain.master_weights = false;
  ParamStore other = make_store(1);
  AdamW plain_opt(other.tensors(), plain);
  save_train_state(path, {{"kind", "plain"}}, &other, &plain_opt);
  try {
    load_train_state(path, &resumed, &resumed_opt);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("adamw.master.a"), std::string::npos) << e.what();
  }
}

void kill_self(const std::string&) { ::raise(SIGKILL); }

TEST(TrainState, WriteKilledBeforeRenameKeepsThePreviousState) {
  testing::use_one_thread();
  TempDir dir("killed");
  const std::string path = (dir.path / "state.safetensors").string();
  Trained a(4), b(5);
  save_train_state(path, {{"which", "a"}}, &a.model, a.optimizer.get());
  const pid_t pid = ::fork();
  if (pid == 0) {
    set_before_rename_hook(&kill_self);
    save_train_state(path, {{"which", "b"}}, &b.model, b.optimizer.get());
    ::_exit(0);  // not reached
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  // The complete new file was there, under its temporary name only.
  int temporaries = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    if (e.path().filename().string().find(".tmp.") != std::string::npos) {
      ++temporaries;
      EXPECT_EQ(fs::file_size(e.path()), fs::file_size(path));
    }
  }
  EXPECT_EQ(temporaries, 1);
  // The state on disk is still a, complete and bit-exact.
  EXPECT_EQ(read_train_state_info(path)["which"], "a");
  Trained c(6);
  load_train_state(path, &c.model, c.optimizer.get());
  EXPECT_EQ(bytes_of(c.model.params().tensors()), bytes_of(a.model.params().tensors()));
  EXPECT_EQ(bytes_of(c.optimizer->exp_avg_sq()), bytes_of(a.optimizer->exp_avg_sq()));
  // Without the hook the next write goes through.
  save_train_state(path, {{"which", "b"}}, &b.model, b.optimizer.get());
  EXPECT_EQ(read_train_state_info(path)["which"], "b");
}

TEST(TrainState, ForeignAndMismatchedFilesAreErrors) {
  testing::use_one_thread();
  TempDir dir("errors");
  Trained a(8);
  // A model checkpoint is not a training state.
  save_checkpoint((dir.path / "ckpt").string(), a.model);
  try {
    read_train_state_info((dir.path / "ckpt" / "model.safetensors").string());
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("not a visplay training state"), std::string::npos)
        << e.what();
  }
  // A state of another model size: the error names the tensor and both shapes.
  const std::string path = (dir.path / "state.safetensors").string();
  save_train_state(path, {{"kind", "test"}}, &a.model, a.optimizer.get());
  VLMConfig other = tiny_config();
  other.decoder.hidden_size = 16;
  VLM small(other);
  try {
    load_train_state(path, &small, nullptr);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("has shape"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("weights."), std::string::npos) << e.what();
  }
  // A state without optimizer moments cannot restore an optimizer.
  save_train_state(path, {{"kind", "test"}}, &a.model, nullptr);
  EXPECT_THROW(load_train_state(path, &a.model, a.optimizer.get()), std::runtime_error);
  // An optimizer over tensors that are not the model's cannot be saved with it.
  Trained b(9);
  EXPECT_THROW(save_train_state(path, {}, &a.model, b.optimizer.get()), std::runtime_error);
}

TEST(TrainState, SilverSetRoundTripsExactly) {
  SilverSet set;
  Rng rng(12);
  for (int i = 0; i < 5; ++i) {
    SilverQuestion q;
    q.image = rng.randint(0, 1000);
    q.output = "<question> q" + std::to_string(i) + " \xce\xbb </question>";
    q.valid = i != 2;
    q.question = "how many " + std::to_string(i);
    q.has_label = i % 2 == 0;
    q.label = std::to_string(rng.randint(0, 9));
    q.confidence = rng.uniform();
    q.kept = i % 3 == 0;
    for (int v = 0; v < 3; ++v) {
      if (rng.uniform() < 0.3) {
        q.votes.emplace_back(std::nullopt);
      } else {
        q.votes.emplace_back(std::to_string(rng.randint(0, 5)));
      }
    }
    if (i % 2) q.greedy = "g" + std::to_string(i);
    set.questions.push_back(q);
  }
  set.kept = 2;
  set.confidence_histogram = {1, 0, 3, 1};
  set.seconds = rng.uniform() * 100;
  const nlohmann::json j = nlohmann::json::parse(silver_set_to_json(set).dump());
  SilverSet back = silver_set_from_json(j, "test");
  ASSERT_EQ(back.questions.size(), set.questions.size());
  for (size_t i = 0; i < set.questions.size(); ++i) {
    const SilverQuestion &a = set.questions[i], &b = back.questions[i];
    EXPECT_EQ(a.image, b.image);
    EXPECT_EQ(a.output, b.output);
    EXPECT_EQ(a.valid, b.valid);
    EXPECT_EQ(a.question, b.question);
    EXPECT_EQ(a.has_label, b.has_label);
    EXPECT_EQ(a.label, b.label);
    EXPECT_EQ(std::memcmp(&a.confidence, &b.confidence, sizeof(double)), 0) << i;
    EXPECT_EQ(a.kept, b.kept);
    EXPECT_EQ(a.votes, b.votes);
    EXPECT_EQ(a.greedy, b.greedy);
  }
  EXPECT_EQ(back.kept, set.kept);
  EXPECT_EQ(back.confidence_histogram, set.confidence_histogram);
  EXPECT_EQ(back.seconds, set.seconds);
  // A malformed document names the question and the field.
  nlohmann::json bad = j;
  bad["questions"][3]["confidence"] = "high";
  try {
    silver_set_from_json(bad, "state.safetensors: silver");
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("questions[3]"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("confidence"), std::string::npos) << e.what();
  }
}

// Rollouts with fixed responses and log-probs from the training forward.
std::vector<Generation> fixed_rollouts(const VLM& m, const std::vector<PromptInput>& prompts,
                                       const std::vector<std::vector<int64_t>>& responses) {
  std::vector<Generation> out;
  std::vector<int64_t> rows;
  std::vector<std::vector<int64_t>> completions;
  for (size_t p = 0; p < prompts.size(); ++p) {
    for (const auto& r : responses) {
      Generation g;
      g.prompt_index = static_cast<int64_t>(p);
      g.tokens = r;
      g.stopped = true;
      out.push_back(g);
      rows.push_back(static_cast<int64_t>(p));
      completions.push_back(r);
    }
  }
  auto lp = score_completions(m, prompts, rows, completions, 4);
  for (size_t i = 0; i < out.size(); ++i) out[i].logprobs = lp[i];
  return out;
}

// The NaN guard with states: good updates are saved; NaN rewards make every following update
// non-finite, each is skipped (weights untouched) and the run stops after
// max_nonfinite_updates in a row. The state on disk is then the last good one, and a trainer
// restored from it (with its skip counter) stops at exactly the same update.
TEST(TrainState, NanGuardLeavesTheLastGoodStateIntact) {
  testing::use_one_thread();
  TempDir dir("nan");
  const std::string path = (dir.path / "state.safetensors").string();
  Rng rng(31);
  VLM model(tiny_config());
  model.init_weights(13);
  const std::vector<PromptInput> prompts = {image_prompt(model.config(), rng, {1, 2, 3})};
  const std::vector<std::vector<int64_t>> responses = {{5, 36}, {6, 7, 36}, {8, 9, 10, 36}};
  GrpoConfig g;
  g.lr = 1e-2;
  g.max_nonfinite_updates = 3;
  GrpoTrainer trainer(model, g);
  const std::vector<double> good = {1.0, 0.0, 0.25};
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> bad = {nan, 0.0, 0.25};
  ASSERT_EQ(trainer.train_on(prompts, fixed_rollouts(model, prompts, responses), 3, good).updates,
            1);
  ASSERT_EQ(trainer.train_on(prompts, fixed_rollouts(model, prompts, responses), 3, good).updates,
            1);
  const std::string good_weights = bytes_of(model.params().tensors());
  // One skipped update, then the state (skip counter 1) is saved.
  GrpoStepStats st = trainer.train_on(prompts, fixed_rollouts(model, prompts, responses), 3, bad);
  EXPECT_EQ(st.skipped_updates, 1);
  EXPECT_EQ(bytes_of(model.params().tensors()), good_weights);
  save_train_state(path, {{"nonfinite_in_a_row", trainer.nonfinite_in_a_row()}}, &model,
                   &trainer.optimizer());
  const std::string saved_file = [&] {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }();
  // Two more: the third in a row stops the run; nothing was written, nothing changed.
  trainer.train_on(prompts, fixed_rollouts(model, prompts, responses), 3, bad);
  EXPECT_THROW(trainer.train_on(prompts, fixed_rollouts(model, prompts, responses), 3, bad),
               std::runtime_error);
  EXPECT_EQ(bytes_of(model.params().tensors()), good_weights);
  {
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()) ==
                saved_file);
  }
  // Restored: finite weights equal to the good ones, and the same stop after two more skips.
  VLM restored(tiny_config());
  restored.init_weights(14);
  GrpoTrainer again(restored, g);
  load_train_state(path, &restored, &again.optimizer());
  again.set_nonfinite_in_a_row(read_train_state_info(path)["nonfinite_in_a_row"].get<int64_t>());
  EXPECT_EQ(bytes_of(restored.params().tensors()), good_weights);
  for (const Tensor& t : restored.params().tensors()) {
    for (float x : t.to_vector<float>()) ASSERT_TRUE(std::isfinite(x));
  }
  again.train_on(prompts, fixed_rollouts(restored, prompts, responses), 3, bad);
  EXPECT_THROW(again.train_on(prompts, fixed_rollouts(restored, prompts, responses), 3, bad),
               std::runtime_error);
}

}  // namespace
}  // namespace visplay::rl
