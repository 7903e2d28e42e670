#include "serve/score_request.h"

#include "util/error.h"

namespace drafteu::serve {

using json = nlohmann::json;

namespace {

ScoreInput parse_one(const json& item, const std::string& where,
                     const std::vector<std::string>& models, const ApiLimits& limits,
                     const ScoreLimits& score, int64_t context, const Tokenizer& tok,
                     std::string* model) {
  if (!item.is_object()) bad_request(where + "must be a JSON object", "", "invalid_type");
  const bool chat = item.contains("messages") && !item["messages"].is_null();
  if (chat && item.contains("prompt") && !item["prompt"].is_null())
    bad_request(where + "give 'prompt' or 'messages', not both", "prompt");
  auto completion = item.find("completion");
  if (completion == item.end() || completion->is_null())
    bad_request(where + "you must provide a completion", "completion",
                "missing_required_parameter");
  if (!completion->is_string())
    bad_request(where + "'completion' must be a string", "completion", "invalid_type");
  ScoreInput in;
  try {
    // The prompt half is a completion or chat request: the same parsing and tokenization.
    auto req =
        parse_request(chat ? Endpoint::Chat : Endpoint::Completions, item.dump(), models, limits);
    *model = req.model;
    in.prompt = prompt_token_ids(req, tok);
  } catch (ApiException& e) {
    e.error.message = where + e.error.message;
    throw;
  } catch (const std::exception& e) {  // the tokenizer's own complaints
    bad_request(where + e.what(), chat ? "messages" : "prompt");
  }
  const auto ids = tok.encode(completion->get<std::string>(), false, /*parse_special=*/false);
  in.completion.assign(ids.begin(), ids.end());
  const auto np = static_cast<int64_t>(in.prompt.size());
  const auto nc = static_cast<int64_t>(in.completion.size());
  if (nc == 0) bad_request(where + "the completion encodes to no tokens", "completion");
  if (np > limits.max_prompt_tokens)
    bad_request(cat(where, "the prompt is ", np, " tokens, above this server's limit of ",
                    limits.max_prompt_tokens),
                chat ? "messages" : "prompt", "context_length_exceeded");
  if (nc > score.max_completion_tokens)
    bad_request(cat(where, "the completion is ", nc, " tokens, above this server's limit of ",
                    score.max_completion_tokens),
                "completion", "context_length_exceeded");
  if (np + nc > context)
    bad_request(cat(where, "This model's maximum context length is ", context,
                    " tokens. However, you requested ", np + nc, " tokens (", np,
                    " in the prompt, ", nc, " in the completion)."),
                "completion", "context_length_exceeded");
  return in;
}

}  // namespace

ScoreRequest parse_score_request(const std::string& body, const std::vector<std::string>& models,
                                 const ApiLimits& limits, const ScoreLimits& score, int64_t context,
                                 const Tokenizer& tok) {
  json j = parse_json_body(body);
  ScoreRequest r;
  if (j.is_array()) {
    if (j.empty()) bad_request("the batch is empty", "", "invalid_value");
    if (static_cast<int64_t>(j.size()) > score.max_inputs)
      bad_request(cat("the batch holds ", j.size(), " inputs, above this server's limit of ",
                      score.max_inputs),
                  "", "too_many_inputs");
    for (size_t i = 0; i < j.size(); ++i)
      r.inputs.push_back(
          parse_one(j[i], cat("input ", i, ": "), models, limits, score, context, tok, &r.model));
  } else {
    r.inputs.push_back(parse_one(j, "", models, limits, score, context, tok, &r.model));
  }
  return r;
}

}  // namespace drafteu::serve
