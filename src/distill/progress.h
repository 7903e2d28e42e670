// Training progress on stderr: a redrawn bar (loss, tokens/s, ETA) on a terminal, one plain log
// line every `log_every` steps otherwise (files, CI logs).
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace drafteu::distill {

class Progress {
 public:
  Progress(std::string label, int64_t total_steps, int64_t start_step, int64_t log_every,
           bool enabled = true);
  void update(int64_t step, double loss, int64_t tokens);  // `step` steps are done
  void finish();

 private:
  std::string label_;
  int64_t total_, start_, log_every_;
  bool enabled_, tty_;
  int64_t tokens_ = 0;
  std::chrono::steady_clock::time_point begin_;
};

}  // namespace drafteu::distill
