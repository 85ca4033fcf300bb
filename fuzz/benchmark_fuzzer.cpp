// libFuzzer target: the benchmark questions.jsonl reader (data/benchmark.cpp) on
// arbitrary text. Bad lines must be reported with their line number and skipped, the
// good ones kept; what is kept is then scored (blind baseline, \boxed{} extraction)
// and each line is also tried as a scenes.jsonl scene.
#include <cstddef>
#include <cstdint>
#include <set>
#include <sstream>

#include "data/benchmark.h"
#include "fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace visplay;
  const std::string name = "fuzz.jsonl";
  std::string text(reinterpret_cast<const char*>(data), size);
  std::istringstream in(text);
  Benchmark bench;
  try {
    bench = parse_benchmark_questions(in, name, /*warn=*/false);
  } catch (const std::runtime_error& e) {
    fuzz::violated(std::string("the reader threw instead of skipping a line: ") + e.what());
  }
  int64_t lines = 1;
  for (char c : text) lines += c == '\n';
  std::set<std::string> ids;
  int64_t last_line = 0;
  std::vector<BenchmarkQuestion> labeled;
  for (const BenchmarkQuestion& q : bench.questions) {
    fuzz::check(!q.id.empty() && !q.image.empty(), "kept a question without id or image");
    fuzz::check(ids.insert(q.id).second, "kept a duplicate id " + q.id);
    fuzz::check(q.line > last_line && q.line <= lines, "bad line number");
    last_line = q.line;
    if (q.answer) labeled.push_back(q);
  }
  for (const std::string& error : bench.errors)
    fuzz::check(error.rfind(name + ":", 0) == 0, "error without file and line: " + error);
  ScoreReport report = blind_baseline(labeled);
  fuzz::check(report.overall.total == static_cast<int64_t>(labeled.size()),
              "blind baseline did not score every labeled question");
  fuzz::check(report.overall.correct <= report.overall.total, "more correct than questions");
  std::string line;
  std::istringstream again(text);
  while (std::getline(again, line)) {
    (void)extract_boxed(line);
    try {
      (void)world::scene_from_json(line, name);
    } catch (const std::runtime_error& e) {
      fuzz::check_error_names(e, name);
    }
  }
  return 0;
}
