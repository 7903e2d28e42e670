// POST /v1/score: teacher-forced per-token uncertainty of a completion the client already has.
//
// Request: {"model", "prompt" | "messages", "completion"}, or a JSON array of such objects (a
// batch). The prompt is tokenized as /v1/completions and /v1/chat/completions do; the completion
// is encoded as plain text after it (no BOS, special-token text not parsed).
// Response: {"object": "score", "model", "data": [{"index", "tokens": [{"token", "id",
// "logprob", "eu_hat", "jsd", "bias", "entropy", "flagged"}, ...], "summary": {...}}, ...],
// "usage"}, one data entry per input. logprob and entropy are those of the reference p_ref (the
// target, or the target with the p_mix adapter); summary is the completions' uncertainty_summary
// (p_error with a calibration).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/tokenizer/tokenizer.h"
#include "serve/calibration.h"
#include "serve/openai.h"
#include "serve/policy.h"
#include "serve/score_request.h"
#include "uncertainty/scoring/token_scorer.h"

namespace drafteu::serve {

// One data entry from the scorer's tokens of input `index`.
nlohmann::json score_entry(int64_t index, const std::vector<ScoredToken>& tokens,
                           const UncertaintyPolicy& policy,
                           const std::optional<Calibration>& calibration, SequenceSummary* summary);

}  // namespace drafteu::serve
