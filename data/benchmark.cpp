// Benchmark folders, pools, scoring and the blind baseline (see benchmark.h).
#include "data/benchmark.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <stdexcept>

namespace visplay {

namespace fs = std::filesystem;
using ordered_json = nlohmann::ordered_json;

std::string Benchmark::image_path(const BenchmarkQuestion& q) const {
  return (fs::path(dir) / q.image).string();
}

// ---- reading ---------------------------------------------------------------------

Benchmark read_benchmark(const std::string& path, bool warn) {
  fs::path file = path;
  std::error_code ec;
  if (fs::is_directory(file, ec)) file /= "questions.jsonl";
  std::ifstream in(file);
  if (!fs::is_regular_file(file, ec) || !in)
    throw std::runtime_error(file.string() + ": cannot open the benchmark questions file");
  Benchmark bench = parse_benchmark_questions(in, file.string(), warn);
  bench.dir = file.parent_path().string();
  if (bench.dir.empty()) bench.dir = ".";
  return bench;
}

// One line at a time, so a bad line costs only itself: it is reported with its
// number and the reading goes on.
Benchmark parse_benchmark_questions(std::istream& in, const std::string& file_name, bool warn) {
  Benchmark bench;
  std::set<std::string> seen_ids;
  std::string text;
  int64_t line_number = 0;
  auto reject = [&](const std::string& reason) {
    std::string message = file_name + ":" + std::to_string(line_number) + ": " + reason;
    if (warn) std::fprintf(stderr, "warning: skipping %s\n", message.c_str());
    bench.errors.push_back(message);
  };
  while (std::getline(in, text)) {
    line_number++;
    if (!text.empty() && text.back() == '\r') text.pop_back();
    if (line_number == 1 && text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // UTF-8 BOM
    if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c); }))
      continue;
    nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      reject("invalid JSON");
      continue;
    }
    if (!j.is_object()) {
      reject("expected a JSON object");
      continue;
    }
    BenchmarkQuestion q;
    q.line = line_number;
    std::string problem;
    for (const char* key : {"id", "image", "question"}) {
      if (!j.contains(key) || !j[key].is_string()) {
        problem = std::string("field \"") + key + "\" missing or not a string";
        break;
      }
    }
    if (problem.empty()) {
      q.id = j["id"].get<std::string>();
      q.image = j["image"].get<std::string>();
      q.question = j["question"].get<std::string>();
      if (q.id.empty() || q.image.empty()) problem = "empty \"id\" or \"image\"";
    }
    for (const char* key : {"answer", "type"}) {
      if (!problem.empty()) break;
      if (!j.contains(key) || j[key].is_null()) continue;
      if (!j[key].is_string()) {
        problem = std::string("field \"") + key + "\" is not a string";
        break;
      }
      (std::string(key) == "answer" ? q.answer : q.type) = j[key].get<std::string>();
    }
    if (problem.empty() && !seen_ids.insert(q.id).second) problem = "duplicate id \"" + q.id + "\"";
    if (!problem.empty()) {
      reject(problem);
      continue;
    }
    bench.questions.push_back(std::move(q));
  }
  return bench;
}

std::vector<PoolImage> read_scenes(const std::string& dir) {
  fs::path file = fs::path(dir) / "scenes.jsonl";
  std::ifstream in(file);
  if (!in) throw std::runtime_error(file.string() + ": cannot open");
  std::vector<PoolImage> out;
  std::string text;
  int64_t line_number = 0;
  while (std::getline(in, text)) {
    line_number++;
    if (text.empty()) continue;
    std::string where = file.string() + ":" + std::to_string(line_number);
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      throw std::runtime_error(where + ": invalid JSON object");
    if (!j.contains("id") || !j["id"].is_string() || !j.contains("image") ||
        !j["image"].is_string())
      throw std::runtime_error(where + ": field \"id\" or \"image\" missing or not a string");
    PoolImage item;
    item.id = j["id"].get<std::string>();
    item.image = j["image"].get<std::string>();
    item.scene = world::scene_from_json(text, where);
    out.push_back(std::move(item));
  }
  return out;
}

// ---- writing ---------------------------------------------------------------------

namespace {

// A text file written to <path>.tmp and renamed into place on commit().
class AtomicTextFile {
 public:
  explicit AtomicTextFile(std::string path) : path_(std::move(path)), out_(path_ + ".tmp") {
    if (!out_) throw std::runtime_error(path_ + ": cannot open for writing");
  }
  void line(const std::string& text) { out_ << text << '\n'; }
  void commit() {
    out_.close();
    if (!out_) throw std::runtime_error(path_ + ": write error");
    std::error_code ec;
    fs::rename(path_ + ".tmp", path_, ec);
    if (ec) throw std::runtime_error(path_ + ": cannot rename the temporary file: " + ec.message());
  }

 private:
  std::string path_;
  std::ofstream out_;
};

void prepare_folder(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(fs::path(dir) / "images", ec);
  if (ec) throw std::runtime_error(dir + ": cannot create the folder: " + ec.message());
}

std::string image_name(const std::string& id) { return "images/" + id + ".png"; }

std::string scene_line(const std::string& id, const world::Scene& scene) {
  ordered_json j;
  j["id"] = id;
  j["image"] = image_name(id);
  j["objects"] = ordered_json::parse(world::scene_to_json(scene))["objects"];
  return j.dump();
}

std::string question_line(const world::BenchmarkItem& item) {
  ordered_json j;
  j["id"] = item.id;
  j["image"] = image_name(item.id);
  j["question"] = item.question.text;
  j["answer"] = item.question.answer;
  j["type"] = world::type_name(item.question.type);
  return j.dump();
}

}  // namespace

void write_benchmark(const std::string& dir, const std::vector<world::BenchmarkItem>& items,
                     ProgressFn progress) {
  prepare_folder(dir);
  AtomicTextFile questions((fs::path(dir) / "questions.jsonl").string());
  AtomicTextFile scenes((fs::path(dir) / "scenes.jsonl").string());
  int64_t done = 0;
  for (const auto& item : items) {
    save_png((fs::path(dir) / image_name(item.id)).string(), world::render_scene(item.scene));
    questions.line(question_line(item));
    scenes.line(scene_line(item.id, item.scene));
    if (progress) progress(++done, static_cast<int64_t>(items.size()));
  }
  scenes.commit();
  questions.commit();
}

void generate_benchmark(const std::string& dir, uint64_t seed, int64_t count, ProgressFn progress) {
  if (count < 0) throw std::runtime_error("generate_benchmark: negative count");
  prepare_folder(dir);
  AtomicTextFile questions((fs::path(dir) / "questions.jsonl").string());
  AtomicTextFile scenes((fs::path(dir) / "scenes.jsonl").string());
  for (int64_t i = 0; i < count; i++) {
    world::BenchmarkItem item = world::sample_benchmark_item(seed, static_cast<uint64_t>(i));
    save_png((fs::path(dir) / image_name(item.id)).string(), world::render_scene(item.scene));
    questions.line(question_line(item));
    scenes.line(scene_line(item.id, item.scene));
    if (progress) progress(i + 1, count);
  }
  scenes.commit();
  questions.commit();
}

void generate_pool(const std::string& dir, uint64_t seed, int64_t count, ProgressFn progress) {
  if (count < 0) throw std::runtime_error("generate_pool: negative count");
  prepare_folder(dir);
  AtomicTextFile scenes((fs::path(dir) / "scenes.jsonl").string());
  for (int64_t i = 0; i < count; i++) {
    std::string id = world::item_id(i);
    world::Scene scene = world::sample_pool_scene(seed, static_cast<uint64_t>(i));
    save_png((fs::path(dir) / image_name(id)).string(), world::render_scene(scene));
    scenes.line(scene_line(id, scene));
    if (progress) progress(i + 1, count);
  }
  scenes.commit();
}

// ---- scoring ---------------------------------------------------------------------

std::optional<std::string> extract_boxed(const std::string& reply) {
  static const std::string marker = "\\boxed{";
  std::optional<std::string> last;
  size_t at = reply.find(marker);
  while (at != std::string::npos) {
    size_t start = at + marker.size();
    int depth = 1;
    size_t i = start;
    for (; i < reply.size() && depth > 0; i++) {
      if (reply[i] == '{') depth++;
      if (reply[i] == '}') depth--;
    }
    if (depth == 0) last = reply.substr(start, i - 1 - start);
    at = reply.find(marker, at + 1);
  }
  return last;
}

std::string normalize_answer(const std::string& text) {
  size_t begin = 0, end = text.size();
  while (begin < end && std::isspace(static_cast<unsigned char>(text[begin]))) begin++;
  while (end > begin && std::isspace(static_cast<unsigned char>(text[end - 1]))) end--;
  std::string out = text.substr(begin, end - begin);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool reply_is_correct(const std::string& reply, const std::string& answer) {
  std::optional<std::string> boxed = extract_boxed(reply);
  return boxed && normalize_answer(*boxed) == normalize_answer(answer);
}

std::string question_type_of(const BenchmarkQuestion& q) {
  if (q.type && !q.type->empty()) return *q.type;
  if (auto spec = world::parse_question(q.question)) return world::type_name(spec->type);
  return "unknown";
}

bool in_hallucination_slice(const BenchmarkQuestion& q) {
  if (!q.answer) return false;
  std::optional<world::QuestionType> type = world::parse_type(question_type_of(q));
  return type && world::is_hallucination(*type, normalize_answer(*q.answer));
}

ScoreReport score_replies(const std::vector<BenchmarkQuestion>& questions,
                          const std::vector<std::string>& replies) {
  if (questions.size() != replies.size())
    throw std::runtime_error("score_replies: " + std::to_string(questions.size()) +
                             " questions but " + std::to_string(replies.size()) + " replies");
  ScoreReport report;
  for (size_t i = 0; i < questions.size(); i++) {
    const BenchmarkQuestion& q = questions[i];
    if (!q.answer)
      throw std::runtime_error("question \"" + q.id + "\" (line " + std::to_string(q.line) +
                               ") has no answer: an unlabeled set cannot be scored");
    bool boxed = extract_boxed(replies[i]).has_value();
    bool correct = reply_is_correct(replies[i], *q.answer);
    if (!boxed) report.no_answer++;
    auto add = [&](Accuracy& a) {
      a.total++;
      a.correct += correct;
    };
    add(report.overall);
    add(report.per_type[question_type_of(q)]);
    if (in_hallucination_slice(q)) add(report.hallucination);
  }
  return report;
}

std::map<std::string, std::string> majority_answers(
    const std::vector<BenchmarkQuestion>& questions) {
  std::map<std::string, std::map<std::string, int64_t>> counts;
  for (const auto& q : questions)
    if (q.answer) counts[question_type_of(q)][normalize_answer(*q.answer)]++;
  std::map<std::string, std::string> majority;
  for (const auto& [type, answers] : counts) {
    // std::map iterates answers in increasing order, so ">" keeps the smallest on ties.
    int64_t best = -1;
    for (const auto& [answer, n] : answers)
      if (n > best) {
        best = n;
        majority[type] = answer;
      }
  }
  return majority;
}

ScoreReport blind_baseline(const std::vector<BenchmarkQuestion>& questions) {
  std::map<std::string, std::string> majority = majority_answers(questions);
  std::vector<std::string> replies;
  replies.reserve(questions.size());
  for (const auto& q : questions)
    replies.push_back("\\boxed{" + majority[question_type_of(q)] + "}");
  return score_replies(questions, replies);
}

std::string ScoreReport::to_json() const {
  ordered_json j;
  j["accuracy"] = overall.value();
  j["questions"] = overall.total;
  j["correct"] = overall.correct;
  ordered_json per = ordered_json::object(), per_n = ordered_json::object();
  for (const auto& [type, acc] : per_type) {
    per[type] = acc.value();
    per_n[type] = acc.total;
  }
  j["per_type"] = per;
  j["per_type_questions"] = per_n;
  if (hallucination.total)
    j["hallucination"] = hallucination.value();
  else
    j["hallucination"] = nullptr;
  j["hallucination_questions"] = hallucination.total;
  j["no_answer"] = no_answer;
  return j.dump(2);
}

std::string ScoreReport::table() const {
  std::ostringstream out;
  char row[128];
  std::snprintf(row, sizeof(row), "%-16s %9s %10s\n", "type", "questions", "accuracy");
  out << row;
  auto line = [&](const std::string& name, const Accuracy& a) {
    std::snprintf(row, sizeof(row), "%-16s %9lld %9.1f%%\n", name.c_str(),
                  static_cast<long long>(a.total), 100.0 * a.value());
    out << row;
  };
  for (const auto& [type, acc] : per_type) line(type, acc);
  line("hallucination", hallucination);
  line("all", overall);
  std::snprintf(row, sizeof(row), "%-16s %9lld\n", "no \\boxed{}",
                static_cast<long long>(no_answer));
  out << row;
  return out.str();
}

}  // namespace visplay
