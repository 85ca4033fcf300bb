// Append-only JSONL metrics: one JSON object per line, flushed after every line so that a
// crashed or killed run keeps everything it logged and `tail -f` shows progress live.
#pragma once

#include <cstdint>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

namespace visplay {

class MetricsLog {
 public:
  // Opens (creating) `path` for appending; truncate = true starts the file empty.
  // Throws std::runtime_error naming the path when it cannot be opened.
  explicit MetricsLog(const std::string& path, bool truncate = false);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  // Writes `record` (must be a JSON object) as one line and flushes it. Non-finite numbers are
  // written as null (JSON has no NaN); invalid UTF-8 in strings is replaced by U+FFFD.
  void write(const nlohmann::json& record);

  const std::string& path() const { return path_; }
  int64_t lines_written() const { return lines_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
  int64_t lines_ = 0;
};

}  // namespace visplay
