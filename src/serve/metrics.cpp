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

// A metric family's HELP and TYPE lines, then (for one value) its sample.
void header(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP " + std::string(name) + " " + help + "\n# TYPE " + name + " " + type + "\n";
}
void scalar(std::string& out, const char* name, const char* type, const char* help,
            const std::string& value) {
  header(out, name, type, help);
  out += std::string(name) + " " + value + "\n";
}
// One sample per draft position: {position="i"}.
void per_position(std::string& out, const char* name, const char* help,
                  const std::vector<uint64_t>& counts) {
  header(out, name, "counter", help);
  for (size_t i = 0; i < counts.size(); ++i)
    out += std::string(name) + "{position=\"" + std::to_string(i) + "\"} " +
           std::to_string(counts[i]) + "\n";
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
  header(out, "drafteu_requests_total", "counter", "HTTP requests by route and status.");
  for (const auto& [key, n] : requests_)
    out += "drafteu_requests_total{route=\"" + key.first + "\",status=\"" +
           std::to_string(key.second) + "\"} " + std::to_string(n) + "\n";
  scalar(out, "drafteu_tokens_generated_total", "counter", "Tokens generated.",
         std::to_string(tokens_));
  scalar(out, "drafteu_draft_tokens_proposed_total", "counter", "Draft tokens proposed.",
         std::to_string(proposed_));
  scalar(out, "drafteu_draft_tokens_accepted_total", "counter",
         "Draft tokens accepted by the target.", std::to_string(accepted_));
  per_position(out, "drafteu_draft_position_proposed_total",
               "Rounds that proposed a draft token at this position (0 = first).", proposed_at_);
  per_position(out, "drafteu_draft_position_accepted_total",
               "Rounds whose draft token at this position was accepted.", accepted_at_);
  scalar(out, "drafteu_tokens_scored_total", "counter", "Completion tokens scored by /v1/score.",
         std::to_string(scored_));
  scalar(out, "drafteu_requests_abstained_total", "counter",
         "Completions the uncertainty stop policy ended (finish_reason uncertainty).",
         std::to_string(abstained_));
  scalar(out, "drafteu_requests_flagged_total", "counter",
         "Completions with at least one flagged token.", std::to_string(flagged_));
  scalar(out, "drafteu_acceptance_rate", "gauge", "Accepted / proposed draft tokens since start.",
         num(proposed_ ? static_cast<double>(accepted_) / static_cast<double>(proposed_) : 0.0));
  scalar(out, "drafteu_queue_depth", "gauge", "Requests waiting for the worker.",
         std::to_string(queue_depth_));
  const std::pair<const Histogram*, std::pair<const char*, const char*>> histograms[] = {
      {&eu_, {"drafteu_token_eu_hat", "Per-token epistemic uncertainty estimate (nats)."}},
      {&sequence_eu_,
       {"drafteu_sequence_eu", "Sequence EU (sum of eu_hat over a completion, nats)."}},
      {&queue_wait_,
       {"drafteu_queue_wait_seconds", "Time a request waited before the worker took it."}},
      {&latency_, {"drafteu_request_latency_seconds", "Completion request latency."}},
      {&batch_, {"drafteu_batch_rows", "Requests decoded together, per speculative round."}}};
  for (const auto& [h, name_help] : histograms) {
    header(out, name_help.first, "histogram", name_help.second);
    h->write(out, name_help.first);
  }
  return out;
}

}  // namespace drafteu::serve
