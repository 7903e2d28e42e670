#include "serve/metrics.h"

#include <cmath>
#include <sstream>

namespace drafteu::serve {

namespace {
std::string num(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  std::ostringstream os;
  os.precision(12);
  os << v;
  return os.str();
}
}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && !(v <= bounds_[i])) ++i;
  ++counts_[i];
  if (std::isfinite(v)) sum_ += v;
  ++count_;
}

void Histogram::write(std::string& out, const std::string& name) const {
  uint64_t cum = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    cum += counts_[i];
    const std::string le = i < bounds_.size() ? num(bounds_[i]) : "+Inf";
    out += name + "_bucket{le=\"" + le + "\"} " + std::to_string(cum) + "\n";
  }
  out += name + "_sum " + num(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : eu_({0.0001, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3}),
      latency_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      batch_({1, 2, 4, 8, 16, 32, 64}) {}

void Metrics::count_request(const std::string& route, int status) {
  std::lock_guard lock(mu_);
  ++requests_[{route, status}];
}

void Metrics::observe_latency(double seconds) {
  std::lock_guard lock(mu_);
  latency_.observe(seconds);
}

void Metrics::add_generation(int64_t tokens, int64_t proposed, int64_t accepted,
                             const std::vector<double>& eu_hat) {
  std::lock_guard lock(mu_);
  tokens_ += static_cast<uint64_t>(tokens);
  proposed_ += static_cast<uint64_t>(proposed);
  accepted_ += static_cast<uint64_t>(accepted);
  for (double e : eu_hat) eu_.observe(e);
}

void Metrics::set_queue_depth(int64_t depth) {
  std::lock_guard lock(mu_);
  queue_depth_ = depth;
}

void Metrics::observe_batch(int64_t rows) {
  std::lock_guard lock(mu_);
  batch_.observe(static_cast<double>(rows));
}

std::string Metrics::prometheus() const {
  std::lock_guard lock(mu_);
  std::string out;
  out += "# HELP drafteu_requests_total HTTP requests by route and status.\n";
  out += "# TYPE drafteu_requests_total counter\n";
  for (const auto& [key, n] : requests_)
    out += "drafteu_requests_total{route=\"" + key.first + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  out += "# HELP drafteu_tokens_generated_total Tokens generated.\n";
  out += "# TYPE drafteu_tokens_generated_total counter\n";
  out += "drafteu_tokens_generated_total " + std::to_string(tokens_) + "\n";
  out += "# HELP drafteu_draft_tokens_proposed_total Draft tokens proposed.\n";
  out += "# TYPE drafteu_draft_tokens_proposed_total counter\n";
  out += "drafteu_draft_tokens_proposed_total " + std::to_string(proposed_) + "\n";
  out += "# HELP drafteu_draft_tokens_accepted_total Draft tokens accepted by the target.\n";
  out += "# TYPE drafteu_draft_tokens_accepted_total counter\n";
  out += "drafteu_draft_tokens_accepted_total " + std::to_string(accepted_) + "\n";
  out += "# HELP drafteu_acceptance_rate Accepted / proposed draft tokens since start.\n";
  out += "# TYPE drafteu_acceptance_rate gauge\n";
  out += "drafteu_acceptance_rate " +
         num(proposed_ ? static_cast<double>(accepted_) / static_cast<double>(proposed_) : 0.0) +
         "\n";
  out += "# HELP drafteu_queue_depth Requests waiting for the worker.\n";
  out += "# TYPE drafteu_queue_depth gauge\n";
  out += "drafteu_queue_depth " + std::to_string(queue_depth_) + "\n";
  out += "# HELP drafteu_token_eu_hat Per-token epistemic uncertainty estimate (nats).\n";
  out += "# TYPE drafteu_token_eu_hat histogram\n";
  eu_.write(out, "drafteu_token_eu_hat");
  out += "# HELP drafteu_request_latency_seconds Completion request latency.\n";
  out += "# TYPE drafteu_request_latency_seconds histogram\n";
  latency_.write(out, "drafteu_request_latency_seconds");
  out += "# HELP drafteu_batch_rows Requests decoded together, per speculative round.\n";
  out += "# TYPE drafteu_batch_rows histogram\n";
  batch_.write(out, "drafteu_batch_rows");
  return out;
}

}  // namespace drafteu::serve
