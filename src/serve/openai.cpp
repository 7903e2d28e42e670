#include "serve/openai.h"

#include <algorithm>
#include <cmath>

#include "util/error.h"

namespace drafteu::serve {

using json = nlohmann::json;

namespace {

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
