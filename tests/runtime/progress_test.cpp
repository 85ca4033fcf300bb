// ProgressBar (rendering, TTY redraw vs sparse plain lines) and MetricsLog (JSONL).
#include "runtime/progress.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "runtime/metrics_log.h"

namespace visplay {
namespace {

// A bar on a string stream with a hand-driven clock.
struct Fixture {
  double now = 100.0;
  std::ostringstream out;
  ProgressOptions options(ProgressOptions::Mode mode) {
    ProgressOptions o;
    o.mode = mode;
    o.bar_width = 10;
    o.clock = [this] { return now; };
    return o;
  }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(FormatDuration, HoursMinutesSeconds) {
  EXPECT_EQ(format_duration(0), "0:00:00");
  EXPECT_EQ(format_duration(59.4), "0:00:59");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_duration(100000), "27:46:40");
  EXPECT_EQ(format_duration(-1), "--:--");
  EXPECT_EQ(format_duration(std::numeric_limits<double>::infinity()), "--:--");
  EXPECT_EQ(format_duration(std::nan("")), "--:--");
}

TEST(ProgressBar, RenderKnownTotal) {
  Fixture f;
  ProgressBar bar("phase", 20, f.out, f.options(ProgressOptions::Mode::plain));
  EXPECT_EQ(bar.render(), "phase [..........]  0/20    0%  -- it/s  ETA --:--");
  f.now += 10;
  bar.set(5);  // 0.5 it/s, 15 left -> 30 s
  bar.set_field("reward", 0.41);
  bar.set_field("kl", "0.002");
  EXPECT_EQ(bar.render(),
            "phase [##........]  5/20   25%  0.50 it/s  ETA 0:00:30 | reward=0.41 kl=0.002");
  bar.set_field("reward", 0.5);  // replaces, keeps the order
  f.now += 30;
  bar.set(20);
  bar.finish();
  EXPECT_EQ(bar.render(),
            "phase [##########]  20/20  100%  0.50 it/s  in 0:00:40 | reward=0.5 kl=0.002");
  bar.set(3);  // ignored after finish
  EXPECT_EQ(bar.done(), 20);
}

TEST(ProgressBar, RenderUnknownTotalAndSlowRates) {
  Fixture f;
  ProgressOptions o = f.options(ProgressOptions::Mode::plain);
  o.unit = "img";
  ProgressBar bar("load", 0, f.out, o);
  f.now += 2;
  bar.set(7);
  EXPECT_EQ(bar.render(), "load  7 img  3.50 img/s  elapsed 0:00:02");
  ProgressBar slow("train", 4, f.out, f.options(ProgressOptions::Mode::plain));
  f.now += 50;
  slow.set(1);
  EXPECT_EQ(slow.render(), "train [##........]  1/4   25%  50.0 s/it  ETA 0:02:30");
  f.now += 0.5;
  ProgressBar fast("votes", 1000, f.out, f.options(ProgressOptions::Mode::plain));
  f.now += 2;
  fast.set(500);
  EXPECT_EQ(fast.render(), "votes [#####.....]  500/1000   50%  250 it/s  ETA 0:00:02");
}

TEST(ProgressBar, PlainModePrintsSparseLines) {
  Fixture f;
  {
    ProgressBar bar("rollouts", 100, f.out, f.options(ProgressOptions::Mode::plain));
    for (int i = 1; i <= 100; ++i) {
      f.now += 0.1;
      bar.advance();
    }
  }  // the destructor finishes
  const std::string text = f.out.str();
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.find('\x1b'), std::string::npos);
  const auto lines = lines_of(text);
  // Start line, one per 10 % step, final line.
  ASSERT_EQ(lines.size(), 12u) << text;
  EXPECT_NE(lines[0].find("0/100"), std::string::npos);
  EXPECT_NE(lines[5].find("50/100"), std::string::npos);
  EXPECT_NE(lines[11].find("100/100"), std::string::npos);
  EXPECT_NE(lines[11].find("in 0:00:10"), std::string::npos);
  EXPECT_EQ(text.back(), '\n');
}

TEST(ProgressBar, PlainModeUnknownTotalPrintsByTime) {
  Fixture f;
  ProgressOptions o = f.options(ProgressOptions::Mode::plain);
  o.plain_interval_s = 30;
  ProgressBar bar("scan", 0, f.out, o);
  for (int i = 0; i < 100; ++i) {
    f.now += 1;
    bar.advance();
  }
  bar.finish();
  const auto lines = lines_of(f.out.str());
  ASSERT_EQ(lines.size(), 5u) << f.out.str();  // t = 0, 30, 60, 90, final
  EXPECT_NE(lines[1].find("  30 it"), std::string::npos) << lines[1];
  EXPECT_NE(lines[4].find("  100 it"), std::string::npos) << lines[4];
}

TEST(ProgressBar, TtyModeRedrawsInPlaceWithThrottle) {
  Fixture f;
  ProgressBar bar("vote", 50, f.out, f.options(ProgressOptions::Mode::tty));
  EXPECT_TRUE(bar.is_tty());
  for (int i = 0; i < 49; ++i) bar.advance();  // no time passes: throttled
  const std::string throttled = f.out.str();
  EXPECT_EQ(std::count(throttled.begin(), throttled.end(), '\r'), 1);
  f.now += 0.2;
  bar.advance();
  f.now += 0.2;
  bar.finish();
  const std::string text = f.out.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\r'), 3);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find("\x1b[K"), std::string::npos);
  EXPECT_NE(text.find("50/50"), std::string::npos);
}

TEST(ProgressBar, AutoDetectOnAStringStreamIsPlain) {
  std::ostringstream out;
  ProgressBar bar("x", 3, out);
  EXPECT_FALSE(bar.is_tty());
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("visplay_metrics_test_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(MetricsLog, OneFlushedObjectPerLine) {
  const std::string path = temp_path("a.jsonl");
  std::remove(path.c_str());
  {
    MetricsLog log(path);
    log.write({{"step", 1}, {"reward_mean", 0.25}, {"phase", "questioner"}});
    log.write({{"step", 2}, {"reward_mean", -0.125}, {"hist", {1, 2, 3}}});
    // Readable before the writer closes: every line is flushed.
    const auto lines = read_jsonl(path);
    ASSERT_EQ(lines.size(), 2u);
    EXPECT_EQ(lines[0]["phase"], "questioner");
    EXPECT_EQ(lines[1]["reward_mean"], -0.125);
    EXPECT_EQ(lines[1]["hist"], nlohmann::json({1, 2, 3}));
    EXPECT_EQ(log.lines_written(), 2);
  }
  {
    MetricsLog again(path);  // appends
    again.write({{"step", 3}, {"kl", std::nan("")}});
  }
  auto lines = read_jsonl(path);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[2]["step"], 3);
  EXPECT_TRUE(lines[2]["kl"].is_null());
  {
    MetricsLog fresh(path, /*truncate=*/true);
    fresh.write({{"step", 9}});
  }
  lines = read_jsonl(path);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["step"], 9);
  std::remove(path.c_str());
}

TEST(MetricsLog, Errors) {
  const std::string path = temp_path("b.jsonl");
  {
    MetricsLog log(path, true);
    try {
      log.write(nlohmann::json::array({1, 2}));
      ADD_FAILURE() << "no error";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("object"), std::string::npos) << e.what();
    }
    log.write({{"bad_utf8", std::string("a\xff") + "b"}});  // replaced, not thrown
  }
  EXPECT_EQ(read_jsonl(path).size(), 1u);
  std::remove(path.c_str());
  const std::string missing_dir = temp_path("no_such_dir") + "/m.jsonl";
  try {
    MetricsLog log(missing_dir);
    ADD_FAILURE() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(missing_dir), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace visplay
