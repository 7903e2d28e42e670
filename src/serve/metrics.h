// Server metrics in Prometheus' text exposition format: requests by route and status, tokens
// generated and scored, speculative acceptance (in total and by draft position), requests the
// uncertainty policy abstained on or flagged, histograms of per-token eu_hat, of sequence EU
// (eu_sum of a request), of request latency, of queue wait and of the number of requests decoded
// together per round.
#pragma once
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace drafteu::serve {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v);
  // "name_bucket{le=...} n" lines (cumulative), name_sum and name_count.
  void write(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, the last one +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  void count_request(const std::string& route, int status);
  void observe_latency(double seconds);
  // One finished completion: its tokens, draft proposals and acceptances (in total and by
  // position in the round), per-token eu_hat, and whether the policy stopped it (abstained) or
  // flagged any of its tokens.
  void add_generation(int64_t tokens, int64_t proposed, int64_t accepted,
                      const std::vector<int64_t>& proposed_by_position,
                      const std::vector<int64_t>& accepted_by_position,
                      const std::vector<double>& eu_hat, bool abstained, bool flagged);
  void add_scored(int64_t tokens);
  void observe_queue_wait(double seconds);
  void set_queue_depth(int64_t depth);
  void observe_batch(int64_t rows);  // requests decoded together in one round
  std::string prometheus() const;

 private:
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  uint64_t tokens_ = 0, proposed_ = 0, accepted_ = 0, scored_ = 0;
  uint64_t abstained_ = 0, flagged_ = 0;
  std::vector<uint64_t> proposed_at_, accepted_at_;  // by position in the round
  int64_t queue_depth_ = 0;
  Histogram eu_, sequence_eu_, latency_, queue_wait_, batch_;
};

}  // namespace drafteu::serve
