#include "rl/evolve.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>

#include "data/benchmark.h"
#include "data/shapeworld.h"
#include "model/file_util.h"
#include "model/image.h"
#include "model/policy.h"
#include "model/tokenizer.h"
#include "rl/diagnostics.h"
#include "rl/grpo_trainer.h"
#include "rl/reasoner_data.h"
#include "rl/role_rewards.h"
#include "rl/roles.h"
#include "rl/train_state.h"
#include "runtime/metrics_log.h"
#include "runtime/progress.h"
#include "runtime/random.h"

namespace fs = std::filesystem;

namespace visplay::rl {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Phase ids for seed derivation (never change them: resume relies on the same streams).
enum SeedStream : uint64_t {
  kQuestionerReward = 1,
  kQuestionerOrder = 2,
  kQuestionerStep = 3,
  kCandidates = 4,
  kSilver = 5,
  kReasonerOrder = 6,
  kReasonerStep = 7,
  kDiagnostics = 8,
};

// The unlabeled images: a ShapeWorld folder (scenes.jsonl lists the images and carries the
// scenes for the oracle) or any folder of PNG/JPEG files. Each is prepared for the model when
// it is used (PolicyModel::prepare_image).
struct ImageSet {
  std::vector<std::string> paths;
  std::vector<world::Scene> scenes;  // empty without an oracle
  const PolicyModel* model = nullptr;

  bool has_oracle() const { return !scenes.empty(); }
  Tensor load(size_t i) const { return model->prepare_image_file(paths.at(i)); }
};

ImageSet open_images(const std::string& dir, const PolicyModel& model) {
  ImageSet set;
  set.model = &model;
  if (fs::exists(fs::path(dir) / "scenes.jsonl")) {
    for (const PoolImage& p : read_scenes(dir)) {
      set.paths.push_back((fs::path(dir) / p.image).string());
      set.scenes.push_back(p.scene);
    }
  } else {
    ImageFolder folder(dir);
    set.paths = folder.paths();
  }
  if (set.paths.empty()) throw std::runtime_error("images folder " + dir + " holds no images");
  return set;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

double num(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : 0.0;
}

// ", absent-object labels 0.xyz of N" for the data line: how often the kept labels about
// something absent are right (a wrong one teaches the Reasoner to hallucinate).
std::string kept_hallucination_note(const nlohmann::json& oracle) {
  const auto it = oracle.find("silver_accuracy_kept_hallucination");
  if (it == oracle.end() || !it->is_number()) return "";
  return ", absent-object labels " + fmt("%.3f", it->get<double>()) + " of " +
         fmt("%.0f", num(oracle, "kept_hallucination"));
}

// One console line per GRPO step.
std::string step_line(int iteration, int iterations, const std::string& phase, int step, int steps,
                      const GrpoStepStats& s) {
  nlohmann::json r = s.reward_metrics;
  std::string line = "[iter " + std::to_string(iteration) + "/" + std::to_string(iterations) +
                     "] " + phase + " step " + std::to_string(step) + "/" + std::to_string(steps) +
                     " | reward " + fmt("%.3f", s.reward_mean) + " +- " + fmt("%.3f", s.reward_std);
  if (phase == "questioner") {
    line += " valid " + fmt("%.2f", num(r, "valid_fraction")) + " r_unc " +
            fmt("%.3f", num(r, "r_unc_mean")) + " r_div " + fmt("%.3f", num(r, "r_div_mean"));
  } else {
    line += " match " + fmt("%.2f", num(r, "silver_match")) + " boxed " +
            fmt("%.2f", num(r, "format_fraction"));
  }
  line += " | kl " + fmt("%.2e", s.kl) + " clip " + fmt("%.3f", s.clip_fraction) + " ent " +
          fmt("%.3f", s.entropy) + " gnorm " + fmt("%.3f", s.grad_norm) + " | len " +
          fmt("%.1f", s.response_length_mean) + " | gen " + fmt("%.0f", s.generation_tokens_per_s) +
          " tok/s " + fmt("%.1f", s.generation_seconds) + "s, reward " +
          fmt("%.1f", s.reward_seconds) + "s, train " + fmt("%.0f", s.training_tokens_per_s) +
          " tok/s " + fmt("%.1f", s.training_seconds) + "s";
  return line;
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  write_file_atomic(path.string(), text);
}

// The training-state keys that may change between a kill and its resume without changing what
// is computed: how far to go and how often to save.
nlohmann::json resumable_config(const VisPlayConfig& cfg) {
  nlohmann::json j = cfg.to_json();
  j.erase("iterations");
  j.erase("checkpoint_every");
  return j;
}

// The first key (dotted) whose value differs between two configs, "" when they agree.
std::string first_config_difference(const nlohmann::json& saved, const nlohmann::json& now) {
  const nlohmann::json a = saved.flatten(), b = now.flatten();
  for (auto it = b.begin(); it != b.end(); ++it) {
    if (!a.contains(it.key()) || a[it.key()] != it.value()) {
      std::string key = it.key().substr(1);
      for (char& ch : key) {
        if (ch == '/') ch = '.';
      }
      return key + " (saved " + (a.contains(it.key()) ? a[it.key()].dump() : "nothing") + ", now " +
             it.value().dump() + ")";
    }
  }
  for (auto it = a.begin(); it != a.end(); ++it) {
    if (!b.contains(it.key())) return it.key().substr(1) + " (only in the saved state)";
  }
  return "";
}

// Where a resumed run continues: the saved state's position inside an iteration, or the start
// of the iteration after the last complete one.
struct ResumePoint {
  int iteration = 1;
  std::string phase = "questioner";  // questioner | silver | reasoner
  int64_t step = 0;                  // steps (or candidates) of the phase already done
  nlohmann::json info;               // the state's info; null when starting fresh
  bool mid_iteration() const { return !info.is_null() && (phase != "questioner" || step > 0); }
};

template <class T>
T info_field(const nlohmann::json& info, const char* key, const std::string& path) {
  if (!info.contains(key)) {
    throw std::runtime_error(path + ": training state has no field \"" + std::string(key) + "\"");
  }
  try {
    return info.at(key).get<T>();
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": training state field \"" + std::string(key) +
                             "\" = " + info.at(key).dump() + " has the wrong type");
  }
}

nlohmann::json optional_json(const std::optional<std::string>& s) {
  return s ? nlohmann::json(*s) : nlohmann::json(nullptr);
}

// A silver-set part as JSON (data parallel: parts travel between ranks as text).
nlohmann::json silver_part_json(const SilverSet& part, size_t begin) {
  nlohmann::json questions = nlohmann::json::array();
  for (const SilverQuestion& q : part.questions) {
    nlohmann::json votes = nlohmann::json::array();
    for (const auto& v : q.votes) votes.push_back(optional_json(v));
    questions.push_back({{"image", q.image},
                         {"output", q.output},
                         {"valid", q.valid},
                         {"question", q.question},
                         {"has_label", q.has_label},
                         {"label", q.label},
                         {"confidence", q.confidence},
                         {"kept", q.kept},
                         {"votes", votes},
                         {"greedy", optional_json(q.greedy)}});
  }
  return {{"begin", begin},
          {"kept", part.kept},
          {"histogram", part.confidence_histogram},
          {"questions", questions}};
}

SilverSet silver_part_from_json(const nlohmann::json& j) {
  auto optional_string = [](const nlohmann::json& v) -> std::optional<std::string> {
    if (v.is_null()) return std::nullopt;
    return v.get<std::string>();
  };
  SilverSet part;
  part.kept = j["kept"].get<int64_t>();
  part.confidence_histogram = j["histogram"].get<std::vector<int64_t>>();
  for (const nlohmann::json& x : j["questions"]) {
    SilverQuestion q;
    q.image = x["image"].get<int64_t>();
    q.output = x["output"].get<std::string>();
    q.valid = x["valid"].get<bool>();
    q.question = x["question"].get<std::string>();
    q.has_label = x["has_label"].get<bool>();
    q.label = x["label"].get<std::string>();
    q.confidence = x["confidence"].get<double>();
    q.kept = x["kept"].get<bool>();
    for (const nlohmann::json& v : x["votes"]) q.votes.push_back(optional_string(v));
    q.greedy = optional_string(x["greedy"]);
    part.questions.push_back(std::move(q));
  }
  return part;
}

std::unique_ptr<ProgressBar> make_bar(std::ostream* out, const std::string& label, int64_t total,
                                      const std::string& unit) {
  if (!out) return nullptr;
  ProgressOptions o;
  o.unit = unit;
  return std::make_unique<ProgressBar>(label, total, *out, o);
}

}  // namespace

VisPlayConfig shapeworld_evolve_config() {
  VisPlayConfig c;
  c.prompts = shapeworld_prompts();
  c.questioner.rollout.max_new_tokens = 32;
  c.reasoner.rollout.max_new_tokens = 96;
  c.uncertainty.sampling.max_new_tokens = 16;
  c.data.candidate_images = 512;
  c.data.question_sampling.max_new_tokens = 32;
  c.data.vote_sampling.max_new_tokens = 96;
  c.grpo.prompts_per_step = 16;
  c.grpo.prompts_per_update = 4;  // 4 updates a step, as the reference (512 / 128)
  c.grpo.micro_batch_size = 32;
  c.grpo.lr = 1e-5;
  c.validate();
  return c;
}

std::string evolve_state_path(const std::string& out_dir) {
  return (fs::path(out_dir) / "train_state.safetensors").string();
}

int last_complete_iteration(const std::string& out_dir) {
  int last = 0;
  if (!fs::is_directory(out_dir)) return 0;
  for (const auto& entry : fs::directory_iterator(out_dir)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("iter-", 0) != 0) continue;
    try {
      size_t used = 0;
      int k = std::stoi(name.substr(5), &used);
      if (used == name.size() - 5 && fs::exists(entry.path() / "summary.json")) {
        last = std::max(last, k);
      }
    } catch (const std::exception&) {
      // not an iteration folder
    }
  }
  return last;
}

EvolveResult run_evolve(const EvolveOptions& opt) {
  const VisPlayConfig& cfg = opt.config;
  cfg.validate();
  const int iterations = opt.iterations > 0 ? opt.iterations : cfg.iterations;
  const uint64_t seed = static_cast<uint64_t>(cfg.seed);
  std::shared_ptr<dist::DataParallel> dp =
      opt.data_parallel ? opt.data_parallel : std::make_shared<dist::DataParallel>();
  const int rank = dp->rank(), world = dp->size();
  // Rank 0 alone prints.
  std::ostream* console = dp->is_main() ? opt.console : nullptr;
  std::ostream* progress = dp->is_main() ? opt.progress : nullptr;
  auto say = [&](const std::string& line) {
    if (console) *console << line << std::endl;
  };

  // ---- starting point: the base checkpoint, the last complete iteration, or the saved
  // training state inside the iteration after it ----
  // Rank 0's view of the folder decides (and lines the ranks up before anything is written);
  // every rank then reads the same state file (OUT on a shared file system).
  const std::string state_path = evolve_state_path(opt.out_dir);
  const std::vector<double> found =
      dp->sum({dp->is_main() ? static_cast<double>(last_complete_iteration(opt.out_dir)) : 0.0,
               dp->is_main() && fs::exists(state_path) ? 1.0 : 0.0});
  const int done = static_cast<int>(found[0]);
  const bool has_state = found[1] > 0;
  if ((done > 0 || has_state) && !opt.resume) {
    throw std::runtime_error("output folder " + opt.out_dir + " already holds " +
                             (done > 0
                                  ? "iteration " + std::to_string(done)
                                  : std::string("a training state (train_state.safetensors)")) +
                             "; pass --resume to continue it or choose another folder");
  }
  const int start = opt.resume ? done + 1 : 1;
  ResumePoint at;
  at.iteration = start;
  if (opt.resume && has_state) {
    nlohmann::json info = read_train_state_info(state_path);
    if (info.value("kind", "") != "evolve") {
      throw std::runtime_error(state_path + ": not an evolve training state (kind " +
                               info.value("kind", std::string("missing")) + ")");
    }
    const int state_iteration = info_field<int>(info, "iteration", state_path);
    if (state_iteration > done + 1) {
      throw std::runtime_error(state_path + ": the state is in iteration " +
                               std::to_string(state_iteration) + " but the last complete one is " +
                               std::to_string(done) + " (iter-" + std::to_string(done + 1) +
                               "/summary.json or an earlier one is missing)");
    }
    // An older state (killed between summary.json and the next state) is superseded by the
    // complete iteration.
    if (state_iteration == done + 1) {
      at.info = info;
      at.phase = info_field<std::string>(info, "phase", state_path);
      at.step = info_field<int64_t>(info, "step", state_path);
      if (at.phase != "questioner" && at.phase != "silver" && at.phase != "reasoner") {
        throw std::runtime_error(state_path + ": unknown phase '" + at.phase + "'");
      }
    }
  }
  if (at.mid_iteration()) {
    const std::string diff = first_config_difference(
        info_field<nlohmann::json>(at.info, "config", state_path), resumable_config(cfg));
    if (!diff.empty()) {
      throw std::runtime_error(
          "evolve --resume: the configuration differs from the saved state's (" + state_path +
          ") in " + diff +
          "; resume with the same configuration (only iterations and "
          "checkpoint_every may change)");
    }
  }
  // ZeRO-1 keeps each rank's block of the AdamW moments only, which the state file cannot
  // hold: states inside a GRPO phase are not written, so a resume redoes the phase from its
  // start (the phase-boundary and silver states carry no optimizer).
  const bool zero1 = dp->zero1();
  if (zero1 && at.mid_iteration() && at.phase != "silver" && at.step > 0) {
    throw std::runtime_error("evolve --resume --zero1: the training state " + state_path +
                             " is inside the " + at.phase + " phase (step " +
                             std::to_string(at.step) +
                             ") and holds full AdamW moments, which ZeRO-1 cannot take; resume "
                             "without --zero1 (docs/reliability.md)");
  }
  // The base checkpoint: --model, or the one the saved state names.
  std::string base_dir = opt.model_dir;
  if (base_dir.empty() && !at.info.is_null()) base_dir = at.info.value("model_dir", "");
  std::string questioner_dir = base_dir, reasoner_dir = base_dir;
  if (start > 1) {
    const fs::path prev = fs::path(opt.out_dir) / ("iter-" + std::to_string(start - 1));
    questioner_dir = (prev / "questioner").string();
    reasoner_dir = (prev / "reasoner").string();
  } else if (base_dir.empty()) {
    throw std::runtime_error("evolve: no starting checkpoint (--model DIR)");
  }
  // Past the questioner phase its result is iter-K/questioner (written when the phase ended).
  if (at.mid_iteration() && at.phase != "questioner") {
    questioner_dir =
        (fs::path(opt.out_dir) / ("iter-" + std::to_string(start)) / "questioner").string();
  }
  for (const std::string& dir : {questioner_dir, reasoner_dir}) {
    if (!fs::is_directory(dir))
      throw std::runtime_error("evolve: model folder " + dir +
                               " does not exist or is not a folder");
  }
  const std::string tokenizer_file = (fs::path(questioner_dir) / "tokenizer.json").string();
  if (!fs::exists(tokenizer_file)) {
    throw std::runtime_error("checkpoint " + questioner_dir +
                             " has no tokenizer.json (the roles need its vocabulary)");
  }
  std::unique_ptr<Tokenizer> tokenizer = load_tokenizer(tokenizer_file);
  // Each role behind the policy interface: the demo VLM or a Qwen2.5-VL directory. Mixed
  // precision loads bf16 weights directly (tensor by tensor, exact from the f32 checkpoints
  // this loop writes, which hold bf16 values), never the whole f32 model; the trainers' AdamW
  // keeps the f32 masters.
  const DType weight_dtype = cfg.grpo.master_weights ? DType::bf16 : DType::f32;
  if (cfg.grpo.master_weights) {
    for (const std::string& dir : {questioner_dir, reasoner_dir}) {
      if (!is_qwen25vl_dir(dir)) {
        throw std::runtime_error(
            "evolve: grpo.master_weights needs a Qwen2.5-VL model (visplay given in " + dir + ")");
      }
    }
  }
  std::unique_ptr<PolicyModel> questioner_model = load_policy(questioner_dir, weight_dtype);
  std::unique_ptr<PolicyModel> reasoner_model = load_policy(reasoner_dir, weight_dtype);
  if (questioner_model->kind() != reasoner_model->kind()) {
    throw std::runtime_error("evolve: " + questioner_dir + " holds a " + questioner_model->kind() +
                             " model but " + reasoner_dir + " a " + reasoner_model->kind() +
                             " one");
  }
  // Qwen2.5-VL images: the config's area bounds (the reference resizes to 512^2..2048^2).
  for (PolicyModel* m : {questioner_model.get(), reasoner_model.get()}) {
    if (auto* q = dynamic_cast<Qwen25VLPolicy*>(m))
      q->set_pixel_bounds(cfg.images.min_pixels, cfg.images.max_pixels);
  }
  PolicyModel& questioner = *questioner_model;
  PolicyModel& reasoner = *reasoner_model;
  const RoleSetup setup = make_role_setup(questioner, *tokenizer, cfg);
  const ImageSet images = open_images(opt.images_dir, questioner);

  // Rank 0 alone writes files and logs; the other ranks' records go nowhere.
  const fs::path open_iteration = fs::path(opt.out_dir) / ("iter-" + std::to_string(start));
  const std::string metrics_path = (fs::path(opt.out_dir) / "metrics.jsonl").string();
  if (dp->is_main()) {
    fs::create_directories(opt.out_dir);
    // Temporary files of writes that a kill interrupted (in the folder and the open iteration).
    for (const fs::path& dir : {fs::path(opt.out_dir), open_iteration,
                                open_iteration / "questioner", open_iteration / "reasoner"}) {
      if (fs::is_directory(dir)) remove_stale_temporaries(dir.string());
    }
    cfg.save((fs::path(opt.out_dir) / "config.json").string());
    // Metrics logged after the saved state belong to work that is redone: drop them.
    if (!at.info.is_null() && fs::exists(metrics_path)) {
      const uintmax_t saved = info_field<uintmax_t>(at.info, "metrics_bytes", state_path);
      if (fs::file_size(metrics_path) > saved) fs::resize_file(metrics_path, saved);
    }
  }
  MetricsLog log(dp->is_main() ? metrics_path : "/dev/null", /*truncate=*/!opt.resume);
  // One GRPO step of either role: its metrics record and its console line.
  auto report_step = [&](int it, const char* phase, int step, int steps, const GrpoStepStats& st) {
    nlohmann::json rec = st.to_json();
    rec["event"] = "step";
    rec["iteration"] = it;
    rec["phase"] = phase;
    rec["step"] = step;
    log.write(rec);
    say(step_line(it, iterations, phase, step, steps, st));
  };
  const std::string base_dir_abs = base_dir.empty() ? "" : fs::absolute(base_dir).string();
  const int every = cfg.checkpoint_every;
  // Writes the training state (rank 0; every rank holds the same weights, optimizer and silver
  // set, and the others wait at a barrier until the file is complete). `position` adds the
  // phase's own fields (global data position, RNG counters, the silver set, ...). `summary` is
  // the iteration's summary so far.
  auto save_state = [&](int iteration, const std::string& phase, int64_t step,
                        const nlohmann::json& summary_so_far, const nlohmann::json& position,
                        const ParamStore* model, GrpoTrainer* trainer) {
    if (dp->is_main()) {
      nlohmann::json info = {{"kind", "evolve"},
                             {"iteration", iteration},
                             {"phase", phase},
                             {"step", step},
                             {"seed", cfg.seed},
                             {"config", resumable_config(cfg)},
                             {"model_dir", base_dir_abs},
                             {"threads", cpu_thread_count()},
                             {"ranks", world},
                             {"metrics_bytes", fs::file_size(metrics_path)},
                             {"summary", summary_so_far}};
      for (auto it = position.begin(); it != position.end(); ++it) info[it.key()] = it.value();
      if (trainer) info["nonfinite_in_a_row"] = trainer->nonfinite_in_a_row();
      save_train_state(state_path, info, model, trainer ? &trainer->optimizer() : nullptr);
    }
    dp->barrier();
  };
  if (!at.info.is_null() && at.info.value("threads", 0) != cpu_thread_count()) {
    say("evolve: warning: the saved state was made with " +
        std::to_string(at.info.value("threads", 0)) + " CPU threads, this run has " +
        std::to_string(cpu_thread_count()) +
        "; the result is not guaranteed bit-identical to an uninterrupted run");
  }
  if (!at.info.is_null() && at.info.value("ranks", 1) != world) {
    say("evolve: warning: the saved state was made with " +
        std::to_string(at.info.value("ranks", 1)) + " ranks, this run has " +
        std::to_string(world) +
        "; the result is not guaranteed bit-identical to an uninterrupted run");
  }

  EvolveResult result;
  result.first_iteration = start;
  result.last_iteration = start - 1;
  if (start > iterations) {
    say("evolve: " + opt.out_dir + " already has " + std::to_string(done) +
        " iterations; nothing to do");
    return result;
  }
  if (cfg.reasoner.labels != LabelSource::silver && !images.has_oracle()) {
    throw std::runtime_error("evolve: reasoner.labels = " + to_string(cfg.reasoner.labels) +
                             " needs the ShapeWorld oracle, but the images have no scenes "
                             "(use a folder written by `visplay world`)");
  }
  say("evolve: " + std::to_string(images.paths.size()) + " images" +
      (images.has_oracle() ? " (ShapeWorld oracle available for diagnostics)" : "") +
      ", iterations " + std::to_string(start) + ".." + std::to_string(iterations) +
      ", chat format " + setup.format.name + ", " + std::to_string(questioner.params().numel()) +
      " parameters per role");
  if (at.mid_iteration()) {
    say("evolve: resuming iteration " + std::to_string(start) + " in the " + at.phase +
        " phase after " + std::to_string(at.step) +
        (at.phase == "silver" ? " candidates" : " steps") + " (" + state_path + ")");
  }
  log.write({{"event", "start"},
             {"images", images.paths.size()},
             {"oracle", images.has_oracle()},
             {"first_iteration", start},
             {"iterations", iterations},
             {"parameters", questioner.params().numel()},
             {"resume", at.mid_iteration() ? nlohmann::json{{"phase", at.phase}, {"step", at.step}}
                                           : nlohmann::json(nullptr)},
             {"ranks", world},
             {"config", cfg.to_json()}});

  const size_t n_images = images.paths.size();
  for (int it = start; it <= iterations; ++it) {
    const auto t_iter = Clock::now();
    const fs::path iter_dir = fs::path(opt.out_dir) / ("iter-" + std::to_string(it));
    if (dp->is_main()) fs::create_directories(iter_dir);
    // Inside the iteration a saved state continues from (first iteration of a resumed run).
    const bool resumed = it == start && at.mid_iteration();
    const std::string resume_phase = resumed ? at.phase : "questioner";
    const int64_t resume_step = resumed ? at.step : 0;
    nlohmann::json summary = {{"iteration", it}};
    if (resumed) summary = info_field<nlohmann::json>(at.info, "summary", state_path);

    // ---- phase 1: Questioner GRPO against the frozen Reasoner ----
    const auto t_q = Clock::now();
    if (resume_phase == "questioner") {
      GrpoTrainer trainer(questioner, cfg.grpo, dp);
      // The trainer's reference is the phase's starting weights (loaded above); the trained
      // weights and the optimizer come from the state (every rank loads the same file).
      if (resume_step > 0) {
        load_train_state(state_path, &questioner.params(), &trainer.optimizer());
        trainer.set_nonfinite_in_a_row(
            info_field<int64_t>(at.info, "nonfinite_in_a_row", state_path));
      }
      // Each rank's Reasoner votes draw from a stream of its own (rank 0: the single-process
      // one). Every rank calls its reward once per step, so each stream has made resume_step
      // calls.
      const uint64_t reward_seed = mix_seed(seed, it, kQuestionerReward);
      RewardFn reward = make_questioner_reward(
          reasoner, setup, cfg, rank == 0 ? reward_seed : mix_seed(reward_seed, rank),
          static_cast<uint64_t>(resume_step));
      const std::vector<size_t> order = permutation(n_images, mix_seed(seed, it, kQuestionerOrder));
      const size_t per_step = std::min<size_t>(cfg.grpo.prompts_per_step, n_images);
      const SamplingOptions sampling =
          to_sampling_options(cfg.questioner.rollout, setup.stop_token);
      auto bar = make_bar(progress, "iter " + std::to_string(it) + " questioner GRPO",
                          cfg.questioner.steps, "step");
      if (bar && resume_step > 0) bar->set(resume_step);
      // This rank's share of every update's prompts (all of them with one process).
      const std::vector<int64_t> mine = dist::update_shard_indices(
          static_cast<int64_t>(per_step), cfg.grpo.prompts_per_update, rank, world);
      for (int s = static_cast<int>(resume_step); s < cfg.questioner.steps; ++s) {
        std::vector<PromptInput> prompts(mine.size());
        for (size_t k = 0; k < mine.size(); ++k) {
          const size_t i = static_cast<size_t>(mine[k]);
          Tensor image = images.load(order[(s * per_step + i) % n_images]);
          prompts[k] = {build_questioner_prompt(setup.format, *tokenizer,
                                                setup.visual_tokens(image), setup.prompts),
                        image};
        }
        GrpoStepStats st = trainer.step(prompts, cfg.questioner.group_size, sampling, reward,
                                        mix_seed(seed, it, kQuestionerStep * 100000 + s), mine);
        report_step(it, "questioner", s + 1, cfg.questioner.steps, st);
        if (bar) {
          bar->set_field("reward", st.reward_mean, 3);
          bar->set_field("valid", num(st.reward_metrics, "valid_fraction"), 2);
          bar->advance();
        }
        if (opt.after_step) opt.after_step(it, "questioner", s + 1);
        if (!zero1 && (s + 1) % every == 0 && s + 1 < cfg.questioner.steps) {
          // Data position: the next prompt is order[(s + 1) * per_step]; the reward's RNG
          // stream has made s + 1 calls; every other seed derives from (seed, iteration, step).
          save_state(it, "questioner", s + 1, summary,
                     {{"data_position", static_cast<uint64_t>(s + 1) * per_step},
                      {"rng", {{"questioner_reward_calls", s + 1}}}},
                     &questioner.params(), &trainer);
        }
      }
      summary["questioner_seconds"] = seconds_since(t_q);
      // Phase end: the new Questioner is final for this iteration (rank 0 writes it; save_state's
      // barrier holds the others until it is complete).
      if (dp->is_main()) {
        questioner.save((iter_dir / "questioner").string(), questioner_dir);
      }
      save_state(it, "silver", 0, summary, nlohmann::json::object(), nullptr, nullptr);
    }

    // ---- phase 2: silver labels ----
    const auto t_d = Clock::now();
    const size_t candidates = std::min<size_t>(cfg.data.candidate_images, n_images);
    const std::vector<size_t> cand_order = permutation(
        n_images, mix_seed(seed, cfg.data.same_images_every_iteration ? 0 : it, kCandidates));
    SilverSet silver;
    silver.confidence_histogram.assign(static_cast<size_t>(cfg.data.vote_samples) + 1, 0);
    // Past this phase the whole silver set comes from the state (nothing is logged again);
    // inside it, the chunks done so far.
    const bool silver_restored = resume_phase == "reasoner";
    if (resume_phase != "questioner" && (silver_restored || resume_step > 0)) {
      silver = silver_set_from_json(info_field<nlohmann::json>(at.info, "silver", state_path),
                                    state_path + ": silver");
    }
    if (!silver_restored) {
      const size_t chunk = std::max<size_t>(
          1, static_cast<size_t>(cfg.grpo.generation_batch / cfg.data.vote_samples));
      auto bar = make_bar(progress, "iter " + std::to_string(it) + " silver labels",
                          static_cast<int64_t>(candidates), "img");
      const size_t first = resume_phase == "silver" ? static_cast<size_t>(resume_step) : 0;
      if (first % chunk != 0 && first < candidates) {
        throw std::runtime_error(state_path + ": silver position " + std::to_string(first) +
                                 " is not a multiple of the chunk size " + std::to_string(chunk));
      }
      if (bar && first > 0) bar->set(static_cast<int64_t>(first));
      // Chunk k goes to rank k % world, seeded by its first image as with one process, so the
      // silver set does not depend on the number of ranks; the parts are gathered at every
      // state save and at the end, so a saved silver set is always whole.
      auto add_part = [&silver](SilverSet& part, size_t begin) {
        for (SilverQuestion& q : part.questions) {
          q.image += static_cast<int64_t>(begin);
          silver.questions.push_back(std::move(q));
        }
        silver.kept += part.kept;
        for (size_t h = 0; h < part.confidence_histogram.size(); ++h) {
          silver.confidence_histogram[h] += part.confidence_histogram[h];
        }
      };
      nlohmann::json my_parts = nlohmann::json::array();
      for (size_t begin = first, k = first / chunk; begin < candidates; begin += chunk, ++k) {
        const size_t end = std::min(candidates, begin + chunk);
        if (static_cast<int>(k % static_cast<size_t>(world)) == rank) {
          std::vector<Tensor> pixels;
          for (size_t c = begin; c < end; ++c) pixels.push_back(images.load(cand_order[c]));
          SilverSet part =
              build_silver_set(questioner, reasoner, setup, cfg, pixels,
                               mix_seed(seed, it, kSilver * 100000 + begin), images.has_oracle());
          if (world > 1) {
            my_parts.push_back(silver_part_json(part, begin));
          } else {
            add_part(part, begin);
          }
        }
        const bool save_now = (k + 1) % static_cast<size_t>(every) == 0 && end < candidates;
        if (world > 1 && (save_now || end == candidates)) {
          // Every rank's parts since the last gather, merged in chunk order (a collective: all
          // ranks walk every chunk and reach it at the same k).
          std::map<size_t, SilverSet> parts;
          for (const std::string& text : dp->all_gather_strings(
                   my_parts.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))) {
            for (const nlohmann::json& j : nlohmann::json::parse(text))
              parts[j["begin"].get<size_t>()] = silver_part_from_json(j);
          }
          for (auto& [part_begin, part] : parts) add_part(part, part_begin);
          my_parts = nlohmann::json::array();
        }
        if (bar) {
          if (world == 1 || save_now) bar->set_field("kept", std::to_string(silver.kept));
          bar->set(static_cast<int64_t>(end));
        }
        if (opt.after_step) opt.after_step(it, "silver", static_cast<int64_t>(end));
        if (save_now) {
          save_state(it, "silver", static_cast<int64_t>(end), summary,
                     {{"data_position", end}, {"silver", silver_set_to_json(silver)}}, nullptr,
                     nullptr);
        }
      }
      silver.seconds = dp->max(seconds_since(t_d));
    }
    const double kept_fraction =
        candidates > 0 ? static_cast<double>(silver.kept) / static_cast<double>(candidates) : 0.0;
    int64_t valid = 0;
    for (const SilverQuestion& q : silver.questions) valid += q.valid;
    // Oracle answers for diagnostics only (indexed like silver.questions).
    std::vector<std::optional<std::string>> oracle;
    nlohmann::json data_rec = {{"event", "data"},
                               {"iteration", it},
                               {"candidates", candidates},
                               {"valid_questions", valid},
                               {"kept", silver.kept},
                               {"kept_fraction", kept_fraction},
                               {"confidence_histogram", silver.confidence_histogram},
                               {"seconds", silver.seconds}};
    if (images.has_oracle()) {
      std::vector<world::Scene> scenes;
      for (size_t c = 0; c < candidates; ++c) scenes.push_back(images.scenes[cand_order[c]]);
      oracle = oracle_answers(silver, scenes);
      data_rec["oracle"] =
          silver_diagnostics(silver, oracle, AnswerOptions{cfg.rewards.answer_no_rule});
    }
    if (!silver_restored) log.write(data_rec);
    if (!silver_restored) {
      std::string hist;
      for (size_t k = 0; k < silver.confidence_histogram.size(); ++k) {
        hist += (k ? " " : "") + std::to_string(silver.confidence_histogram[k]);
      }
      std::string line = "[iter " + std::to_string(it) + "/" + std::to_string(iterations) +
                         "] silver labels: " + std::to_string(valid) + "/" +
                         std::to_string(candidates) + " valid questions, kept " +
                         std::to_string(silver.kept) + " (" + fmt("%.1f", 100 * kept_fraction) +
                         "%), votes of the winner 0.." + std::to_string(cfg.data.vote_samples) +
                         ": [" + hist + "]";
      if (data_rec.contains("oracle")) {
        const nlohmann::json& o = data_rec["oracle"];
        line += " | oracle: grammar " + fmt("%.2f", num(o, "grammar_valid")) + " silver acc " +
                fmt("%.3f", num(o, "silver_accuracy_all")) + " (kept " +
                fmt("%.3f", num(o, "silver_accuracy_kept")) + kept_hallucination_note(o) +
                ") majority " + fmt("%.3f", num(o, "majority_accuracy")) + " greedy " +
                fmt("%.3f", num(o, "greedy_accuracy")) + " margin " +
                fmt("%+.3f", num(o, "self_consistency_margin"));
        if (num(o, "self_consistency_margin") <= 0) {
          line += " (margin <= 0: the vote knows nothing beyond greedy decoding)";
        }
      }
      say(line);
    }
    if (!silver_restored) {
      std::string lines;
      for (size_t i = 0; i < silver.questions.size(); ++i) {
        const SilverQuestion& q = silver.questions[i];
        nlohmann::json votes = nlohmann::json::array();
        for (const auto& v : q.votes) votes.push_back(optional_json(v));
        nlohmann::json j = {{"image", images.paths[cand_order[static_cast<size_t>(q.image)]]},
                            {"output", q.output},
                            {"valid", q.valid},
                            {"question", q.question},
                            {"has_label", q.has_label},
                            {"label", q.label},
                            {"confidence", q.confidence},
                            {"kept", q.kept},
                            {"votes", votes}};
        if (q.greedy) j["greedy"] = *q.greedy;
        if (!oracle.empty()) j["oracle_answer"] = optional_json(oracle[i]);
        lines += j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
      }
      if (dp->is_main()) write_text_atomically(iter_dir / "silver.jsonl", lines);
    }
    summary["candidates"] = candidates;
    summary["valid_questions"] = valid;
    summary["kept"] = silver.kept;
    summary["kept_fraction"] = kept_fraction;
    summary["confidence_histogram"] = silver.confidence_histogram;
    summary["data_seconds"] = silver.seconds;
    if (data_rec.contains("oracle")) summary["oracle"] = data_rec["oracle"];
    // Phase end: the silver set is final for this iteration.
    if (!silver_restored) {
      save_state(it, "reasoner", 0, summary, {{"silver", silver_set_to_json(silver)}}, nullptr,
                 nullptr);
    }

    // ---- phase 3: Reasoner GRPO on the kept questions ----
    const auto t_r = Clock::now();
    const ReasonerData train_data = select_reasoner_data(silver, oracle, cfg.reasoner.labels);
    const std::vector<size_t>& kept = train_data.questions;
    std::string skip_reason;
    if (kept.empty()) {
      skip_reason = "no question was kept";
    } else if (kept_fraction < cfg.reasoner.min_kept_fraction) {
      skip_reason = "kept fraction " + fmt("%.4f", kept_fraction) +
                    " < reasoner.min_kept_fraction " + fmt("%.4f", cfg.reasoner.min_kept_fraction);
    } else if (cfg.reasoner.steps == 0) {
      skip_reason = "reasoner.steps = 0";
    }
    // Kept questions' images and oracle answers, for the before/after accuracy.
    std::vector<Tensor> kept_pixels;
    std::vector<std::string> kept_questions;
    std::vector<std::optional<std::string>> kept_oracle;
    for (size_t i : kept) {
      kept_pixels.push_back(
          images.load(cand_order[static_cast<size_t>(silver.questions[i].image)]));
      kept_questions.push_back(silver.questions[i].question);
      if (!oracle.empty()) kept_oracle.push_back(oracle[i]);
    }
    SamplingConfig greedy = cfg.reasoner.rollout;
    greedy.temperature = 0;
    // (Diagnostics: rank 0 alone answers; the others never print them.)
    auto kept_accuracy = [&](const PolicyModel& model) -> nlohmann::json {
      if (kept_oracle.empty() || !dp->is_main()) return nullptr;
      std::vector<std::vector<std::string>> r =
          answer_questions(model, setup, kept_pixels, kept_questions, ReasonerMode::train, 1,
                           greedy, mix_seed(seed, it, kDiagnostics));
      std::vector<std::string> first;
      for (auto& v : r) first.push_back(v[0]);
      std::optional<double> acc =
          oracle_accuracy(first, kept_oracle, AnswerOptions{cfg.rewards.answer_no_rule});
      return acc ? nlohmann::json(*acc) : nlohmann::json(nullptr);
    };
    // Measured on the phase's starting weights: a run resumed inside the phase has it saved.
    nlohmann::json accuracy_before =
        !skip_reason.empty() ? nlohmann::json(nullptr)
        : resume_phase == "reasoner" && resume_step > 0
            ? info_field<nlohmann::json>(at.info, "accuracy_before", state_path)
            : kept_accuracy(reasoner);
    if (!skip_reason.empty()) {
      log.write({{"event", "phase"},
                 {"iteration", it},
                 {"phase", "reasoner"},
                 {"skipped", true},
                 {"reason", skip_reason}});
      say("[iter " + std::to_string(it) + "/" + std::to_string(iterations) +
          "] reasoner phase skipped: " + skip_reason);
      summary["reasoner_phase"] = "skipped";
      summary["reasoner_skip_reason"] = skip_reason;
    } else {
      GrpoTrainer trainer(reasoner, cfg.grpo, dp);
      const int64_t first_step = resume_phase == "reasoner" ? resume_step : 0;
      if (first_step > 0) {
        load_train_state(state_path, &reasoner.params(), &trainer.optimizer());
        trainer.set_nonfinite_in_a_row(
            info_field<int64_t>(at.info, "nonfinite_in_a_row", state_path));
      }
      const size_t per_step = std::min<size_t>(cfg.grpo.prompts_per_step, kept.size());
      const std::vector<size_t> order =
          reasoner_order(train_data.labels, per_step * static_cast<size_t>(cfg.reasoner.steps),
                         mix_seed(seed, it, kReasonerOrder), cfg.reasoner.balance_labels);
      const SamplingOptions sampling = to_sampling_options(cfg.reasoner.rollout, setup.stop_token);
      auto bar = make_bar(progress, "iter " + std::to_string(it) + " reasoner GRPO",
                          cfg.reasoner.steps, "step");
      if (bar && first_step > 0) bar->set(first_step);
      const std::vector<int64_t> mine = dist::update_shard_indices(
          static_cast<int64_t>(per_step), cfg.grpo.prompts_per_update, rank, world);
      for (int s = static_cast<int>(first_step); s < cfg.reasoner.steps; ++s) {
        std::vector<PromptInput> prompts(mine.size());
        std::vector<std::string> labels(mine.size());
        for (size_t j = 0; j < mine.size(); ++j) {
          const size_t i = static_cast<size_t>(mine[j]);
          const size_t k = order[(s * per_step + i) % order.size()];
          const SilverQuestion& q = silver.questions[kept[k]];
          prompts[j].ids =
              build_reasoner_prompt(setup.format, *tokenizer, setup.visual_tokens(kept_pixels[k]),
                                    q.question, ReasonerMode::train, setup.prompts);
          prompts[j].pixels = kept_pixels[k];
          labels[j] = train_data.labels[k];
        }
        GrpoStepStats st = trainer.step(prompts, cfg.reasoner.group_size, sampling,
                                        make_reasoner_reward(setup, cfg, labels),
                                        mix_seed(seed, it, kReasonerStep * 100000 + s), mine);
        report_step(it, "reasoner", s + 1, cfg.reasoner.steps, st);
        if (bar) {
          bar->set_field("reward", st.reward_mean, 3);
          bar->advance();
        }
        if (opt.after_step) opt.after_step(it, "reasoner", s + 1);
        if (!zero1 && (s + 1) % every == 0 && s + 1 < cfg.reasoner.steps) {
          save_state(it, "reasoner", s + 1, summary,
                     {{"data_position", static_cast<uint64_t>(s + 1) * per_step},
                      {"silver", silver_set_to_json(silver)},
                      {"accuracy_before", accuracy_before}},
                     &reasoner.params(), &trainer);
        }
      }
      summary["reasoner_phase"] = "trained";
      summary["reasoner_labels"] = to_string(cfg.reasoner.labels);
      summary["reasoner_questions"] = kept.size();
    }
    summary["reasoner_seconds"] = seconds_since(t_r);
    if (!kept_oracle.empty() && skip_reason.empty()) {
      nlohmann::json after = kept_accuracy(reasoner);
      summary["reasoner_kept_accuracy_before"] = accuracy_before;
      summary["reasoner_kept_accuracy_after"] = after;
      say("[iter " + std::to_string(it) + "/" + std::to_string(iterations) +
          "] reasoner true accuracy on the kept questions (greedy): " +
          (accuracy_before.is_number() ? fmt("%.3f", accuracy_before.get<double>()) : "n/a") +
          " -> " + (after.is_number() ? fmt("%.3f", after.get<double>()) : "n/a"));
    }

    // ---- the Reasoner's checkpoint, then the completion marker, then the next position
    // (rank 0; the others wait) ----
    summary["seconds"] = seconds_since(t_iter);
    if (dp->is_main()) {
      reasoner.save((iter_dir / "reasoner").string(), questioner_dir);
      nlohmann::json rec = summary;
      rec["event"] = "iteration";
      log.write(rec);
      write_text_atomically(iter_dir / "summary.json", summary.dump(2) + "\n");
    }
    save_state(it + 1, "questioner", 0, {{"iteration", it + 1}}, nlohmann::json::object(), nullptr,
               nullptr);
    say("[iter " + std::to_string(it) + "/" + std::to_string(iterations) + "] done in " +
        fmt("%.1f", summary["seconds"].get<double>()) + " s; checkpoints in " + iter_dir.string());
    result.summaries.push_back(summary);
    result.last_iteration = it;
  }
  return result;
}

}  // namespace visplay::rl
