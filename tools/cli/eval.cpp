// `visplay eval`: greedy (or, with --votes, majority-vote) answers of a model's Reasoner to every
// question of a benchmark folder (any folder in the shapeworld.md format), scored against the
// answers. The Reasoner is prompted step by step (ReasonerMode::train, the mode VisPlay trains);
// the report gives accuracy, per type, the hallucination slice, replies without \boxed{}, and the
// blind baseline (each type's most common answer). Malformed lines of questions.jsonl are skipped
// and listed; the good ones are still scored, and the exit status is then 1 unless
// --allow-bad-lines.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "model/policy.h"
#include "rl/pretrain.h"
#include "tools/cli/command.h"

namespace {

struct EvalCliOptions {
  std::string model;
  std::string bench;
  std::string out;
  int64_t batch = 100;
  int64_t max_new_tokens = 80;
  int64_t limit = 0;
  std::string replies;
  bool allow_bad_lines = false;
  int64_t votes = 0;
  double temperature = 0.7;
  double top_p = 1.0;
  uint64_t seed = 1;
};

void run_eval(const EvalCliOptions& o) {
  using namespace visplay;
  // The demo model or a Hugging Face Qwen2.5-VL directory (model/policy.h).
  std::unique_ptr<PolicyModel> model = load_policy(o.model);
  auto tokenizer = load_tokenizer(o.model);
  Benchmark bench = read_benchmark(o.bench);
  if (bench.questions.empty()) {
    throw std::runtime_error(o.bench + ": no readable questions in questions.jsonl");
  }
  if (o.limit > 0 && static_cast<int64_t>(bench.questions.size()) > o.limit) {
    bench.questions.resize(static_cast<size_t>(o.limit));
  }
  rl::EvalOptions options;
  options.batch_size = o.batch;
  options.max_new_tokens = o.max_new_tokens;
  options.votes = o.votes;
  options.temperature = o.temperature;
  options.top_p = o.top_p;
  options.seed = o.seed;
  rl::EvalResult result = rl::evaluate_benchmark(*model, *tokenizer, bench, options, &std::cerr);
  nlohmann::json report = rl::eval_report_json(result);
  report["model"] = o.model;
  report["bench"] = o.bench;
  report["mode"] = o.votes > 0 ? "majority of " + std::to_string(o.votes) +
                                     " sampled replies (temperature " +
                                     std::to_string(o.temperature) + ", top-p " +
                                     std::to_string(o.top_p) + "), reasoner step-by-step prompt"
                               : "greedy, reasoner step-by-step prompt";
  // Malformed lines of questions.jsonl were skipped by read_benchmark (one warning
  // each on stderr); the report names them so a partial score is never mistaken
  // for a full one.
  report["skipped_lines"] = bench.errors;
  std::printf("%s", rl::eval_table(result).c_str());
  std::printf("%lld questions in %.1f s\n", static_cast<long long>(result.report.overall.total),
              result.seconds);
  if (!o.replies.empty()) {
    std::ofstream file(o.replies);
    if (!file) throw std::runtime_error("eval: cannot write the replies to " + o.replies);
    for (size_t i = 0; i < result.replies.size(); ++i) {
      const BenchmarkQuestion& q = bench.questions[i];
      nlohmann::json line = {{"id", q.id},
                             {"question", q.question},
                             {"answer", *q.answer},
                             {"reply", result.replies[i]},
                             {"correct", reply_is_correct(result.replies[i], *q.answer)}};
      file << line.dump() << "\n";
    }
    std::printf("replies: %s\n", o.replies.c_str());
  }
  if (!o.out.empty()) {
    std::ofstream file(o.out);
    if (!file) throw std::runtime_error("eval: cannot write the report to " + o.out);
    file << report.dump(2) << "\n";
    std::printf("report: %s\n", o.out.c_str());
  }
  if (!bench.errors.empty()) {
    std::string summary =
        std::to_string(bench.errors.size()) +
        " malformed line(s) of the benchmark were skipped (first: " + bench.errors.front() +
        "); the scores cover the " + std::to_string(bench.questions.size()) + " readable questions";
    if (!o.allow_bad_lines) throw std::runtime_error(summary + " (--allow-bad-lines: exit 0)");
    std::fprintf(stderr, "warning: %s\n", summary.c_str());
  }
}

void setup_eval(CLI::App& app) {
  auto opts = std::make_shared<EvalCliOptions>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Greedy accuracy of a model on a benchmark folder, with the blind baseline");
  cmd->add_option("--model", opts->model,
                  "Checkpoint folder (config.json, model.safetensors, "
                  "tokenizer.json) or a Hugging Face Qwen2.5-VL directory")
      ->required();
  cmd->add_option("--bench", opts->bench, "Benchmark folder (questions.jsonl + images)")
      ->required();
  cmd->add_option("--out", opts->out, "Write the JSON report here");
  cmd->add_option("--batch", opts->batch, "Questions per generation batch")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-new-tokens", opts->max_new_tokens, "Reply length limit")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--replies", opts->replies, "Write every reply (JSONL) here");
  cmd->add_option("--limit", opts->limit, "Only the first N questions (0 = all)");
  cmd->add_option("--votes", opts->votes,
                  "Self-consistency: score the majority answer of N sampled replies per "
                  "question instead of the greedy reply (0 = greedy)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--temperature", opts->temperature, "Sampling temperature with --votes")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--top-p", opts->top_p,
                  "Nucleus sampling with --votes: keep the smallest set of tokens with "
                  "probability >= P (1 = all)")
      ->check(CLI::Range(1e-6, 1.0));
  cmd->add_option("--seed", opts->seed, "Sampling seed with --votes");
  cmd->add_flag("--allow-bad-lines", opts->allow_bad_lines,
                "Exit 0 even when malformed lines of questions.jsonl were skipped "
                "(they are always scored without, reported and listed in the report)");
  cmd->callback([opts] { run_eval(*opts); });
}

}  // namespace

VISPLAY_COMMAND(setup_eval);
