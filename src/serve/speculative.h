// Speculative decoding with per-token epistemic uncertainty read off the drafts.
//
// One round: the drafts (a Family of K >= 1, one batched pass per draft step) propose γ tokens
// from the proposer's warped distribution (the mixture q_mix or one draft); the target scores all
// of them in one forward on its KV cache; verify_proposals() keeps the longest accepted prefix and
// adds a resampled or bonus token; both caches are truncated back to the accepted text. γ grows
// after a fully accepted round and shrinks after a rejection, within configured bounds.
//
// Every emitted token gets, at its own position, the drafts' raw (unwarped) distributions q_k and
// the reference p_ref (the target, or the target with the p_mix LoRA adapter), so
//   jsd = JSD(q_1..q_K), bias = KL(q_mix || p_ref), eu_hat = mean_k KL(q_k || p_ref)
// (uncertainty::draft_estimator), with the target's entropy and log-prob of the token. Accepted
// and rejected positions reuse the distributions computed while drafting; a bonus token's draft
// distribution comes from the next round's first draft step (which must feed that token anyway),
// so its record and emission wait one round. Only at the very end does this cost an extra step.
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
#include "serve/policy.h"

namespace drafteu::serve {

// Which distribution proposes: the drafts' mixture q_mix, or draft `index` alone.
struct Proposer {
  bool mixture = true;
  int64_t index = 0;
  static Proposer parse(const std::string& text);  // "mixture" | "0" | "1" | ...
  std::string name() const;
};

struct GammaSchedule {
  int64_t initial = 4, min = 1, max = 8;
  bool adaptive = true;  // +1 after a fully accepted round, -1 after a rejection
  void validate() const;
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
  double total_s = 0, draft_s = 0, target_s = 0;
  double uncertainty_s = 0;  // record math and the end-of-sequence draft step
  double acceptance_rate() const;
  double uncertainty_fraction() const;  // uncertainty_s / total_s
};

enum class FinishReason { Stop, Length, Uncertainty };
const char* to_string(FinishReason reason);  // "stop" | "length" | "uncertainty"

// false stops generation after this token (finish "stop").
using TokenCallback = std::function<bool(const SpecToken&)>;

class SpeculativeDecoder;

// One generation in progress; step() runs one round. Exposed so tests can inspect the caches
// between rounds.
class SpeculativeSession {
 public:
  SpeculativeSession(SpeculativeDecoder& decoder, const std::vector<int64_t>& prompt,
                     SpeculativeOptions options);
  // One round; emits completed tokens through `on_token`. Returns false once finished.
  bool step(const TokenCallback& on_token = {});
  bool finished() const { return finished_; }
  FinishReason finish_reason() const { return finish_; }
  // Prompt and every token decided so far (a bonus token awaiting its record included).
  const std::vector<int64_t>& sequence() const { return seq_; }
  const std::vector<SpecToken>& tokens() const { return tokens_; }
  const SpecStats& stats() const { return stats_; }
  int64_t gamma() const { return gamma_; }
  const SequenceMonitor& monitor() const { return monitor_; }
  // The target's cache (with a reference adapter: the 2-member family's) and the drafts'.
  const KVCache& target_cache() const;
  const FamilyCache& draft_cache() const { return draft_cache_; }

 private:
  struct Position {                   // what a token's record needs: raw log-probs at its position
    torch::Tensor target, reference;  // [V]; reference undefined = the target
  };
  torch::Tensor draft_forward(const std::vector<int64_t>& tokens, int64_t n_out);
  std::pair<torch::Tensor, torch::Tensor> target_forward(const std::vector<int64_t>& tokens,
                                                         int64_t n_out);
  torch::Tensor proposal_logp(const torch::Tensor& draft_logp) const;
  // Fills records for tokens whose draft distributions [K, n, V] are known; emits them in order.
  void emit(std::vector<SpecToken> toks, const torch::Tensor& drafts,
            const std::vector<Position>& at, const TokenCallback& on_token);
  void emit_one(SpecToken tok, const TokenCallback& on_token);
  void finish_pending(const TokenCallback& on_token);
  int64_t remaining() const;

  SpeculativeDecoder& dec_;
  SpeculativeOptions opt_;
  Sampler sampler_;
  std::vector<int64_t> seq_;
  int64_t prompt_len_;
  KVCache target_cache_;
  FamilyCache ref_cache_, draft_cache_;
  int64_t gamma_;
  std::vector<SpecToken> tokens_;
  SequenceMonitor monitor_;
  SpecStats stats_;
  bool finished_ = false;
  FinishReason finish_ = FinishReason::Length;
  // The bonus token of the last round, waiting for its draft distribution.
  std::optional<std::pair<SpecToken, Position>> pending_;
};

class SpeculativeDecoder {
 public:
  // reference: the p_mix adapter's deltas on the target (e.g. LoraAdapterImpl::to_member()).
  SpeculativeDecoder(LlamaForCausalLM target, std::shared_ptr<Family> drafts,
                     std::optional<MemberDeltas> reference = std::nullopt);

  std::unique_ptr<SpeculativeSession> start(const std::vector<int64_t>& prompt,
                                            const SpeculativeOptions& options);

  struct Result {
    std::vector<SpecToken> tokens;
    FinishReason finish = FinishReason::Length;
    SpecStats stats;
  };
  Result generate(const std::vector<int64_t>& prompt, const SpeculativeOptions& options,
                  const TokenCallback& on_token = {});

  LlamaForCausalLMImpl& target() { return *target_; }
  Family& drafts() { return *drafts_; }
  bool has_reference_adapter() const { return reference_ != nullptr; }
  int64_t num_drafts() const { return drafts_->size(); }

 private:
  friend class SpeculativeSession;
  LlamaForCausalLM target_;
  std::shared_ptr<Family> drafts_;
  std::unique_ptr<LowRankFamily> reference_;  // {plain target, target + adapter}
};

}  // namespace drafteu::serve
