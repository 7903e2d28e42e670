#include "serve/openai_request.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace drafteu::serve {

using json = nlohmann::json;

void bad_request(const std::string& message, const std::string& param, const std::string& code,
                 int status) {
  throw ApiException(ApiError{status, message, "invalid_request_error", param, code});
}

namespace {

const char* type_name(const json& v) {
  return v.type_name();
}

// An optional field: absent or null = nullopt; present with another type = 400.
const json* field(const json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

std::optional<int64_t> opt_int(const json& j, const char* key, int64_t lo, int64_t hi) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer() &&
      !(v->is_number_float() && std::floor(v->get<double>()) == v->get<double>()))
    bad_request(cat("'", key, "' must be an integer, got ", type_name(*v)), key, "invalid_type");
  if (v->is_number_float() && std::abs(v->get<double>()) > 9e15)
    bad_request(cat("'", key, "' is out of range"), key);
  const auto x = v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX) ? INT64_MAX
                 : v->is_number_float() ? static_cast<int64_t>(v->get<double>())
                                        : v->get<int64_t>();
  if (x < lo || x > hi)
    bad_request(cat("'", key, "' must be between ", lo, " and ", hi, ", got ", x), key);
  return x;
}

std::optional<double> opt_number(const json& j, const char* key, double lo, double hi) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_number())
    bad_request(cat("'", key, "' must be a number, got ", type_name(*v)), key, "invalid_type");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi)) bad_request(cat("'", key, "' must be between ", lo, " and ", hi), key);
  return x;
}

std::optional<bool> opt_bool(const json& j, const char* key) {
  const json* v = field(j, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean())
    bad_request(cat("'", key, "' must be a boolean, got ", type_name(*v)), key, "invalid_type");
  return v->get<bool>();
}

std::string message_content(const json& content, size_t i) {
  const std::string param = cat("messages[", i, "].content");
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {  // [{"type": "text", "text": ...}, ...]
    std::string out;
    for (const auto& part : content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string())
        bad_request("only text content parts are supported", param, "invalid_type");
      out += part["text"].get<std::string>();
    }
    return out;
  }
  bad_request(cat("'", param, "' must be a string or an array of text parts"), param,
              "invalid_type");
}

}  // namespace

json ApiError::body() const {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json() : json(param)},
            {"code", code.empty() ? json() : json(code)}}}};
}

json parse_json_body(const std::string& body) {
  try {
    // Nesting is bounded while parsing: deep documents would cost memory, then stack in dump().
    return json::parse(body, [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth)
        bad_request(cat("the JSON body nests deeper than ", kMaxJsonDepth, " levels"), "",
                    "invalid_json");
      return true;
    });
  } catch (const json::exception& e) {
    bad_request(cat("We could not parse the JSON body of your request: ", e.what()), "",
                "invalid_json");
  }
}

namespace {

std::string parse_model(const json& j, const std::vector<std::string>& models) {
  const json* model = field(j, "model");
  if (!model)
    bad_request("you must provide a model parameter", "model", "missing_required_parameter");
  if (!model->is_string()) bad_request("'model' must be a string", "model", "invalid_type");
  auto name = model->get<std::string>();
  if (std::find(models.begin(), models.end(), name) == models.end())
    bad_request(cat("The model '", name, "' does not exist"), "model", "model_not_found", 404);
  return name;
}

std::string parse_prompt(const json& j) {
  const json* p = field(j, "prompt");
  if (!p) bad_request("you must provide a prompt", "prompt", "missing_required_parameter");
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) return (*p)[0].get<std::string>();
  if (p->is_string()) return p->get<std::string>();
  bad_request("'prompt' must be a string (or a list of one string)", "prompt", "invalid_type");
}

std::vector<ChatMessage> parse_messages(const json& j) {
  const json* m = field(j, "messages");
  if (!m) bad_request("you must provide messages", "messages", "missing_required_parameter");
  if (!m->is_array() || m->empty())
    bad_request("'messages' must be a non-empty array", "messages", "invalid_type");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < m->size(); ++i) {
    const auto& msg = (*m)[i];
    const std::string param = cat("messages[", i, "]");
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string())
      bad_request(cat("'", param, "' must be an object with a string 'role'"), param,
                  "invalid_type");
    const auto role = msg["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant" && role != "developer")
      bad_request(cat("'", param, ".role' must be system, user or assistant"), param + ".role");
    if (!msg.contains("content"))
      bad_request(cat("'", param, ".content' is missing"), param + ".content",
                  "missing_required_parameter");
    out.push_back({role == "developer" ? "system" : role, message_content(msg["content"], i)});
  }
  return out;
}

// Sampling, length, n, stream: the fields both endpoints share.
void parse_generation_fields(const json& j, Endpoint endpoint, const ApiLimits& limits,
                             CompletionRequest& r) {
  auto max_tokens = opt_int(j, "max_tokens", 1, INT64_MAX);
  if (endpoint == Endpoint::Chat && !max_tokens)
    max_tokens = opt_int(j, "max_completion_tokens", 1, INT64_MAX);
  r.max_tokens = max_tokens.value_or(limits.default_max_tokens);
  if (r.max_tokens > limits.max_tokens_limit)
    bad_request(cat("max_tokens is ", r.max_tokens, ", above this server's limit of ",
                    limits.max_tokens_limit),
                "max_tokens", "max_tokens_exceeded");
  r.sampling.temperature = opt_number(j, "temperature", 0.0, 2.0).value_or(1.0);
  r.sampling.top_p = opt_number(j, "top_p", 0.0, 1.0).value_or(1.0);
  if (r.sampling.top_p <= 0) bad_request("'top_p' must be > 0", "top_p");
  r.sampling.top_k = opt_int(j, "top_k", 0, INT64_MAX).value_or(0);
  if (auto s = opt_int(j, "seed", INT64_MIN, INT64_MAX)) r.seed = static_cast<uint64_t>(*s);
  if (auto n = opt_int(j, "n", 1, INT64_MAX); n && *n != 1)
    bad_request("only n = 1 is supported", "n", "unsupported_value");
  r.stream = opt_bool(j, "stream").value_or(false);
  r.speculative_detailed = opt_bool(j, "speculative_detailed").value_or(false);
}

std::vector<std::string> parse_stop(const json& j) {
  std::vector<std::string> stop;
  const json* s = field(j, "stop");
  if (!s) return stop;
  if (s->is_string()) {
    stop.push_back(s->get<std::string>());
  } else if (s->is_array() && s->size() <= 4) {
    for (const auto& x : *s) {
      if (!x.is_string())
        bad_request("'stop' must be a string or a list of strings", "stop", "invalid_type");
      stop.push_back(x.get<std::string>());
    }
  } else {
    bad_request("'stop' must be a string or a list of at most 4 strings", "stop", "invalid_type");
  }
  for (const auto& x : stop)
    if (x.empty()) bad_request("stop strings must not be empty", "stop");
  return stop;
}

// Completions: logprobs = the number of top log-probs; chat: a flag plus top_logprobs.
void parse_logprobs(const json& j, Endpoint endpoint, CompletionRequest& r) {
  if (endpoint == Endpoint::Completions) {
    if (auto lp = opt_int(j, "logprobs", 0, 20)) r.logprobs = true, r.top_logprobs = *lp;
    return;
  }
  r.logprobs = opt_bool(j, "logprobs").value_or(false);
  if (auto top = opt_int(j, "top_logprobs", 0, 20)) {
    if (!r.logprobs) bad_request("'top_logprobs' needs 'logprobs': true", "top_logprobs");
    r.top_logprobs = *top;
  }
}

}  // namespace

CompletionRequest parse_request(Endpoint endpoint, const std::string& body,
                                const std::vector<std::string>& models, const ApiLimits& limits) {
  json j = parse_json_body(body);
  if (!j.is_object()) bad_request("the request body must be a JSON object", "", "invalid_type");
  CompletionRequest r;
  r.endpoint = endpoint;
  r.model = parse_model(j, models);
  if (endpoint == Endpoint::Completions)
    r.prompt = parse_prompt(j);
  else
    r.messages = parse_messages(j);
  parse_generation_fields(j, endpoint, limits, r);
  r.stop = parse_stop(j);
  parse_logprobs(j, endpoint, r);
  return r;
}

std::vector<int64_t> prompt_token_ids(const CompletionRequest& r, const Tokenizer& tok) {
  std::vector<int32_t> ids;
  if (r.endpoint == Endpoint::Completions) {
    ids = tok.encode(r.prompt, tok.bos_id().has_value(), /*parse_special=*/false);
  } else if (tok.has_chat_template()) {
    ids = tok.encode(tok.apply_chat_template(r.messages, true), false);
  } else {
    std::string text;
    for (const auto& m : r.messages) text += m.role + ": " + m.content + "\n";
    ids = tok.encode(text + "assistant:", tok.bos_id().has_value(), false);
  }
  if (ids.empty() && tok.bos_id()) ids.push_back(*tok.bos_id());
  if (ids.empty())
    bad_request("the prompt is empty", r.endpoint == Endpoint::Chat ? "messages" : "prompt");
  return {ids.begin(), ids.end()};
}

}  // namespace drafteu::serve
