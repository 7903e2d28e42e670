#include "distill/progress.h"

#include <unistd.h>

#include <cstdio>

namespace drafteu::distill {

Progress::Progress(std::string label, int64_t total_steps, int64_t start_step, int64_t log_every,
                   bool enabled)
    : label_(std::move(label)),
      total_(total_steps),
      start_(start_step),
      log_every_(log_every < 1 ? 1 : log_every),
      enabled_(enabled),
      tty_(isatty(2) != 0),
      begin_(std::chrono::steady_clock::now()) {}

void Progress::update(int64_t step, double loss, int64_t tokens) {
  tokens_ += tokens;
  if (!enabled_) return;
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
  const double done = static_cast<double>(step - start_);
  const double tps = secs > 0 ? static_cast<double>(tokens_) / secs : 0.0;
  const double eta = done > 0 ? secs / done * static_cast<double>(total_ - step) : 0.0;
  if (tty_) {
    const int width = 30;
    const int filled = total_ > 0 ? static_cast<int>(width * step / total_) : width;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(stderr, "\r%s [%s] %lld/%lld loss %.4f %.0f tok/s ETA %.0fs  ", label_.c_str(),
                 bar.c_str(), static_cast<long long>(step), static_cast<long long>(total_), loss,
                 tps, eta);
  } else if (step % log_every_ == 0 || step == total_) {
    std::fprintf(stderr, "%s step %lld/%lld loss %.6f tok/s %.0f eta %.0fs\n", label_.c_str(),
                 static_cast<long long>(step), static_cast<long long>(total_), loss, tps, eta);
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (enabled_ && tty_) std::fprintf(stderr, "\n");
}

}  // namespace drafteu::distill
