#include "serve/openai.h"

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

std::vector<int> byte_list(const std::string& s) {
  std::vector<int> out;
  for (unsigned char c : s) out.push_back(c);
  return out;
}

// The longest suffix of `text` that is a proper prefix of some stop string (held back).
size_t held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t best = 0;
  for (const auto& s : stops)
    for (size_t k = std::min(s.size() - 1, text.size()); k > best; --k)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        best = k;
        break;
      }
  return best;
}

json finite_or_null(double v) {
  return std::isfinite(v) ? json(v) : json();
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

json uncertainty_json(const SpecToken& t) {
  if (!t.uncertainty) return json();
  const auto& u = *t.uncertainty;
  return {{"eu_hat", finite_or_null(u.eu_hat)},
          {"jsd", finite_or_null(u.jsd)},
          {"bias", finite_or_null(u.bias)},
          {"entropy", finite_or_null(u.entropy)},
          {"accepted", t.accepted},
          {"flagged", u.flagged}};
}

ResponseAssembler::ResponseAssembler(const CompletionRequest& request, const Tokenizer& tok,
                                     std::string id, int64_t created, int64_t prompt_tokens,
                                     std::string gamma_schedule)
    : req_(request),
      tok_(tok),
      decoder_(tok),
      id_(std::move(id)),
      gamma_schedule_(std::move(gamma_schedule)),
      created_(created),
      prompt_tokens_(prompt_tokens) {}

std::string ResponseAssembler::release(bool final) {
  if (stopped_) return "";
  for (const auto& s : req_.stop) {
    auto pos = full_.find(s);
    if (pos != std::string::npos) {
      stopped_ = true;
      full_.resize(pos);
      std::string out = pos > released_.size() ? full_.substr(released_.size()) : "";
      released_ += out;
      return out;
    }
  }
  const size_t keep = final ? 0 : held_back(full_, req_.stop);
  const size_t end = full_.size() - keep;
  if (end <= released_.size()) return "";
  std::string out = full_.substr(released_.size(), end - released_.size());
  released_ += out;
  return out;
}

json ResponseAssembler::token_logprobs_entry(const SpecToken& t, const std::string& text) const {
  json top = json::array();
  for (const auto& [id, lp] : t.top_logprobs) {
    auto s = tok_.token_bytes(static_cast<int32_t>(id));
    top.push_back({{"token", s}, {"logprob", lp}, {"bytes", byte_list(s)}});
  }
  json e = {
      {"token", text}, {"logprob", t.logprob}, {"bytes", byte_list(text)}, {"top_logprobs", top}};
  e["uncertainty"] = uncertainty_json(t);
  return e;
}

json ResponseAssembler::envelope(json choice, bool chunk) const {
  const bool chat = req_.endpoint == Endpoint::Chat;
  return {
      {"id", id_},
      {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion"},
      {"created", created_},
      {"model", req_.model},
      {"choices", json::array({std::move(choice)})}};
}

// Completions' legacy logprobs object for tokens [from, to).
static json completion_logprobs(const std::vector<SpecToken>& toks,
                                const std::vector<std::string>& texts,
                                const std::vector<int64_t>& offsets, const Tokenizer& tok,
                                size_t from, size_t to) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  for (size_t i = from; i < to; ++i) {
    tokens.push_back(texts[i]);
    lps.push_back(toks[i].logprob);
    json top = json::object();
    for (const auto& [id, lp] : toks[i].top_logprobs)
      top[tok.token_bytes(static_cast<int32_t>(id))] = lp;
    tops.push_back(top);
    offs.push_back(offsets[i]);
  }
  return {
      {"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}, {"text_offset", offs}};
}

json ResponseAssembler::add(const SpecToken& t, bool* stop_hit) {
  ++completion_tokens_;
  const std::string text = tok_.token_bytes(static_cast<int32_t>(t.id));
  offsets_.push_back(static_cast<int64_t>(full_.size()));
  tokens_.push_back(t);
  token_texts_.push_back(text);
  full_ += decoder_.push(static_cast<int32_t>(t.id));
  const std::string piece = release(false);
  *stop_hit = stopped_;
  const size_t i = tokens_.size() - 1;
  if (req_.endpoint == Endpoint::Completions) {
    json choice = {{"index", 0}, {"text", piece}, {"finish_reason", nullptr}};
    choice["logprobs"] = req_.logprobs
                             ? completion_logprobs(tokens_, token_texts_, offsets_, tok_, i, i + 1)
                             : json();
    choice["uncertainty"] = json::array({uncertainty_json(t)});
    return envelope(choice, true);
  }
  json delta = json::object();
  if (!piece.empty()) delta["content"] = piece;
  json choice = {{"index", 0}, {"delta", delta}, {"finish_reason", nullptr}};
  choice["logprobs"] = {{"content", json::array({token_logprobs_entry(t, text)})}};
  return envelope(choice, true);
}

json ResponseAssembler::first_chunk() const {
  json choice = {{"index", 0},
                 {"delta", {{"role", "assistant"}, {"content", ""}}},
                 {"logprobs", nullptr},
                 {"finish_reason", nullptr}};
  return envelope(choice, true);
}

json speculative_json(const SpecStats& stats, const std::string& gamma_schedule, bool detailed) {
  const double mean_gamma =
      stats.rounds ? static_cast<double>(stats.proposed) / static_cast<double>(stats.rounds) : 0.0;
  json out = {{"draft_acceptance_rate", stats.acceptance_rate()},
              {"mean_accepted_length", stats.mean_accepted_length()},
              {"accepted_per_position", stats.accepted_per_position()},
              {"proposed_per_position", stats.proposed_per_position()},
              {"gamma", mean_gamma},
              {"gamma_schedule", gamma_schedule.empty() ? json() : json(gamma_schedule)},
              {"proposed", stats.proposed},
              {"accepted", stats.accepted},
              {"acceptance_rate", stats.acceptance_rate()},
              {"rounds", stats.rounds},
              {"uncertainty_time_fraction", stats.uncertainty_fraction()}};
  if (detailed)
    out["detailed"] = {{"gamma", stats.round_gamma}, {"accepted", stats.round_accepted}};
  return out;
}

json ResponseAssembler::final_chunk(const std::string& finish_reason, const SpecStats& stats,
                                    const SequenceSummary& summary) {
  if (!stopped_) full_ += decoder_.flush();
  const std::string rest = release(true);
  json choice = {{"index", 0},
                 {"finish_reason", finish_reason},
                 {"uncertainty_summary", summary.to_json()},
                 {"logprobs", nullptr}};
  if (req_.endpoint == Endpoint::Completions) {
    choice["text"] = rest;
    choice["uncertainty"] = json::array();
  } else {
    choice["delta"] = rest.empty() ? json::object() : json{{"content", rest}};
  }
  auto out = envelope(choice, true);
  out["usage"] = {{"prompt_tokens", prompt_tokens_},
                  {"completion_tokens", completion_tokens_},
                  {"total_tokens", prompt_tokens_ + completion_tokens_}};
  out["speculative"] = speculative_json(stats, gamma_schedule_, req_.speculative_detailed);
  return out;
}

json ResponseAssembler::response(const std::string& finish_reason, const SpecStats& stats,
                                 const SequenceSummary& summary) {
  if (!stopped_) full_ += decoder_.flush();
  release(true);
  json choice = {
      {"index", 0}, {"finish_reason", finish_reason}, {"uncertainty_summary", summary.to_json()}};
  if (req_.endpoint == Endpoint::Completions) {
    choice["text"] = released_;
    choice["logprobs"] = req_.logprobs ? completion_logprobs(tokens_, token_texts_, offsets_, tok_,
                                                             0, tokens_.size())
                                       : json();
    json u = json::array();
    for (const auto& t : tokens_) u.push_back(uncertainty_json(t));
    choice["uncertainty"] = u;
  } else {
    choice["message"] = {{"role", "assistant"}, {"content", released_}};
    json content = json::array();
    for (size_t i = 0; i < tokens_.size(); ++i)
      content.push_back(token_logprobs_entry(tokens_[i], token_texts_[i]));
    choice["logprobs"] = {{"content", content}};
  }
  auto out = envelope(choice, false);
  out["usage"] = {{"prompt_tokens", prompt_tokens_},
                  {"completion_tokens", completion_tokens_},
                  {"total_tokens", prompt_tokens_ + completion_tokens_}};
  out["speculative"] = speculative_json(stats, gamma_schedule_, req_.speculative_detailed);
  return out;
}

}  // namespace drafteu::serve
