#include "serve/speculative.h"

#include <algorithm>

#include "family/ensemble.h"
#include "serve/speculative_batch.h"
#include "util/error.h"

namespace drafteu::serve {

Proposer Proposer::parse(const std::string& text) {
  Proposer p;
  if (text == "mixture") return p;
  p.mixture = false;
  try {
    size_t used = 0;
    p.index = std::stoll(text, &used);
    if (used != text.size() || p.index < 0) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    fail("proposer must be 'mixture' or a draft index (0, 1, ...), got '", text, "'");
  }
  return p;
}

std::string Proposer::name() const {
  return mixture ? "mixture" : std::to_string(index);
}

double SpecStats::acceptance_rate() const {
  return proposed ? static_cast<double>(accepted) / static_cast<double>(proposed) : 0.0;
}

double SpecStats::uncertainty_fraction() const {
  return total_s > 0 ? uncertainty_s / total_s : 0.0;
}

double SpecStats::mean_accepted_length() const {
  return rounds ? 1.0 + static_cast<double>(accepted) / static_cast<double>(rounds) : 0.0;
}

namespace {
// [i]: entries of `counts` above i.
std::vector<int64_t> above_each_position(const std::vector<int64_t>& counts) {
  const int64_t width = counts.empty() ? 0 : *std::max_element(counts.begin(), counts.end());
  std::vector<int64_t> out(static_cast<size_t>(width), 0);
  for (int64_t c : counts)
    for (int64_t i = 0; i < c; ++i) ++out[static_cast<size_t>(i)];
  return out;
}
}  // namespace

std::vector<int64_t> SpecStats::accepted_per_position() const {
  auto out = above_each_position(round_accepted);
  out.resize(proposed_per_position().size(), 0);
  return out;
}

std::vector<int64_t> SpecStats::proposed_per_position() const {
  return above_each_position(round_gamma);
}

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Uncertainty:
      return "uncertainty";
  }
  return "?";
}

SpeculativeDecoder::SpeculativeDecoder(LlamaForCausalLM target, std::shared_ptr<Family> drafts,
                                       std::optional<MemberDeltas> reference)
    : target_(std::move(target)), drafts_(std::move(drafts)) {
  if (!target_) fail("speculative: no target model");
  if (!drafts_ || drafts_->size() < 1) fail("speculative: needs at least one draft");
  if (drafts_->vocab_size() != target_->config().vocab_size)
    fail("speculative: the drafts' vocabulary (", drafts_->vocab_size(),
         ") differs from the target's (", target_->config().vocab_size, ")");
  if (reference)
    reference_ = std::make_unique<LowRankFamily>(
        target_, std::vector<MemberDeltas>{MemberDeltas{}, std::move(*reference)});
}

std::shared_ptr<Family> SpeculativeDecoder::reference_family() const {
  if (reference_)
    return std::make_shared<LowRankFamily>(target_,
                                           std::vector<MemberDeltas>{reference_->member(1)});
  return std::make_shared<Ensemble>(Ensemble::of_one(target_));
}

double SpeculativeDecoder::draft_cost_ratio() const {
  const auto target = reference_ ? reference_->parameters_read_per_token()
                                 : target_->config().num_parameters_read_per_token();
  return static_cast<double>(drafts_->parameters_read_per_token()) / static_cast<double>(target);
}

SpeculativeDecoder::Result SpeculativeDecoder::generate(const std::vector<int64_t>& prompt,
                                                        const SpeculativeOptions& options,
                                                        const TokenCallback& on_token) {
  SpeculativeBatch batch(*this);
  batch.add(prompt, options, on_token);
  for (;;) {
    auto done = batch.step();
    if (!done.empty()) return {std::move(done[0].tokens), done[0].finish, done[0].stats};
  }
}

}  // namespace drafteu::serve
