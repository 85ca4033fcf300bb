// Benchmark folders (questions.jsonl + images), unlabeled image pools, scoring of
// replies against answers, and the blind baseline. The format is the one in
// shared/shapeworld.md ("Benchmark files"); any folder in that format can be read
// and scored, not only ShapeWorld ones.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "data/shapeworld.h"

namespace visplay {

// One line of questions.jsonl.
struct BenchmarkQuestion {
  std::string id;
  std::string image;  // relative to the benchmark folder
  std::string question;
  std::optional<std::string> answer;
  std::optional<std::string> type;
  int64_t line = 0;  // 1-based line number in questions.jsonl
};

struct Benchmark {
  std::string dir;  // the folder; images are dir / image
  std::vector<BenchmarkQuestion> questions;
  std::vector<std::string> errors;  // "<file>:<line>: <reason>" for skipped lines

  std::string image_path(const BenchmarkQuestion& q) const;
};

// Reads `path` (a benchmark folder, or its questions.jsonl). Malformed lines (bad
// JSON, missing or non-string id/image/question, non-string answer/type, duplicate
// id) are reported in `errors` (and on stderr when `warn`) with their line number and
// skipped; the rest are read. Blank lines are ignored. Throws when the file is missing.
Benchmark read_benchmark(const std::string& path, bool warn = true);
// The same for questions.jsonl text from a stream; `file_name` goes in the errors.
// The result's `dir` is empty (read_benchmark sets it).
Benchmark parse_benchmark_questions(std::istream& in, const std::string& file_name,
                                    bool warn = true);

// Progress callback: (done, total).
using ProgressFn = void (*)(int64_t, int64_t);

// Writes a labeled benchmark folder: images/<id>.png, questions.jsonl (id, image,
// question, answer, type) and scenes.jsonl (id, image, objects; for diagnostics with
// the oracle, never for training). Creates the folder; files are written atomically.
void write_benchmark(const std::string& dir, const std::vector<world::BenchmarkItem>& items,
                     ProgressFn progress = nullptr);

// Samples and writes a benchmark of `count` questions seeded with `seed`, one item at
// a time (memory stays small for large counts).
void generate_benchmark(const std::string& dir, uint64_t seed, int64_t count,
                        ProgressFn progress = nullptr);

// Writes an unlabeled pool: images/<id>.png and scenes.jsonl, whose lines are
// {"id", "image", "objects"} (the image listing; `objects` is for the oracle only).
void generate_pool(const std::string& dir, uint64_t seed, int64_t count,
                   ProgressFn progress = nullptr);

// One line of scenes.jsonl.
struct PoolImage {
  std::string id;
  std::string image;  // relative to the folder
  world::Scene scene;
};
// Reads scenes.jsonl of a pool or benchmark folder. Unlike questions, a bad line is
// an error (the file is ours): throws naming the file and line.
std::vector<PoolImage> read_scenes(const std::string& dir);

// ---- scoring ---------------------------------------------------------------------

// The text inside the last complete \boxed{...} (braces inside are balanced), or
// nullopt when there is none.
std::optional<std::string> extract_boxed(const std::string& reply);
// Lower-cases (ASCII) and trims whitespace at both ends.
std::string normalize_answer(const std::string& text);
// Correct when the last \boxed{} content equals the answer after normalisation.
bool reply_is_correct(const std::string& reply, const std::string& answer);

struct Accuracy {
  int64_t correct = 0;
  int64_t total = 0;
  double value() const { return total ? static_cast<double>(correct) / total : 0.0; }
};

struct ScoreReport {
  Accuracy overall;
  std::map<std::string, Accuracy>
      per_type;            // by `type`, or the parsed ShapeWorld type, or "unknown"
  Accuracy hallucination;  // the ShapeWorld hallucination slice
  int64_t no_answer = 0;   // replies without any \boxed{}

  // {"accuracy", "questions", "correct", "per_type": {type: acc}, "per_type_questions",
  //  "hallucination" (null when the slice is empty), "hallucination_questions", "no_answer"}
  std::string to_json() const;
  // A console table: one row per type, then the slice and the total.
  std::string table() const;
};

// The type used for reporting: `type` when present, else the type of the parsed
// ShapeWorld question, else "unknown".
std::string question_type_of(const BenchmarkQuestion& q);
// Whether the question is in the hallucination slice (uses question_type_of).
bool in_hallucination_slice(const BenchmarkQuestion& q);

// Scores replies[i] against questions[i]. Throws when the sizes differ or a question
// has no answer (an unlabeled set cannot be scored), naming the question id.
ScoreReport score_replies(const std::vector<BenchmarkQuestion>& questions,
                          const std::vector<std::string>& replies);

// Each type's most common answer in the benchmark (ties: the smallest string).
std::map<std::string, std::string> majority_answers(
    const std::vector<BenchmarkQuestion>& questions);
// The blind baseline: every question answered with its type's most common answer.
ScoreReport blind_baseline(const std::vector<BenchmarkQuestion>& questions);

}  // namespace visplay
