// Speculative decoding with per-token epistemic uncertainty read off the drafts: the options,
// the per-token records and the decoder that holds the models. The rounds themselves run in
// SpeculativeBatch (speculative_batch.h), for one sequence or many decoded together.
//
// Every emitted token gets, at its own position, the drafts' raw (unwarped) distributions q_k and
// the reference p_ref (the target, or the target with the p_mix LoRA adapter), so
//   jsd = JSD(q_1..q_K), bias = KL(q_mix || p_ref), eu_hat = mean_k KL(q_k || p_ref)
// (uncertainty::draft_estimator), with the target's entropy and log-prob of the token.
//
// With a reference adapter the target runs as a 2-member LowRankFamily (member 0 plain, member 1
// with the adapter): the verification uses member 0, so the output stays the target's.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "family/family.h"
#include "family/low_rank.h"
#include "family/low_rank_family.h"
#include "model/llama.h"
#include "model/sampling.h"
#include "serve/gamma.h"
#include "serve/policy.h"

namespace drafteu::serve {

// Which distribution proposes: the drafts' mixture q_mix, or draft `index` alone.
struct Proposer {
  bool mixture = true;
  int64_t index = 0;
  static Proposer parse(const std::string& text);  // "mixture" | "0" | "1" | ...
  std::string name() const;
};

struct SpeculativeOptions {
  SamplingParams sampling;  // the same warps for target and drafts
  int64_t max_new_tokens = 128;
  uint64_t seed = 0;
  std::vector<int64_t> stop_ids;  // generation ends after emitting one of these
  GammaSchedule gamma;
  Proposer proposer;
  bool uncertainty = true;  // per-token records (off: plain speculative decoding)
  UncertaintyPolicy policy;
  int64_t top_logprobs = 0;  // the target's N most likely tokens at each position
};

struct TokenUncertainty {
  double eu_hat = 0, jsd = 0, bias = 0;
  double entropy = 0;  // H of the target's (unwarped) distribution at this position
  bool flagged = false;
};

struct SpecToken {
  int64_t id = 0;
  double logprob = 0;     // under the target's unwarped distribution
  bool accepted = false;  // proposed by the drafts and accepted (else sampled from the target)
  std::optional<TokenUncertainty> uncertainty;
  std::vector<std::pair<int64_t, double>> top_logprobs;
};

struct SpecStats {
  int64_t rounds = 0, proposed = 0, accepted = 0, emitted = 0;
  double total_s = 0, draft_s = 0, target_s = 0;  // total_s: the rounds (prefill_s apart)
  double uncertainty_s = 0;  // the records' math (their draft steps are in draft_s)
  double prefill_s = 0;      // the prompt's target and draft forwards, before the first round
  // Per round: the γ proposed and how many of those proposals were accepted.
  std::vector<int64_t> round_gamma, round_accepted;
  double acceptance_rate() const;
  double uncertainty_fraction() const;  // uncertainty_s / total_s
  // Tokens per round: accepted proposals plus the target's own token (vLLM's "mean acceptance
  // length"); 0 before the first round.
  double mean_accepted_length() const;
  // [i]: rounds whose proposal i was accepted / was proposed (i < the largest γ used).
  std::vector<int64_t> accepted_per_position() const;
  std::vector<int64_t> proposed_per_position() const;
};

enum class FinishReason { Stop, Length, Uncertainty };
const char* to_string(FinishReason reason);  // "stop" | "length" | "uncertainty"

// false stops generation after this token (finish "stop").
using TokenCallback = std::function<bool(const SpecToken&)>;

class SpeculativeDecoder {
 public:
  // reference: the p_mix adapter's deltas on the target (e.g. LoraAdapterImpl::to_member()).
  SpeculativeDecoder(LlamaForCausalLM target, std::shared_ptr<Family> drafts,
                     std::optional<MemberDeltas> reference = std::nullopt);

  struct Result {
    std::vector<SpecToken> tokens;
    FinishReason finish = FinishReason::Length;
    SpecStats stats;
  };
  // One sequence alone (a batch of one).
  Result generate(const std::vector<int64_t>& prompt, const SpeculativeOptions& options,
                  const TokenCallback& on_token = {});

  LlamaForCausalLMImpl& target() { return *target_; }
  Family& drafts() { return *drafts_; }
  bool has_reference_adapter() const { return reference_ != nullptr; }
  // The drafts as shared by the decoder, and p_ref as a family of one (the target, or the target
  // with the adapter) for teacher-forced scoring. Use them on the decoding thread only.
  std::shared_ptr<Family> drafts_ptr() const { return drafts_; }
  std::shared_ptr<Family> reference_family() const;
  int64_t num_drafts() const { return drafts_->size(); }
  // Weights a draft step reads over those a verification reads (cost-aware γ's default c).
  double draft_cost_ratio() const;

 private:
  friend class SpeculativeBatch;
  LlamaForCausalLM target_;
  std::shared_ptr<Family> drafts_;
  std::unique_ptr<LowRankFamily> reference_;  // {plain target, target + adapter}
};

}  // namespace drafteu::serve
