// `drafteu score` input: JSONL records of a prompt and a response, as token ids
// ({"prompt_ids", "response_ids"}) or text ({"prompt", "response"}, encoded by the tokenizer).
// Torch-free, so the reader builds into the fuzz harness (tests/fuzz/fuzz_jsonl.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer/tokenizer.h"

namespace drafteu {

struct ScoreRecord {
  std::vector<int64_t> prompt, response;
};

// A record is a prompt and a response that fit the model's context: a line longer than this
// cannot be one (1M tokens of ids or text), and is refused before it is parsed.
inline constexpr size_t kMaxScoreLineBytes = size_t{16} << 20;

// Every record of `path`; ids must lie in [0, vocab) and each record within `context` tokens.
// `tok` may be null (then text records are an error). Errors name the file, line and field.
std::vector<ScoreRecord> read_score_records(const std::string& path, const Tokenizer* tok,
                                            int64_t vocab, int64_t context);

}  // namespace drafteu
