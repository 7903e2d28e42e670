#include "serve/speculative.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "serve/acceptance.h"
#include "uncertainty/uncertainty.h"
#include "util/error.h"

namespace drafteu::serve {

namespace {

class Stopwatch {
 public:
  double lap() {
    auto now = std::chrono::steady_clock::now();
    double s = std::chrono::duration<double>(now - t0_).count();
    t0_ = now;
    return s;
  }

 private:
  std::chrono::steady_clock::time_point t0_ = std::chrono::steady_clock::now();
};

torch::Tensor log_probs(const torch::Tensor& logits) {
  return torch::log_softmax(logits.to(torch::kFloat32), -1);
}

torch::Tensor ids_tensor(const std::vector<int64_t>& ids, torch::Device device) {
  return torch::tensor(ids, torch::kInt64).to(device).unsqueeze(0);
}

// Runs `forward(ids, last_only)` over `tokens` and returns the logits of the last n_out positions
// ([..., n_out, V]). A long prefix (the prompt) goes first with last_only, so the lm_head is not
// applied to every prompt position.
template <typename Forward>
torch::Tensor forward_tail(const std::vector<int64_t>& tokens, int64_t n_out, torch::Device device,
                           Forward&& forward) {
  const auto t = static_cast<int64_t>(tokens.size());
  if (t < n_out) fail("speculative: internal error, ", t, " tokens for ", n_out, " outputs");
  if (t > n_out) {
    std::vector<int64_t> head(tokens.begin(), tokens.end() - n_out);
    forward(ids_tensor(head, device), true);
  }
  std::vector<int64_t> tail(tokens.end() - n_out, tokens.end());
  return forward(ids_tensor(tail, device), n_out == 1);
}

}  // namespace

Proposer Proposer::parse(const std::string& text) {
  Proposer p;
  if (text == "mixture") return p;
  p.mixture = false;
  try {
    size_t used = 0;
    p.index = std::stoll(text, &used);
    if (used != text.size() || p.index < 0) throw std::invalid_argument(text);
  } catch (const std::exception&) {
    fail("proposer must be 'mixture' or a draft index (0, 1, ...), got '", text, "'");
  }
  return p;
}

std::string Proposer::name() const {
  return mixture ? "mixture" : std::to_string(index);
}

void GammaSchedule::validate() const {
  if (min < 1 || max < min || initial < min || initial > max)
    fail("gamma: need 1 <= min <= initial <= max, got min ", min, ", initial ", initial, ", max ",
         max);
}

double SpecStats::acceptance_rate() const {
  return proposed ? static_cast<double>(accepted) / static_cast<double>(proposed) : 0.0;
}

double SpecStats::uncertainty_fraction() const {
  return total_s > 0 ? uncertainty_s / total_s : 0.0;
}

const char* to_string(FinishReason reason) {
  switch (reason) {
    case FinishReason::Stop:
      return "stop";
    case FinishReason::Length:
      return "length";
    case FinishReason::Uncertainty:
      return "uncertainty";
  }
  return "?";
}

SpeculativeDecoder::SpeculativeDecoder(LlamaForCausalLM target, std::shared_ptr<Family> drafts,
                                       std::optional<MemberDeltas> reference)
    : target_(std::move(target)), drafts_(std::move(drafts)) {
  if (!target_) fail("speculative: no target model");
  if (!drafts_ || drafts_->size() < 1) fail("speculative: needs at least one draft");
  if (drafts_->vocab_size() != target_->config().vocab_size)
    fail("speculative: the drafts' vocabulary (", drafts_->vocab_size(),
         ") differs from the target's (", target_->config().vocab_size, ")");
  if (reference)
    reference_ = std::make_unique<LowRankFamily>(
        target_, std::vector<MemberDeltas>{MemberDeltas{}, std::move(*reference)});
}

std::unique_ptr<SpeculativeSession> SpeculativeDecoder::start(const std::vector<int64_t>& prompt,
                                                              const SpeculativeOptions& options) {
  return std::make_unique<SpeculativeSession>(*this, prompt, options);
}

SpeculativeDecoder::Result SpeculativeDecoder::generate(const std::vector<int64_t>& prompt,
                                                        const SpeculativeOptions& options,
                                                        const TokenCallback& on_token) {
  auto session = start(prompt, options);
  while (session->step(on_token)) {
  }
  return {session->tokens(), session->finish_reason(), session->stats()};
}

SpeculativeSession::SpeculativeSession(SpeculativeDecoder& decoder,
                                       const std::vector<int64_t>& prompt,
                                       SpeculativeOptions options)
    : dec_(decoder),
      opt_(std::move(options)),
      sampler_(opt_.seed),
      seq_(prompt),
      prompt_len_(static_cast<int64_t>(prompt.size())),
      target_cache_(decoder.target_->new_cache(prompt_len_ + opt_.max_new_tokens + 16)),
      gamma_(opt_.gamma.initial),
      monitor_(opt_.policy) {
  if (prompt.empty()) fail("speculative: the prompt must hold at least one token (e.g. BOS)");
  const int64_t vocab = decoder.target_->config().vocab_size;
  for (auto id : prompt)
    if (id < 0 || id >= vocab)
      fail("speculative: prompt token ", id, " is outside the vocabulary (", vocab, ")");
  if (opt_.max_new_tokens < 1) fail("speculative: max_new_tokens must be >= 1");
  if (!opt_.proposer.mixture && opt_.proposer.index >= decoder.num_drafts())
    fail("speculative: proposer draft ", opt_.proposer.index, " does not exist (",
         decoder.num_drafts(), " drafts)");
  opt_.gamma.validate();
  opt_.policy.validate();
  const int64_t capacity = prompt_len_ + opt_.max_new_tokens + opt_.gamma.max + 16;
  if (decoder.reference_) ref_cache_ = decoder.reference_->new_cache(capacity);
  draft_cache_ = decoder.drafts_->new_cache(capacity);
}

const KVCache& SpeculativeSession::target_cache() const {
  return dec_.reference_ ? ref_cache_.at(0) : target_cache_;
}

int64_t SpeculativeSession::remaining() const {
  return opt_.max_new_tokens - static_cast<int64_t>(tokens_.size()) - (pending_ ? 1 : 0);
}

torch::Tensor SpeculativeSession::draft_forward(const std::vector<int64_t>& tokens, int64_t n_out) {
  auto logits = forward_tail(tokens, n_out, dec_.target_->device(), [&](auto ids, bool last) {
    return dec_.drafts_->forward(ids, &draft_cache_, {}, last);
  });  // [K, 1, n_out, V]
  return log_probs(logits.select(1, 0));
}

std::pair<torch::Tensor, torch::Tensor> SpeculativeSession::target_forward(
    const std::vector<int64_t>& tokens, int64_t n_out) {
  auto device = dec_.target_->device();
  if (!dec_.reference_) {
    auto logits = forward_tail(tokens, n_out, device, [&](auto ids, bool last) {
      return dec_.target_->forward(ids, &target_cache_, {}, last);
    });  // [1, n_out, V]
    return {log_probs(logits[0]), {}};
  }
  auto logits = forward_tail(tokens, n_out, device, [&](auto ids, bool last) {
    return dec_.reference_->forward(ids, &ref_cache_, {}, last);
  });  // [2, 1, n_out, V]
  return {log_probs(logits[0][0]), log_probs(logits[1][0])};
}

torch::Tensor SpeculativeSession::proposal_logp(const torch::Tensor& d) const {
  torch::Tensor base;
  if (!opt_.proposer.mixture)
    base = d[opt_.proposer.index];
  else if (d.size(0) == 1)
    base = d[0];
  else
    base = torch::logsumexp(d, 0) - std::log(static_cast<double>(d.size(0)));
  return warped_log_probs(base, opt_.sampling);
}

void SpeculativeSession::emit(std::vector<SpecToken> toks, const torch::Tensor& drafts,
                              const std::vector<Position>& at, const TokenCallback& on_token) {
  if (toks.empty()) return;
  std::vector<torch::Tensor> target, reference;
  for (const auto& p : at) {
    target.push_back(p.target);
    reference.push_back(p.reference.defined() ? p.reference : p.target);
  }
  auto t = torch::stack(target);  // [m, V]
  for (size_t i = 0; i < toks.size(); ++i) {
    toks[i].logprob = t[static_cast<int64_t>(i)][toks[i].id].item<double>();
    if (opt_.top_logprobs > 0) {
      auto [v, idx] = t[static_cast<int64_t>(i)].topk(opt_.top_logprobs);
      for (int64_t j = 0; j < v.size(0); ++j)
        toks[i].top_logprobs.emplace_back(idx[j].item<int64_t>(), v[j].item<double>());
    }
  }
  if (opt_.uncertainty) {
    Stopwatch sw;
    auto est = uncertainty::draft_estimator(drafts, torch::stack(reference));
    auto h = uncertainty::entropy(t).cpu();
    auto eu = est.eu_hat.cpu(), jsd = est.jsd.cpu(), bias = est.bias.cpu();
    for (size_t i = 0; i < toks.size(); ++i) {
      const auto k = static_cast<int64_t>(i);
      toks[i].uncertainty = TokenUncertainty{eu[k].item<double>(), jsd[k].item<double>(),
                                             bias[k].item<double>(), h[k].item<double>(), false};
    }
    stats_.uncertainty_s += sw.lap();
  }
  for (auto& tok : toks) {
    emit_one(std::move(tok), on_token);
    if (finished_) return;
  }
}

void SpeculativeSession::emit_one(SpecToken tok, const TokenCallback& on_token) {
  if (tok.uncertainty) {
    tok.uncertainty->flagged = opt_.policy.flags(tok.uncertainty->eu_hat);
    monitor_.add(tok.uncertainty->eu_hat);
  }
  tokens_.push_back(std::move(tok));
  ++stats_.emitted;
  const auto& t = tokens_.back();
  const bool keep_going = !on_token || on_token(t);
  const bool stop_id =
      std::find(opt_.stop_ids.begin(), opt_.stop_ids.end(), t.id) != opt_.stop_ids.end();
  FinishReason reason;
  if (!keep_going || stop_id)
    reason = FinishReason::Stop;
  else if (monitor_.should_stop())
    reason = FinishReason::Uncertainty;
  else if (static_cast<int64_t>(tokens_.size()) >= opt_.max_new_tokens)
    reason = FinishReason::Length;
  else
    return;
  finished_ = true;
  finish_ = reason;
  pending_.reset();
  seq_.resize(static_cast<size_t>(prompt_len_) + tokens_.size());
}

void SpeculativeSession::finish_pending(const TokenCallback& on_token) {
  Stopwatch sw;
  auto [tok, at] = std::move(*pending_);
  pending_.reset();
  // Feed up to (not including) the bonus token: its draft distribution, needed only for its record.
  std::vector<int64_t> feed(seq_.begin() + draft_cache_.length(), seq_.end() - 1);
  auto d = draft_forward(feed, 1);
  stats_.uncertainty_s += sw.lap();
  emit({std::move(tok)}, d, {at}, on_token);
}

bool SpeculativeSession::step(const TokenCallback& on_token) {
  if (finished_) return false;
  torch::NoGradGuard no_grad;
  Stopwatch total, sw;
  const bool greedy = opt_.sampling.greedy();
  if (pending_) {
    const auto id = pending_->first.id;
    const bool last = remaining() <= 0 || std::find(opt_.stop_ids.begin(), opt_.stop_ids.end(),
                                                    id) != opt_.stop_ids.end();
    if (last) {
      finish_pending(on_token);
      stats_.total_s += total.lap();
      return !finished_;
    }
  }
  const auto len = static_cast<int64_t>(seq_.size());

  // Draft step 1 feeds what the drafts have not seen; with a pending bonus token that is the last
  // proposal and the bonus, and the first of the two outputs completes the bonus's record.
  std::vector<int64_t> feed(seq_.begin() + draft_cache_.length(), seq_.end());
  const bool complete = pending_.has_value();
  auto first = draft_forward(feed, complete ? 2 : 1);  // [K, n, V]
  stats_.draft_s += sw.lap();
  if (complete) {
    auto [tok, at] = std::move(*pending_);
    pending_.reset();
    emit({std::move(tok)}, first.narrow(1, 0, 1), {at}, on_token);
    if (finished_) {
      stats_.total_s += total.lap();
      return false;
    }
    sw.lap();
  }

  // Propose g tokens; dists[i] is the drafts' distribution at position len + i.
  const int64_t g = std::max<int64_t>(1, std::min(gamma_, remaining()));
  std::vector<int64_t> proposals;
  std::vector<torch::Tensor> dists, q;
  auto cur = first.select(1, first.size(1) - 1);
  for (int64_t i = 0; i < g; ++i) {
    dists.push_back(cur);
    q.push_back(proposal_logp(cur));
    proposals.push_back(draw_proposal(q.back(), greedy, sampler_));
    if (i + 1 < g) cur = draft_forward({proposals.back()}, 1).select(1, 0);
  }
  stats_.draft_s += sw.lap();

  // Verify all proposals in one target forward: outputs at positions len .. len + g.
  std::vector<int64_t> tfeed(seq_.begin() + target_cache().length(), seq_.end());
  tfeed.insert(tfeed.end(), proposals.begin(), proposals.end());
  auto [target, reference] = target_forward(tfeed, g + 1);
  auto verdict = verify_proposals(warped_log_probs(target, opt_.sampling), torch::stack(q),
                                  proposals, greedy, sampler_);
  stats_.target_s += sw.lap();
  const int64_t n = verdict.accepted;
  ++stats_.rounds;
  stats_.proposed += g;
  stats_.accepted += n;
  if (opt_.gamma.adaptive)
    gamma_ = n == g ? std::min(gamma_ + 1, opt_.gamma.max) : std::max(gamma_ - 1, opt_.gamma.min);

  // Roll back: both caches keep only the accepted text (the new token is not fed yet).
  seq_.insert(seq_.end(), proposals.begin(), proposals.begin() + n);
  seq_.push_back(verdict.token);
  if (dec_.reference_)
    ref_cache_.truncate(len + n);
  else
    target_cache_.truncate(len + n);
  draft_cache_.truncate(len + std::min(n, g - 1));

  std::vector<SpecToken> toks;
  std::vector<Position> at;
  for (int64_t j = 0; j <= n; ++j) {
    SpecToken t;
    t.id = j < n ? proposals[static_cast<size_t>(j)] : verdict.token;
    t.accepted = j < n;
    toks.push_back(std::move(t));
    at.push_back({target[j], reference.defined() ? reference[j] : torch::Tensor()});
  }
  if (verdict.bonus && opt_.uncertainty) {  // no draft distribution at its position yet
    pending_.emplace(std::move(toks.back()), at.back());
    toks.pop_back();
    at.pop_back();
  }
  torch::Tensor drafts;
  if (!toks.empty() && opt_.uncertainty)
    drafts =
        torch::stack(std::vector<torch::Tensor>(dists.begin(), dists.begin() + toks.size()), 1);
  emit(std::move(toks), drafts, at, on_token);
  stats_.total_s += total.lap();
  return !finished_;
}

}  // namespace drafteu::serve
