// The body of POST /v1/score (serve/score_api.h describes the endpoint): parsed, tokenized and
// length-checked, torch-free (the fuzz harness tests/fuzz/fuzz_openai_request.cpp runs it).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer/tokenizer.h"
#include "serve/openai_request.h"

namespace drafteu::serve {

struct ScoreLimits {
  int64_t max_inputs = 16;               // entries of one batch
  int64_t max_completion_tokens = 2048;  // per input
};

struct ScoreInput {
  std::vector<int64_t> prompt, completion;
};

struct ScoreRequest {
  std::string model;
  std::vector<ScoreInput> inputs;
};

// Parses, tokenizes and checks the lengths: prompt <= limits.max_prompt_tokens, completion in
// [1, score.max_completion_tokens], prompt + completion <= context. Throws ApiException.
ScoreRequest parse_score_request(const std::string& body, const std::vector<std::string>& models,
                                 const ApiLimits& limits, const ScoreLimits& score, int64_t context,
                                 const Tokenizer& tok);

}  // namespace drafteu::serve
