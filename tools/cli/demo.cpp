// `visplay demo`: the one-command ShapeWorld demo. Generates the worlds (an unlabeled
// pool, a validation and a test benchmark, each from its own seed, none overlapping the
// warm start's data), loads the shipped base model (models/shapeworld-base), evaluates it,
// runs the VisPlay self-evolution loop on the pool, evaluates
// the Reasoner after each iteration, and writes report.json, PNG plots, metrics.jsonl and
// the models as checkpoint folders. Prints where everything is.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "data/benchmark.h"
#include "data/plot.h"
#include "model/checkpoint.h"
#include "model/shapeworld_vocab.h"
#include "rl/evolve.h"
#include "rl/pretrain.h"
#include "runtime/dist/data_parallel.h"
#include "runtime/metrics_log.h"
#include "runtime/progress.h"
#include "tools/cli/command.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct DemoOptions {
  std::string out = "demo-out";
  uint64_t seed = 1;
  std::string model;  // default: models/shapeworld-base found from the cwd or the binary
  int64_t pool = 2000;
  int64_t validation = 300;
  int64_t test = 1200;
  int iterations = 3;
  int questioner_steps = 6;  // GRPO steps per role per iteration
  int reasoner_steps = 10;
  int64_t candidates = 256;  // images the new Questioner asks about per iteration
  double lr = 3e-5;  // tuned on validation (1e-5 leaves the weights where they are)
  double vote_temperature = 0.7;
  // Confidence band of the kept silver labels, tuned on validation: with this small base a
  // label voted by fewer than half of the votes is right only 20-40 % of the time, so the
  // paper's [0.25, 0.75] teaches mostly wrong answers; [0.5, 0.9] keeps labels that are right
  // about half the time and drops the near-unanimous ones (no GRPO signal).
  double band_low = 0.5;
  double band_high = 0.9;
};

// The world seeds of demo seed S. The warm start used seed 1 for its data (and
// seed + 1000003 for its validation); these are far from both.
uint64_t pool_seed(uint64_t s) { return 7000000 + 10 * s + 1; }
uint64_t validation_seed(uint64_t s) { return 7000000 + 10 * s + 2; }
uint64_t test_seed(uint64_t s) { return 7000000 + 10 * s + 3; }

// models/shapeworld-base relative to the current folder, else to the repository that
// holds the binary (build/bin/visplay -> ../../models/shapeworld-base).
std::string find_base_model(const std::string& given) {
  if (!given.empty()) return given;
  std::vector<fs::path> candidates = {fs::path("models/shapeworld-base")};
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / "../../models/shapeworld-base");
    candidates.push_back(exe.parent_path() / "../models/shapeworld-base");
  }
  for (const fs::path& p : candidates)
    if (fs::exists(p / "config.json")) return fs::weakly_canonical(p).string();
  throw std::runtime_error(
      "demo: cannot find the base model models/shapeworld-base (looked in the current folder "
      "and beside the binary); run from the repository root or pass --model DIR");
}

void section(const std::string& title) {
  std::printf("\n== %s\n", title.c_str());
  std::fflush(stdout);
}

// Evaluates the Reasoner of a checkpoint folder on one benchmark (greedy unless `options`
// asks for majority votes).
visplay::rl::EvalResult evaluate_dir(const std::string& model_dir, const visplay::Benchmark& bench,
                                     const std::string& label,
                                     const visplay::rl::EvalOptions& options = {}) {
  using namespace visplay;
  VLM model = load_checkpoint(model_dir);
  auto tokenizer = load_tokenizer(model_dir);
  std::fprintf(stderr, "%s\n", label.c_str());
  return rl::evaluate_benchmark(model, *tokenizer, bench, options, &std::cerr);
}

json eval_entry(const visplay::rl::EvalResult& r) {
  json j = visplay::rl::eval_report_json(r);
  j.erase("blind_baseline");  // reported once per benchmark
  return j;
}

// The loop's settings for the demo: ShapeWorld prompts and response lengths, small GRPO
// batches, and steps per phase sized so that the whole demo fits 15 minutes on 2 cores.
// The method's numbers (G = 8, m = 10 / 9, the clips, the KL) stay the paper's; the vote
// temperature and the confidence band were tuned on validation (docs/warmstart.md).
visplay::rl::VisPlayConfig demo_config(const DemoOptions& o) {
  visplay::rl::VisPlayConfig c;
  c.prompts = visplay::rl::shapeworld_prompts();
  c.iterations = o.iterations;
  c.seed = static_cast<int64_t>(o.seed);
  c.questioner.steps = o.questioner_steps;
  c.reasoner.steps = o.reasoner_steps;
  c.questioner.rollout.max_new_tokens = 32;
  c.reasoner.rollout.max_new_tokens = 80;
  c.uncertainty.sampling.max_new_tokens = 12;
  c.data.candidate_images = static_cast<int>(std::min<int64_t>(o.candidates, o.pool));
  c.data.question_sampling.max_new_tokens = 32;
  c.data.vote_sampling.max_new_tokens = 80;
  // Votes at T = 1.0 from this small base are noisier than its greedy answer (majority below
  // greedy: a negative self-consistency margin); at 0.7 the majority beats greedy (validation).
  c.data.vote_sampling.temperature = o.vote_temperature;
  c.data.band_low = o.band_low;
  c.data.band_high = o.band_high;
  c.grpo.prompts_per_step = 16;
  c.grpo.prompts_per_update = 16;
  c.grpo.micro_batch_size = 32;
  c.grpo.lr = o.lr;
  c.validate();
  return c;
}

// Reward per GRPO step from the loop's metrics.jsonl: one series per role, x = the step's
// index over all iterations.
std::vector<visplay::plot::Series> reward_curves(const std::string& metrics_path) {
  std::map<std::string, visplay::plot::Series> by_phase;
  std::ifstream in(metrics_path);
  std::string line;
  while (std::getline(in, line)) {
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || j.value("event", "") != "step" || !j.contains("reward_mean")) continue;
    if (!j["reward_mean"].is_number()) continue;
    const std::string phase = j.value("phase", "?");
    visplay::plot::Series& series = by_phase[phase];
    series.name = phase;
    series.x.push_back(static_cast<double>(series.x.size() + 1));
    series.y.push_back(j["reward_mean"].get<double>());
  }
  std::vector<visplay::plot::Series> out;
  for (auto& [phase, series] : by_phase) out.push_back(series);
  return out;
}

void save_plot(const visplay::Image& image, const std::string& path,
               std::vector<std::string>& written) {
  visplay::save_png(path, image);
  written.push_back(path);
}

// The evolve options of the demo: the same on every rank.
visplay::rl::EvolveOptions demo_evolve_options(const DemoOptions& o, const std::string& out,
                                               const std::string& pool_dir) {
  visplay::rl::EvolveOptions evolve;
  evolve.config = demo_config(o);
  evolve.model_dir = out + "/models/base";
  evolve.images_dir = pool_dir;
  evolve.out_dir = out + "/models";
  evolve.iterations = o.iterations;
  evolve.data_parallel = visplay::dist::world_data_parallel();
  return evolve;
}

// Under mpirun, ranks other than 0 only help with the self-evolution: they wait while rank 0
// makes the worlds and the base checkpoint, run the loop with it, and leave the evaluations,
// plots and report to rank 0.
void run_demo_helper_rank(const DemoOptions& o) {
  visplay::dist::world_data_parallel()->barrier();
  visplay::rl::run_evolve(demo_evolve_options(o, o.out, o.out + "/worlds/pool"));
}

void run_demo(const DemoOptions& o) {
  using namespace visplay;
  if (!dist::world_data_parallel()->is_main()) {
    run_demo_helper_rank(o);
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  const std::string out = o.out;
  (void)demo_config(o);  // bad settings fail here, before minutes of world generation and eval
  fs::create_directories(out + "/models");
  fs::create_directories(out + "/plots");
  MetricsLog metrics(out + "/metrics.jsonl", /*truncate=*/true);
  const std::string base_dir = find_base_model(o.model);
  std::printf("visplay demo: seed %llu, base model %s, output %s\n",
              static_cast<unsigned long long>(o.seed), base_dir.c_str(), out.c_str());

  section("1. worlds");
  const std::string pool_dir = out + "/worlds/pool", val_dir = out + "/worlds/validation",
                    test_dir = out + "/worlds/test";
  {
    ProgressBar bar("worlds", o.pool + o.validation + o.test, std::cerr);
    generate_pool(pool_dir, pool_seed(o.seed), o.pool);
    bar.set(o.pool);
    generate_benchmark(val_dir, validation_seed(o.seed), o.validation);
    bar.set(o.pool + o.validation);
    generate_benchmark(test_dir, test_seed(o.seed), o.test);
    bar.set(o.pool + o.validation + o.test);
  }
  std::printf(
      "pool: %lld unlabeled images (seed %llu)\nvalidation: %lld questions (seed "
      "%llu)\ntest: %lld questions (seed %llu)\n",
      static_cast<long long>(o.pool), static_cast<unsigned long long>(pool_seed(o.seed)),
      static_cast<long long>(o.validation),
      static_cast<unsigned long long>(validation_seed(o.seed)), static_cast<long long>(o.test),
      static_cast<unsigned long long>(test_seed(o.seed)));
  Benchmark val = read_benchmark(val_dir), test = read_benchmark(test_dir);

  section("2. base model");
  {
    VLM base = load_checkpoint(base_dir);
    save_checkpoint(out + "/models/base", base);
    write_shapeworld_tokenizer_json(out + "/models/base/tokenizer.json");
  }
  rl::EvalResult base_val = evaluate_dir(out + "/models/base", val, "base on validation");
  rl::EvalResult base_test = evaluate_dir(out + "/models/base", test, "base on test");
  std::printf("base model on the test benchmark:\n%s", rl::eval_table(base_test).c_str());
  // The self-consistency ceiling: the base's majority answer over the loop's own votes (same
  // count and temperature as its silver labels). Training the Reasoner toward its majority
  // answers can at best reach roughly this accuracy, so it bounds the loop's gain.
  const rl::VisPlayConfig loop_config = demo_config(o);
  rl::EvalOptions vote_options;
  vote_options.votes = loop_config.data.vote_samples;
  vote_options.temperature = loop_config.data.vote_sampling.temperature;
  vote_options.seed = o.seed;
  rl::EvalResult base_val_majority =
      evaluate_dir(out + "/models/base", val, "base majority votes on validation", vote_options);
  rl::EvalResult base_test_majority =
      evaluate_dir(out + "/models/base", test, "base majority votes on test", vote_options);
  std::printf(
      "self-consistency ceiling: majority of %lld votes at T %.2f scores %.1f%% on test "
      "(greedy %.1f%%, %+.1f points)\n",
      static_cast<long long>(vote_options.votes), vote_options.temperature,
      100 * base_test_majority.report.overall.value(), 100 * base_test.report.overall.value(),
      100 * (base_test_majority.report.overall.value() - base_test.report.overall.value()));
  metrics.write({{"event", "demo_eval"},
                 {"iteration", 0},
                 {"split", "validation"},
                 {"report", eval_entry(base_val)}});
  metrics.write({{"event", "demo_eval"},
                 {"iteration", 0},
                 {"split", "test"},
                 {"report", eval_entry(base_test)}});

  json report = {
      {"seed", o.seed},
      {"worlds",
       {{"pool", {{"dir", pool_dir}, {"images", o.pool}, {"seed", pool_seed(o.seed)}}},
        {"validation",
         {{"dir", val_dir}, {"questions", o.validation}, {"seed", validation_seed(o.seed)}}},
        {"test", {{"dir", test_dir}, {"questions", o.test}, {"seed", test_seed(o.seed)}}}}},
      {"base_model", base_dir},
      {"blind_baseline",
       {{"validation", json::parse(base_val.blind.to_json())},
        {"test", json::parse(base_test.blind.to_json())}}},
      {"base", {{"validation", eval_entry(base_val)}, {"test", eval_entry(base_test)}}},
      {"base_majority",
       {{"votes", vote_options.votes},
        {"temperature", vote_options.temperature},
        {"validation", eval_entry(base_val_majority)},
        {"test", eval_entry(base_test_majority)},
        {"test_margin_points", 100 * (base_test_majority.report.overall.value() -
                                      base_test.report.overall.value())}}}};
  std::vector<double> iters = {0}, val_acc = {base_val.report.overall.value()},
                      test_acc = {base_test.report.overall.value()},
                      halluc = {base_test.report.hallucination.value()};
  rl::EvalResult last_test = base_test;
  json iterations = json::array();
  std::vector<double> last_histogram;  // votes of the winner, bins 0..m (last iteration)
  std::vector<plot::Series> rewards;   // GRPO reward per step, one series per role

  section("3. VisPlay self-evolution");
  {
    rl::EvolveOptions evolve = demo_evolve_options(o, out, pool_dir);
    evolve.console = &std::cout;
    evolve.progress = &std::cerr;
    evolve.config.save(out + "/evolve_config.json");
    std::printf("VisPlay: %d iterations on %lld unlabeled images (config: %s/evolve_config.json)\n",
                o.iterations, static_cast<long long>(o.pool), out.c_str());
    evolve.data_parallel->barrier();  // the worlds and the base checkpoint are written
    rl::EvolveResult result = rl::run_evolve(evolve);
    for (int k = result.first_iteration; k <= result.last_iteration; ++k) {
      const std::string reasoner = out + "/models/iter-" + std::to_string(k) + "/reasoner";
      rl::EvalResult v =
          evaluate_dir(reasoner, val, "iteration " + std::to_string(k) + " on validation");
      rl::EvalResult t =
          evaluate_dir(reasoner, test, "iteration " + std::to_string(k) + " on test");
      json entry = {{"iteration", k}, {"validation", eval_entry(v)}, {"test", eval_entry(t)}};
      size_t index = static_cast<size_t>(k - result.first_iteration);
      if (index < result.summaries.size()) {
        const json& summary = result.summaries[index];
        entry["summary"] = summary;
        if (summary.contains("oracle")) {
          entry["silver_label_accuracy"] = summary["oracle"].value("silver_accuracy_kept", json());
        }
        if (summary.contains("confidence_histogram")) {
          last_histogram = summary["confidence_histogram"].get<std::vector<double>>();
        }
      }
      iterations.push_back(entry);
      metrics.write({{"event", "demo_eval"},
                     {"iteration", k},
                     {"split", "validation"},
                     {"report", eval_entry(v)}});
      metrics.write(
          {{"event", "demo_eval"}, {"iteration", k}, {"split", "test"}, {"report", eval_entry(t)}});
      iters.push_back(k);
      val_acc.push_back(v.report.overall.value());
      test_acc.push_back(t.report.overall.value());
      halluc.push_back(t.report.hallucination.value());
      std::printf(
          "iteration %d: validation %.1f%%, test %.1f%% (base %.1f%%), hallucination "
          "%.1f%% (base %.1f%%)\n",
          k, 100 * v.report.overall.value(), 100 * t.report.overall.value(),
          100 * base_test.report.overall.value(), 100 * t.report.hallucination.value(),
          100 * base_test.report.hallucination.value());
      last_test = t;
    }
    report["evolve"] = {{"status", "done"},
                        {"iterations", result.last_iteration},
                        {"metrics", out + "/models/metrics.jsonl"},
                        {"config", out + "/evolve_config.json"}};
    rewards = reward_curves(out + "/models/metrics.jsonl");
  }
  report["iterations"] = iterations;
  if (!iterations.empty()) {
    report["improvement_test_points"] =
        100.0 * (test_acc.back() - base_test.report.overall.value());
  }

  section("4. report and plots");
  std::vector<std::string> written;
  {
    plot::ChartOptions opt;
    opt.title = "greedy accuracy per iteration (seed " + std::to_string(o.seed) + ")";
    opt.x_label = "iteration (0 = base)";
    opt.y_label = "accuracy";
    opt.y_min = 0.0;
    opt.y_max = 1.0;
    std::vector<double> blind(iters.size(), base_test.blind.overall.value());
    std::vector<double> ceiling(iters.size(), base_test_majority.report.overall.value());
    save_plot(plot::line_chart({{"test", iters, test_acc, std::nullopt},
                                {"validation", iters, val_acc, std::nullopt},
                                {"test hallucination", iters, halluc, std::nullopt},
                                {"blind baseline", iters, blind, std::nullopt},
                                {"base majority vote (test)", iters, ceiling, std::nullopt}},
                               opt),
              out + "/plots/accuracy.png", written);
  }
  {
    std::vector<std::string> labels;
    std::vector<double> values;
    for (const auto& [type, acc] : last_test.report.per_type) {
      labels.push_back(type);
      values.push_back(acc.value());
    }
    plot::ChartOptions opt;
    opt.width = 900;
    opt.title = iterations.empty() ? "base model: test accuracy per type"
                                   : "last iteration: test accuracy per type";
    opt.y_label = "accuracy";
    opt.y_max = 1.0;
    save_plot(plot::bar_chart(labels, values, opt), out + "/plots/per_type.png", written);
  }
  if (!last_histogram.empty()) {
    std::vector<std::string> labels;
    for (size_t k = 0; k < last_histogram.size(); ++k) {
      labels.push_back(std::to_string(k));
    }
    plot::ChartOptions opt;
    opt.title = "silver labels: votes of the winner (last iteration)";
    opt.x_label = "votes of the majority answer (c = votes / m)";
    opt.y_label = "questions";
    save_plot(plot::bar_chart(labels, last_histogram, opt), out + "/plots/confidence.png", written);
  }
  if (!rewards.empty()) {
    plot::ChartOptions opt;
    opt.title = "GRPO reward per step";
    opt.x_label = "step (all iterations)";
    opt.y_label = "mean reward";
    save_plot(plot::line_chart(rewards, opt), out + "/plots/rewards.png", written);
  }
  report["seconds"] = elapsed();
  {
    std::ofstream file(out + "/report.json");
    if (!file) throw std::runtime_error("demo: cannot write " + out + "/report.json");
    file << report.dump(2) << "\n";
  }
  std::printf("test accuracy: base %.1f%%", 100 * base_test.report.overall.value());
  if (!iterations.empty()) std::printf(", last iteration %.1f%%", 100 * test_acc.back());
  std::printf(" (blind baseline %.1f%%, %lld questions)\n", 100 * base_test.blind.overall.value(),
              static_cast<long long>(base_test.report.overall.total));
  std::printf("\nfiles:\n  report:  %s/report.json\n  metrics: %s/metrics.jsonl\n", out.c_str(),
              out.c_str());
  for (const std::string& p : written) std::printf("  plot:    %s\n", p.c_str());
  std::printf("  models:  %s/models/base", out.c_str());
  if (!iterations.empty()) std::printf(", %s/models/iter-K/{questioner,reasoner}", out.c_str());
  std::printf("\n  worlds:  %s/worlds/{pool,validation,test}\ndone in %.0f s\n", out.c_str(),
              elapsed());
}

void setup_demo(CLI::App& app) {
  auto opts = std::make_shared<DemoOptions>();
  CLI::App* cmd = app.add_subcommand(
      "demo", "The ShapeWorld demo: worlds, the shipped base model, VisPlay iterations, report");
  cmd->add_option("--out", opts->out, "Output folder (default demo-out)");
  cmd->add_option("--seed", opts->seed, "Seed of the worlds and the loop");
  cmd->add_option("--model", opts->model, "Base checkpoint (default models/shapeworld-base)");
  cmd->add_option("--pool", opts->pool, "Unlabeled images")->check(CLI::PositiveNumber);
  cmd->add_option("--validation", opts->validation, "Validation questions")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--test", opts->test, "Test questions")->check(CLI::PositiveNumber);
  cmd->add_option("--iterations", opts->iterations, "VisPlay iterations")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--questioner-steps", opts->questioner_steps,
                  "Questioner GRPO steps per iteration")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--reasoner-steps", opts->reasoner_steps, "Reasoner GRPO steps per iteration")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--candidates", opts->candidates, "Silver-label candidate images per iteration")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lr", opts->lr, "GRPO learning rate");
  cmd->add_option("--vote-temperature", opts->vote_temperature,
                  "Sampling temperature of the silver-label votes");
  cmd->add_option("--band-low", opts->band_low, "Keep silver labels with confidence c >= this")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--band-high", opts->band_high, "... and c <= this")
      ->check(CLI::Range(0.0, 1.0));
  cmd->callback([opts] { run_demo(*opts); });
}

}  // namespace

VISPLAY_COMMAND(setup_demo);
