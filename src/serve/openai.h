// OpenAI's completion and chat-completion shapes: the requests are parsed in
// serve/openai_request.h; here the assembly of responses and server-sent-event chunks from the
// decoder's tokens.
//
// Extensions: request "top_k"; per-token "uncertainty" objects {eu_hat, jsd, bias, entropy,
// accepted, flagged} (completions: choices[0].uncertainty, one per token; chat:
// choices[0].logprobs.content[i].uncertainty, logprobs.content present even without "logprobs"),
// choices[0].uncertainty_summary {tokens, eu_sum, eu_mean, eu_max, flagged_spans, p_error} and
// "speculative" (speculative_json below; request "speculative_detailed": true adds per-round
// arrays);
// finish_reason "uncertainty" when the EU stop policy ended the text.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/tokenizer/tokenizer.h"
#include "serve/openai_request.h"
#include "serve/policy.h"
#include "serve/speculative.h"

namespace drafteu::serve {

nlohmann::json uncertainty_json(const SpecToken& token);

// Per-request speculative metrics: {draft_acceptance_rate, mean_accepted_length,
// accepted_per_position, proposed_per_position, gamma (mean γ per round), gamma_schedule,
// proposed, accepted, rounds, acceptance_rate (= draft_acceptance_rate),
// uncertainty_time_fraction}; detailed adds {"detailed": {"gamma": [...], "accepted": [...]}}, one
// entry per round.
nlohmann::json speculative_json(const SpecStats& stats, const std::string& gamma_schedule,
                                bool detailed);

// Builds one response, token by token: text released as it becomes final (held back while it
// could be the start of a stop string), stream chunks, the final object.
class ResponseAssembler {
 public:
  // gamma_schedule: the γ rule's name, reported in "speculative".
  ResponseAssembler(const CompletionRequest& request, const Tokenizer& tok, std::string id,
                    int64_t created, int64_t prompt_tokens, std::string gamma_schedule = "");
  // Adds a generated token; returns its stream chunk. *stop_hit: a stop string ended the text
  // (the caller stops generating).
  nlohmann::json add(const SpecToken& token, bool* stop_hit);
  // Chat streams open with a chunk carrying the role.
  nlohmann::json first_chunk() const;
  // Counts a token that ends generation without being shown (an end-of-sequence id).
  void count_hidden_token() { ++completion_tokens_; }
  nlohmann::json final_chunk(const std::string& finish_reason, const SpecStats& stats,
                             const SequenceSummary& summary);
  nlohmann::json response(const std::string& finish_reason, const SpecStats& stats,
                          const SequenceSummary& summary);
  const std::string& text() const { return released_; }

 private:
  nlohmann::json envelope(nlohmann::json choice, bool chunk) const;
  nlohmann::json token_logprobs_entry(const SpecToken& t, const std::string& text) const;
  std::string release(bool final);  // newly final text

  const CompletionRequest& req_;
  const Tokenizer& tok_;
  StreamDecoder decoder_;
  std::string id_, gamma_schedule_;
  int64_t created_, prompt_tokens_, completion_tokens_ = 0;
  std::string full_, released_;
  bool stopped_ = false;
  std::vector<SpecToken> tokens_;
  std::vector<std::string> token_texts_;
  std::vector<int64_t> offsets_;
};

}  // namespace drafteu::serve
