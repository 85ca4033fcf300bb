#include "runtime/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

namespace visplay {
namespace {

double steady_seconds() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// A terminal that understands '\r' and "erase to end of line".
bool stream_is_terminal(const std::ostream& out) {
  const char* term = std::getenv("TERM");
  if (term != nullptr && std::strcmp(term, "dumb") == 0) return false;
  if (&out == &std::cerr || &out == &std::clog) return ::isatty(STDERR_FILENO) == 1;
  if (&out == &std::cout) return ::isatty(STDOUT_FILENO) == 1;
  return false;
}

// Items per second with 3 significant figures, or seconds per item when slower than 0.1/s.
std::string format_rate(double per_second, const std::string& unit) {
  char buf[64];
  if (per_second >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f %s/s", per_second, unit.c_str());
  } else if (per_second >= 10) {
    std::snprintf(buf, sizeof buf, "%.1f %s/s", per_second, unit.c_str());
  } else if (per_second >= 0.1) {
    std::snprintf(buf, sizeof buf, "%.2f %s/s", per_second, unit.c_str());
  } else {
    std::snprintf(buf, sizeof buf, "%.1f s/%s", 1.0 / per_second, unit.c_str());
  }
  return buf;
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto total = static_cast<long long>(std::llround(seconds));
  char buf[48];
  std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", total / 3600, (total / 60) % 60, total % 60);
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::ostream& out,
                         ProgressOptions options)
    : label_(std::move(label)), total_(total), out_(out), options_(std::move(options)) {
  if (!options_.clock) options_.clock = steady_seconds;
  tty_ = options_.mode == ProgressOptions::Mode::tty ||
         (options_.mode == ProgressOptions::Mode::auto_detect && stream_is_terminal(out_));
  start_ = options_.clock();
  maybe_draw(true);
}

ProgressBar::ProgressBar(std::string label, int64_t total)
    : ProgressBar(std::move(label), total, std::cerr) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::set(int64_t done) {
  if (finished_) return;
  done_ = done;
  maybe_draw(false);
}

void ProgressBar::set_field(const std::string& name, const std::string& value) {
  for (auto& field : fields_) {
    if (field.first == name) {
      field.second = value;
      return;
    }
  }
  fields_.emplace_back(name, value);
}

void ProgressBar::set_field(const std::string& name, double value, int precision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", precision, value);
  set_field(name, std::string(buf));
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  draw();
  if (tty_) out_ << '\n' << std::flush;
}

std::string ProgressBar::render() const {
  const double elapsed = std::max(0.0, options_.clock() - start_);
  const double rate = elapsed > 0 && done_ > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  std::string line = label_;
  char buf[128];
  if (total_ > 0) {
    const double fraction =
        std::clamp(static_cast<double>(done_) / static_cast<double>(total_), 0.0, 1.0);
    const int width = std::max(1, options_.bar_width);
    const int filled = static_cast<int>(fraction * width);
    line += " [" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
    std::snprintf(buf, sizeof buf, "  %lld/%lld  %3d%%", static_cast<long long>(done_),
                  static_cast<long long>(total_), static_cast<int>(fraction * 100));
    line += buf;
  } else {
    std::snprintf(buf, sizeof buf, "  %lld %s", static_cast<long long>(done_),
                  options_.unit.c_str());
    line += buf;
  }
  line += "  " + (rate > 0 ? format_rate(rate, options_.unit) : "-- " + options_.unit + "/s");
  if (finished_ || total_ <= 0) {
    line += (finished_ ? "  in " : "  elapsed ") + format_duration(elapsed);
  } else {
    const double remaining = static_cast<double>(std::max<int64_t>(0, total_ - done_));
    line += "  ETA " + (rate > 0 ? format_duration(remaining / rate) : format_duration(-1));
  }
  if (!fields_.empty()) {
    line += " |";
    for (const auto& [name, value] : fields_) line += " " + name + "=" + value;
  }
  return line;
}

void ProgressBar::maybe_draw(bool force) {
  const double now = options_.clock();
  bool due = force || !drawn_;
  if (tty_) {
    due = due || now - last_draw_ >= options_.redraw_interval_s;
  } else {
    const int64_t step = std::max(1, options_.plain_percent_step);
    const int64_t bucket =
        total_ > 0 ? std::clamp<int64_t>(done_ * 100 / total_, 0, 100) / step : -1;
    due = due || bucket > last_percent_bucket_ || now - last_draw_ >= options_.plain_interval_s;
  }
  if (due) draw();
}

void ProgressBar::draw() {
  const std::string line = render();
  if (tty_) {
    out_ << '\r' << line << "\x1b[K" << std::flush;
  } else {
    out_ << line << '\n' << std::flush;
  }
  drawn_ = true;
  last_draw_ = options_.clock();
  if (total_ > 0) {
    const int64_t step = std::max(1, options_.plain_percent_step);
    last_percent_bucket_ = std::clamp<int64_t>(done_ * 100 / total_, 0, 100) / step;
  }
}

}  // namespace visplay
