// A console progress bar for long phases (rollouts, votes, training steps):
//   questioner GRPO [#########...............]  12/32  37%  0.53 step/s  ETA 0:00:38 | reward=0.41
// On a terminal the line is redrawn in place (at most every redraw_interval_s); when the stream
// is not a terminal (CI logs, files) it prints a plain line at most every plain_interval_s or
// each time another plain_percent_step percent is done, and always a final line.
// Not thread-safe: one thread drives a bar.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

namespace visplay {

struct ProgressOptions {
  enum class Mode { auto_detect, tty, plain };
  Mode mode = Mode::auto_detect;  // auto: tty when the stream is std::cerr/std::cout on a terminal
  std::string unit = "it";
  int bar_width = 24;
  double redraw_interval_s = 0.1;
  double plain_interval_s = 30.0;
  int plain_percent_step = 10;
  std::function<double()> clock;  // seconds, monotonic; default std::chrono::steady_clock
};

class ProgressBar {
 public:
  // total <= 0: unknown length (no bar, percentage or ETA; elapsed time instead).
  ProgressBar(std::string label, int64_t total, std::ostream& out, ProgressOptions options = {});
  ProgressBar(std::string label, int64_t total);  // on std::cerr
  ~ProgressBar();                                 // finishes the bar if finish() was not called
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  void set(int64_t done);
  void advance(int64_t n = 1) { set(done_ + n); }
  // Extra "name=value" fields, shown in insertion order; setting a name again replaces it.
  void set_field(const std::string& name, const std::string& value);
  void set_field(const std::string& name, double value, int precision = 4);
  // Draws the final state (on a terminal: ends the line). Idempotent.
  void finish();

  // The current line, without control characters.
  std::string render() const;
  bool is_tty() const { return tty_; }
  int64_t done() const { return done_; }

 private:
  void maybe_draw(bool force);
  void draw();

  std::string label_;
  int64_t total_;
  std::ostream& out_;
  ProgressOptions options_;
  bool tty_ = false;
  bool finished_ = false;
  int64_t done_ = 0;
  double start_ = 0;
  double last_draw_ = 0;
  bool drawn_ = false;
  int64_t last_percent_bucket_ = -1;
  std::vector<std::pair<std::string, std::string>> fields_;
};

// "h:mm:ss" (hours unbounded); "--:--" for a negative or non-finite value.
std::string format_duration(double seconds);

}  // namespace visplay
