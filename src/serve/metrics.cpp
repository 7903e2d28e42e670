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
      sequence_eu_({0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100}),
      latency_({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      queue_wait_({0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60}),
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
                             const std::vector<int64_t>& proposed_by_position,
                             const std::vector<int64_t>& accepted_by_position,
                             const std::vector<double>& eu_hat, bool abstained, bool flagged) {
  std::lock_guard lock(mu_);
  tokens_ += static_cast<uint64_t>(tokens);
  proposed_ += static_cast<uint64_t>(proposed);
  accepted_ += static_cast<uint64_t>(accepted);
  auto add = [](std::vector<uint64_t>& to, const std::vector<int64_t>& from) {
    if (to.size() < from.size()) to.resize(from.size(), 0);
    for (size_t i = 0; i < from.size(); ++i) to[i] += static_cast<uint64_t>(from[i]);
  };
  add(proposed_at_, proposed_by_position);
  add(accepted_at_, accepted_by_position);
  accepted_at_.resize(proposed_at_.size(), 0);
  double sum = 0;
  for (double e : eu_hat) {
    eu_.observe(e);
    sum += e;
  }
  if (!eu_hat.empty()) sequence_eu_.observe(sum);
  abstained_ += abstained;
  flagged_ += flagged;
}

void Metrics::add_scored(int64_t tokens) {
  std::lock_guard lock(mu_);
  scored_ += static_cast<uint64_t>(tokens);
}

void Metrics::observe_queue_wait(double seconds) {
  std::lock_guard lock(mu_);
  queue_wait_.observe(seconds);
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
  out +=
      "# HELP drafteu_draft_position_proposed_total Rounds that proposed a draft token at "
      "this position (0 = first).\n";
  out += "# TYPE drafteu_draft_position_proposed_total counter\n";
  for (size_t i = 0; i < proposed_at_.size(); ++i)
    out += "drafteu_draft_position_proposed_total{position=\"" + std::to_string(i) + "\"} " +
           std::to_string(proposed_at_[i]) + "\n";
  out +=
      "# HELP drafteu_draft_position_accepted_total Rounds whose draft token at this position "
      "was accepted.\n";
  out += "# TYPE drafteu_draft_position_accepted_total counter\n";
  for (size_t i = 0; i < accepted_at_.size(); ++i)
    out += "drafteu_draft_position_accepted_total{position=\"" + std::to_string(i) + "\"} " +
           std::to_string(accepted_at_[i]) + "\n";
  out += "# HELP drafteu_tokens_scored_total Completion tokens scored by /v1/score.\n";
  out += "# TYPE drafteu_tokens_scored_total counter\n";
  out += "drafteu_tokens_scored_total " + std::to_string(scored_) + "\n";
  out +=
      "# HELP drafteu_requests_abstained_total Completions the uncertainty stop policy "
      "ended (finish_reason uncertainty).\n";
  out += "# TYPE drafteu_requests_abstained_total counter\n";
  out += "drafteu_requests_abstained_total " + std::to_string(abstained_) + "\n";
  out += "# HELP drafteu_requests_flagged_total Completions with at least one flagged token.\n";
  out += "# TYPE drafteu_requests_flagged_total counter\n";
  out += "drafteu_requests_flagged_total " + std::to_string(flagged_) + "\n";
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
  out += "# HELP drafteu_sequence_eu Sequence EU (sum of eu_hat over a completion, nats).\n";
  out += "# TYPE drafteu_sequence_eu histogram\n";
  sequence_eu_.write(out, "drafteu_sequence_eu");
  out += "# HELP drafteu_queue_wait_seconds Time a request waited before the worker took it.\n";
  out += "# TYPE drafteu_queue_wait_seconds histogram\n";
  queue_wait_.write(out, "drafteu_queue_wait_seconds");
  out += "# HELP drafteu_request_latency_seconds Completion request latency.\n";
  out += "# TYPE drafteu_request_latency_seconds histogram\n";
  latency_.write(out, "drafteu_request_latency_seconds");
  out += "# HELP drafteu_batch_rows Requests decoded together, per speculative round.\n";
  out += "# TYPE drafteu_batch_rows histogram\n";
  batch_.write(out, "drafteu_batch_rows");
  return out;
}

}  // namespace drafteu::serve
