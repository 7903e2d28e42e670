// OpenAI's completion and chat-completion shapes: strict parsing of requests into a
// CompletionRequest (every problem -> ApiError with OpenAI's error body), and the assembly of
// responses and server-sent-event chunks from the decoder's tokens.
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

#include "model/sampling.h"
#include "model/tokenizer/tokenizer.h"
#include "serve/policy.h"
#include "serve/speculative.h"

namespace drafteu::serve {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // "" = null
  std::string code;   // "" = null
  nlohmann::json body() const;
};

class ApiException : public std::exception {
 public:
  explicit ApiException(ApiError e) : error(std::move(e)) {}
  const char* what() const noexcept override { return error.message.c_str(); }
  ApiError error;
};

// Throws the 400 (or `status`) invalid_request_error every parser reports.
[[noreturn]] void bad_request(const std::string& message, const std::string& param,
                              const std::string& code = "invalid_value", int status = 400);

struct ApiLimits {
  int64_t max_prompt_tokens = 2048;
  int64_t max_tokens_limit = 512;  // largest max_tokens accepted
  int64_t default_max_tokens = 16;
};

enum class Endpoint { Completions, Chat };

struct CompletionRequest {
  Endpoint endpoint = Endpoint::Completions;
  std::string model;
  std::string prompt;                 // completions
  std::vector<ChatMessage> messages;  // chat
  int64_t max_tokens = 16;
  SamplingParams sampling;  // OpenAI's defaults: temperature 1, top_p 1
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;  // at most 4
  bool stream = false;
  int64_t top_logprobs = 0;           // completions: logprobs = N; chat: top_logprobs
  bool logprobs = false;              // logprobs requested at all
  bool speculative_detailed = false;  // per-round arrays in "speculative"
};

// Parses a request body as JSON, at most kMaxJsonDepth levels deep. Throws ApiException (400
// invalid_json; invalid UTF-8 in strings is a parse error).
constexpr int kMaxJsonDepth = 64;
nlohmann::json parse_json_body(const std::string& body);

// Parses and validates a request body. `models`: the names served. Throws ApiException.
CompletionRequest parse_request(Endpoint endpoint, const std::string& body,
                                const std::vector<std::string>& models, const ApiLimits& limits);

// The prompt's token ids: the text (BOS when the tokenizer has one), or the chat rendered by the
// tokenizer's template; without a template "role: content" lines and "assistant:".
std::vector<int64_t> prompt_token_ids(const CompletionRequest& request, const Tokenizer& tok);

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
