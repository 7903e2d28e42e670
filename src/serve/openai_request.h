// The requests of OpenAI's completion and chat-completion endpoints: strict parsing into a
// CompletionRequest, every problem an ApiException carrying OpenAI's error body. Torch-free, so
// the parser builds into the fuzz harness (tests/fuzz/fuzz_openai_request.cpp).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/sampling_params.h"
#include "model/tokenizer/tokenizer.h"

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

}  // namespace drafteu::serve
