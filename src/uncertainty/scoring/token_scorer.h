// Scoring text that already exists: for every response token, the true EU from a target family,
// the draft estimator's terms (JSD, bias, EU_hat) and the entropies, as raw per-token values.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "family/family.h"
#include "model/tokenizer/tokenizer.h"

namespace drafteu {

// Any of the three may be absent; at least one of target_family and drafts must be given.
struct ScoringModels {
  std::shared_ptr<Family> target_family;  // M noise members of the target: the ground truth
  std::shared_ptr<Family> drafts;         // K drafts
  std::shared_ptr<Family> reference;      // a family of one: p_mix (target + adapter) or target
  std::vector<std::shared_ptr<void>> keep_alive;  // adapters attached for the scorer's lifetime
};

struct ScoredToken {
  int64_t index = 0;  // position within the response
  int64_t id = 0;
  std::string text;
  std::optional<double> eu_true, jsd, bias, eu_hat, entropy_target, entropy_mix;
  std::optional<double> logprob;  // log p_ref(token): needs the reference
};

class TokenScorer {
 public:
  // chunk: response positions per forward (bounds the [K, chunk, V] log-prob buffers).
  explicit TokenScorer(ScoringModels models, int64_t chunk = 64);

  // prompt_ids must hold at least one token (e.g. BOS); the record of response token i uses the
  // distributions at the position that predicts it.
  std::vector<ScoredToken> score(const std::vector<int64_t>& prompt_ids,
                                 const std::vector<int64_t>& response_ids,
                                 const Tokenizer* tokenizer = nullptr);

 private:
  ScoringModels models_;
  int64_t chunk_;
};

}  // namespace drafteu
