// Fuzz target: the HTTP API's request parsers. The input is one request body, parsed as
// /v1/completions, /v1/chat/completions and /v1/score would (a byte-level tokenizer encodes the
// prompts of the score endpoint). Parsers may throw ApiException (a 4xx) and nothing else, and
// its error body must serialise (parse errors quote the raw, possibly invalid UTF-8, bytes).
#include "fuzz_support.h"
#include "fuzz_tokenizer.h"
#include "serve/openai_request.h"
#include "serve/score_request.h"
#include "util/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu::serve;
  const std::string body(drafteu::fuzz::as_text(data, size));
  const std::vector<std::string> models{"target", "m"};
  ApiLimits limits;
  limits.max_prompt_tokens = 64;
  limits.max_tokens_limit = 32;
  for (Endpoint e : {Endpoint::Completions, Endpoint::Chat}) {
    try {
      const auto r = parse_request(e, body, models, limits);
      (void)prompt_token_ids(r, drafteu::fuzz::byte_tokenizer());
    } catch (const ApiException& ex) {
      if (ex.error.status < 400 || ex.error.status > 499) __builtin_trap();  // never a 5xx
      (void)drafteu::dump_json(ex.error.body());  // as the server answers it
    }
  }
  try {
    ScoreLimits score;
    score.max_inputs = 4;
    score.max_completion_tokens = 32;
    (void)parse_score_request(body, models, limits, score, 96, drafteu::fuzz::byte_tokenizer());
  } catch (const ApiException& ex) {
    if (ex.error.status < 400 || ex.error.status > 499) __builtin_trap();
  }
  return 0;
}
