// Progress of long work on stderr: a redrawn bar with rate and ETA on a terminal, a plain log
// line at most every `log_seconds` (or every `log_every` items) otherwise (files, CI logs).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace drafteu {

class ProgressBar {
 public:
  // unit: what is counted ("records", "tokens"); total 0 = unknown.
  ProgressBar(std::string label, int64_t total, std::string unit, double log_seconds = 10.0);
  ~ProgressBar() { finish(); }
  // A resumed job: `done` items were finished by an earlier run (rate and ETA count this run's).
  ProgressBar& resume_from(int64_t done);
  // Off a terminal, log every `items` items (and at the end) instead of every `log_seconds`.
  ProgressBar& log_every(int64_t items);
  // `done` items finished so far; `status` is appended (e.g. "loss 1.23").
  void update(int64_t done, const std::string& status = "");
  void finish();

 private:
  void draw(bool final);
  std::string label_, unit_, status_;
  int64_t total_, done_ = 0, start_ = 0, log_every_ = 0;
  double log_seconds_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point begin_, last_draw_;
};

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace drafteu
