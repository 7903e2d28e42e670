#include "util/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace drafteu {

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  char buf[32];
  auto t = static_cast<long>(s + 0.5);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", t);
  return buf;
}

ProgressBar::ProgressBar(std::string label, int64_t total, std::string unit, double log_seconds)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      log_seconds_(log_seconds),
      tty_(isatty(2) != 0),
      begin_(std::chrono::steady_clock::now()),
      last_draw_(begin_) {}

ProgressBar& ProgressBar::resume_from(int64_t done) {
  start_ = done_ = done;
  return *this;
}

ProgressBar& ProgressBar::log_every(int64_t items) {
  log_every_ = items;
  return *this;
}

void ProgressBar::update(int64_t done, const std::string& status) {
  done_ = done;
  status_ = status;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  const bool due = tty_ || log_every_ <= 0 ? since >= (tty_ ? 0.1 : log_seconds_)
                                           : done % log_every_ == 0 || done == total_;
  if (due) {
    last_draw_ = now;
    draw(false);
  }
}

void ProgressBar::finish() {
  if (finished_) return;
  finished_ = true;
  draw(true);
}

void ProgressBar::draw(bool final) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
  double rate = elapsed > 0 ? static_cast<double>(done_ - start_) / elapsed : 0;
  std::string eta =
      total_ > 0 && rate > 0 ? format_duration(static_cast<double>(total_ - done_) / rate) : "?";
  char head[160];
  if (total_ > 0)
    std::snprintf(head, sizeof head, "%s %lld/%lld %s", label_.c_str(),
                  static_cast<long long>(done_), static_cast<long long>(total_), unit_.c_str());
  else
    std::snprintf(head, sizeof head, "%s %lld %s", label_.c_str(), static_cast<long long>(done_),
                  unit_.c_str());
  char tail[160];
  std::snprintf(tail, sizeof tail, "%.1f %s/s, %s %s", rate, unit_.c_str(), final ? "took" : "eta",
                final ? format_duration(elapsed).c_str() : eta.c_str());
  std::string bar;
  if (tty_ && total_ > 0) {
    const int width = 24;
    int filled = static_cast<int>(width * static_cast<double>(done_) / static_cast<double>(total_));
    bar = " [" + std::string(static_cast<size_t>(std::clamp(filled, 0, width)), '#') +
          std::string(static_cast<size_t>(width - std::clamp(filled, 0, width)), '.') + "]";
  }
  std::string line = std::string(head) + bar + " " + tail + (status_.empty() ? "" : ", " + status_);
  if (tty_)
    std::fprintf(stderr, "\r\033[K%s%s", line.c_str(), final ? "\n" : "");
  else
    std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace drafteu
