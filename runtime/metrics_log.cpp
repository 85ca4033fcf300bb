#include "runtime/metrics_log.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace visplay {

MetricsLog::MetricsLog(const std::string& path, bool truncate) : path_(path) {
  file_ = std::fopen(path.c_str(), truncate ? "w" : "a");
  if (file_ == nullptr) {
    throw std::runtime_error("metrics log '" + path + "': cannot open: " + std::strerror(errno));
  }
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsLog::write(const nlohmann::json& record) {
  if (!record.is_object()) {
    throw std::runtime_error("metrics log '" + path_ + "': line " + std::to_string(lines_ + 1) +
                             ": expected a JSON object, got " + record.type_name());
  }
  // dump() writes NaN/inf as null; 'replace' keeps a bad string from throwing mid-run.
  std::string line = record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    throw std::runtime_error("metrics log '" + path_ + "': write failed at line " +
                             std::to_string(lines_ + 1) + ": " + std::strerror(errno));
  }
  ++lines_;
}

}  // namespace visplay
