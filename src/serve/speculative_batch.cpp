#include "serve/speculative_batch.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "serve/acceptance.h"
#include "uncertainty/uncertainty.h"
#include "util/error.h"

namespace drafteu::serve {

// Seconds between laps (named, not in the anonymous namespace: RoundClock holds two).
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

namespace {

torch::Tensor log_probs(const torch::Tensor& logits) {
  return torch::log_softmax(logits.to(torch::kFloat32), -1);
}

bool is_stop(const SpeculativeOptions& o, int64_t id) {
  return std::find(o.stop_ids.begin(), o.stop_ids.end(), id) != o.stop_ids.end();
}

// Token rows of different lengths as one [B, W] batch with its attention mask (1 = real token);
// `left` pads on the left (the real tokens end together), else on the right.
std::pair<torch::Tensor, torch::Tensor> pad_batch(const std::vector<std::vector<int64_t>>& rows,
                                                  bool left, torch::Device device) {
  size_t width = 1;
  for (const auto& r : rows) width = std::max(width, r.size());
  const auto b = static_cast<int64_t>(rows.size()), w = static_cast<int64_t>(width);
  auto ids = torch::zeros({b, w}, torch::kInt64);
  auto mask = torch::zeros({b, w}, torch::kInt64);
  auto ia = ids.accessor<int64_t, 2>();
  auto ma = mask.accessor<int64_t, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const auto& r = rows[static_cast<size_t>(i)];
    const int64_t offset = left ? w - static_cast<int64_t>(r.size()) : 0;
    for (size_t j = 0; j < r.size(); ++j) {
      ia[i][offset + static_cast<int64_t>(j)] = r[j];
      ma[i][offset + static_cast<int64_t>(j)] = 1;
    }
  }
  return {ids.to(device), mask.to(device)};
}

}  // namespace

struct SpeculativeBatch::Row {
  Row(uint64_t id_, const std::vector<int64_t>& prompt, SpeculativeOptions o, TokenCallback cb,
      double draft_cost_ratio)
      : id(id_),
        opt(std::move(o)),
        on_token(std::move(cb)),
        sampler(opt.seed),
        seq(prompt),
        prompt_len(static_cast<int64_t>(prompt.size())),
        gamma(opt.gamma, draft_cost_ratio),
        monitor(opt.policy) {}

  uint64_t id;
  SpeculativeOptions opt;
  TokenCallback on_token;
  Sampler sampler;
  std::vector<int64_t> seq;  // prompt and every decided token
  int64_t prompt_len;
  int64_t draft_fed = 0;  // leading tokens of seq the draft cache holds (the target's: all but 1)
  GammaController gamma;
  std::vector<SpecToken> tokens;
  SequenceMonitor monitor;
  SpecStats stats;
  bool finished = false;
  FinishReason finish = FinishReason::Length;
  // The bonus token of the last round, waiting for its draft distribution.
  std::optional<std::pair<SpecToken, Position>> pending;
  // This round: proposals, the drafts' raw distributions at their positions and the proposer's.
  int64_t g = 0;
  std::vector<int64_t> proposals;
  std::vector<torch::Tensor> dists, q;

  int64_t remaining() const {
    return opt.max_new_tokens - static_cast<int64_t>(tokens.size()) - (pending ? 1 : 0);
  }
};

struct SpeculativeBatch::Emission {
  Row* row;
  std::vector<SpecToken> toks;
  torch::Tensor drafts;  // [K, toks, V] raw draft log-probs (undefined without uncertainty)
  std::vector<Position> at;
};

SpeculativeBatch::SpeculativeBatch(SpeculativeDecoder& decoder) : dec_(decoder) {}
SpeculativeBatch::~SpeculativeBatch() = default;

size_t SpeculativeBatch::size() const {
  return rows_.size() + joining_.size();
}

uint64_t SpeculativeBatch::add(const std::vector<int64_t>& prompt, SpeculativeOptions options,
                               TokenCallback on_token) {
  if (prompt.empty()) fail("speculative: the prompt must hold at least one token (e.g. BOS)");
  const int64_t vocab = dec_.target_->config().vocab_size;
  for (auto id : prompt)
    if (id < 0 || id >= vocab)
      fail("speculative: prompt token ", id, " is outside the vocabulary (", vocab, ")");
  if (options.max_new_tokens < 1) fail("speculative: max_new_tokens must be >= 1");
  if (!options.proposer.mixture && options.proposer.index >= dec_.num_drafts())
    fail("speculative: proposer draft ", options.proposer.index, " does not exist (",
         dec_.num_drafts(), " drafts)");
  options.gamma.validate();
  options.policy.validate();
  joining_.emplace_back(next_id_, prompt, std::move(options), std::move(on_token),
                        dec_.draft_cost_ratio());
  return next_id_++;
}

const std::vector<int64_t>& SpeculativeBatch::sequence(uint64_t id) const {
  return rows_[static_cast<size_t>(row_of(id))].seq;
}

int64_t SpeculativeBatch::row_of(uint64_t id) const {
  for (size_t i = 0; i < rows_.size(); ++i)
    if (rows_[i].id == id) return static_cast<int64_t>(i);
  fail("speculative: sequence ", id, " is not decoding");
}

// Both caches take all of the prompt but its last token (which the first round feeds); a
// one-token prompt leaves one masked position so that every row has a cache to merge.
void SpeculativeBatch::prefill(Row& r, FamilyCache& target_cache, FamilyCache& draft_cache) {
  const int64_t capacity = r.prompt_len + r.opt.max_new_tokens + r.opt.gamma.max + 16;
  target_cache = dec_.reference_ ? dec_.reference_->new_cache(capacity)
                                 : FamilyCache({dec_.target_->new_cache(capacity)});
  draft_cache = dec_.drafts_->new_cache(capacity);
  std::vector<int64_t> head(r.seq.begin(), r.seq.end() - 1);
  const auto device = dec_.target_->device();
  auto ids = torch::tensor(head.empty() ? std::vector<int64_t>{0} : head, torch::kInt64)
                 .to(device)
                 .unsqueeze(0);
  auto mask = head.empty() ? torch::zeros_like(ids) : torch::ones_like(ids);
  if (dec_.reference_)
    dec_.reference_->forward(ids, &target_cache, mask, true);
  else
    dec_.target_->forward(ids, &target_cache.at(0), mask, true);
  dec_.drafts_->forward(ids, &draft_cache, mask, true);
  r.draft_fed = static_cast<int64_t>(head.size());
}

void SpeculativeBatch::admit() {
  for (auto& r : joining_) {
    FamilyCache t, d;
    Stopwatch watch;
    prefill(r, t, d);
    r.stats.prefill_s += watch.lap();
    if (rows_.empty()) {
      target_cache_ = std::move(t);
      draft_cache_ = std::move(d);
    } else {
      target_cache_.append_rows(t);
      draft_cache_.append_rows(d);
    }
    rows_.push_back(std::move(r));
  }
  joining_.clear();
}

torch::Tensor SpeculativeBatch::draft_step(const std::vector<std::vector<int64_t>>& feeds,
                                           bool last_only) {
  auto [ids, mask] = pad_batch(feeds, /*left=*/true, dec_.target_->device());
  return log_probs(dec_.drafts_->forward(ids, &draft_cache_, mask, last_only));  // [K, B, n, V]
}

std::pair<torch::Tensor, torch::Tensor> SpeculativeBatch::verify_step(
    const std::vector<std::vector<int64_t>>& feeds) {
  auto [ids, mask] = pad_batch(feeds, /*left=*/false, dec_.target_->device());
  if (!dec_.reference_)
    return {log_probs(dec_.target_->forward(ids, &target_cache_.at(0), mask)), {}};
  auto logp = log_probs(dec_.reference_->forward(ids, &target_cache_, mask));  // [2, B, T, V]
  return {logp[0], logp[1]};
}

torch::Tensor SpeculativeBatch::proposal_logp(const Row& r, const torch::Tensor& d) const {
  torch::Tensor base;
  if (!r.opt.proposer.mixture)
    base = d[r.opt.proposer.index];
  else if (d.size(0) == 1)
    base = d[0];
  else
    base = torch::logsumexp(d, 0) - std::log(static_cast<double>(d.size(0)));
  return warped_log_probs(base, r.opt.sampling);
}

// Log-probs and records for every row's tokens (one estimator call for the whole batch), then
// each row's tokens in order through its policy and callback.
void SpeculativeBatch::emit(std::vector<Emission>& emissions) {
  Stopwatch sw;
  std::vector<torch::Tensor> drafts, reference, target;
  for (auto& e : emissions) {
    std::vector<torch::Tensor> t;
    for (const auto& p : e.at) t.push_back(p.target);
    auto ts = torch::stack(t);  // [m, V]
    for (size_t i = 0; i < e.toks.size(); ++i) {
      const auto row = ts[static_cast<int64_t>(i)];
      e.toks[i].logprob = row[e.toks[i].id].item<double>();
      if (e.row->opt.top_logprobs > 0) {
        auto [v, idx] = row.topk(e.row->opt.top_logprobs);
        for (int64_t j = 0; j < v.size(0); ++j)
          e.toks[i].top_logprobs.emplace_back(idx[j].item<int64_t>(), v[j].item<double>());
      }
    }
    if (!e.row->opt.uncertainty || e.toks.empty()) continue;
    drafts.push_back(e.drafts);
    target.push_back(ts);
    for (const auto& p : e.at) reference.push_back(p.reference.defined() ? p.reference : p.target);
  }
  if (!drafts.empty()) {
    auto rec = uncertainty::token_records(torch::cat(drafts, 1), torch::stack(reference),
                                          torch::cat(target, 0));
    auto eua = rec.eu_hat.accessor<double, 1>(), ja = rec.jsd.accessor<double, 1>();
    auto ba = rec.bias.accessor<double, 1>(), ha = rec.entropy.accessor<double, 1>();
    int64_t k = 0;
    for (auto& e : emissions) {
      if (!e.row->opt.uncertainty) continue;
      for (auto& tok : e.toks) {
        tok.uncertainty = TokenUncertainty{eua[k], ja[k], ba[k], ha[k], false};
        ++k;
      }
    }
  }
  const double seconds = sw.lap();
  for (auto& e : emissions) {
    if (e.row->opt.uncertainty) e.row->stats.uncertainty_s += seconds;
    for (auto& tok : e.toks) {
      if (e.row->finished) break;
      emit_one(*e.row, std::move(tok));
    }
  }
}

void SpeculativeBatch::emit_one(Row& r, SpecToken tok) {
  if (tok.uncertainty) {
    tok.uncertainty->flagged = r.opt.policy.flags(tok.uncertainty->eu_hat);
    r.monitor.add(tok.uncertainty->eu_hat);
  }
  r.tokens.push_back(std::move(tok));
  ++r.stats.emitted;
  const auto& t = r.tokens.back();
  const bool keep_going = !r.on_token || r.on_token(t);
  FinishReason reason;
  if (!keep_going || is_stop(r.opt, t.id))
    reason = FinishReason::Stop;
  else if (r.monitor.should_stop())
    reason = FinishReason::Uncertainty;
  else if (static_cast<int64_t>(r.tokens.size()) >= r.opt.max_new_tokens)
    reason = FinishReason::Length;
  else
    return;
  r.finished = true;
  r.finish = reason;
  r.pending.reset();
  r.seq.resize(static_cast<size_t>(r.prompt_len) + r.tokens.size());
}

// Finished rows leave the batch and their caches; `kept` gets the old indices of the others.
void SpeculativeBatch::drop_finished(std::vector<Finished>& done, torch::Tensor* kept) {
  if (std::none_of(rows_.begin(), rows_.end(), [](const Row& r) { return r.finished; })) return;
  std::vector<Row> keep;
  std::vector<int64_t> keep_rows;
  for (size_t i = 0; i < rows_.size(); ++i) {
    auto& r = rows_[i];
    if (r.finished) {
      done.push_back({r.id, std::move(r.tokens), r.finish, r.stats});
    } else {
      keep_rows.push_back(static_cast<int64_t>(i));
      keep.push_back(std::move(r));
    }
  }
  auto idx = torch::tensor(keep_rows, torch::kInt64);
  if (kept) *kept = idx;
  rows_ = std::move(keep);
  if (rows_.empty()) {
    target_cache_ = FamilyCache();
    draft_cache_ = FamilyCache();
    return;
  }
  target_cache_.select_rows(idx);
  draft_cache_.select_rows(idx);
}

// Charges the time since its last lap to every row's stats: draft, target or total.
struct SpeculativeBatch::RoundClock {
  Stopwatch total, phase;
  void charge(std::vector<Row>& rows, double SpecStats::*field) {
    const double s = phase.lap();
    for (auto& r : rows) r.stats.*field += s;
  }
  void charge_total(std::vector<Row>& rows) {
    const double s = total.lap();
    for (auto& r : rows) r.stats.total_s += s;
  }
};

// 1. The drafts take what they have not seen: the last token, or (after a fully accepted round)
//    the last proposal and the bonus token, whose record the first output completes. Returns each
//    remaining row's draft distributions at its next position [K, B, V]; undefined when no row
//    remains.
torch::Tensor SpeculativeBatch::feed_drafts(std::vector<Finished>& done, RoundClock& clock) {
  std::vector<std::vector<int64_t>> feeds;
  int64_t width = 1;
  for (auto& r : rows_) {
    feeds.emplace_back(r.seq.begin() + r.draft_fed, r.seq.end());
    width = std::max(width, static_cast<int64_t>(feeds.back().size()));
    r.draft_fed = static_cast<int64_t>(r.seq.size());
  }
  auto first = draft_step(feeds, width == 1);  // [K, B, width or 1, V]
  clock.charge(rows_, &SpecStats::draft_s);
  std::vector<Emission> bonus;
  for (size_t i = 0; i < rows_.size(); ++i) {
    auto& r = rows_[i];
    if (!r.pending) continue;
    auto [tok, at] = std::move(*r.pending);
    r.pending.reset();
    bonus.push_back({&r,
                     {std::move(tok)},
                     first.select(1, static_cast<int64_t>(i)).narrow(1, width - 2, 1),
                     {at}});
  }
  if (!bonus.empty()) {
    emit(bonus);
    clock.charge_total(rows_);
    torch::Tensor kept;
    drop_finished(done, &kept);
    if (rows_.empty()) return {};
    if (kept.defined()) first = first.index_select(1, kept.to(first.device()));
  }
  clock.phase.lap();  // the records' time is charged by emit()
  return first.select(2, first.size(2) - 1);
}

// 2. Proposals: row r draws g_r of them from `next` [K, B, V]; draft step i + 1 feeds proposal i
//    where it is needed. Returns G, the round's largest g_r.
int64_t SpeculativeBatch::propose(torch::Tensor next) {
  const auto b = static_cast<int64_t>(rows_.size());
  int64_t big_g = 1;
  for (auto& r : rows_) {
    r.g = std::max<int64_t>(1, std::min(r.gamma.gamma(), r.remaining()));
    r.proposals.clear(), r.dists.clear(), r.q.clear();
    big_g = std::max(big_g, r.g);
  }
  for (int64_t i = 0; i < big_g; ++i) {
    std::vector<std::vector<int64_t>> step_feeds(static_cast<size_t>(b));
    for (int64_t j = 0; j < b; ++j) {
      auto& r = rows_[static_cast<size_t>(j)];
      if (i >= r.g) continue;
      auto d = next.select(1, j);  // [K, V]
      r.dists.push_back(d);
      r.q.push_back(proposal_logp(r, d));
      r.proposals.push_back(draw_proposal(r.q.back(), r.opt.sampling.greedy(), r.sampler));
      if (i + 1 < r.g) step_feeds[static_cast<size_t>(j)] = {r.proposals.back()};
    }
    if (i + 1 < big_g) next = draft_step(step_feeds, true).select(2, 0);
  }
  return big_g;
}

// Each cache keeps row `j`'s accepted text; the token the target chose is not fed yet.
void SpeculativeBatch::roll_back(int64_t j, int64_t n, int64_t big_g, int64_t target_end,
                                 int64_t draft_end) {
  auto& r = rows_[static_cast<size_t>(j)];
  const auto len = static_cast<int64_t>(r.seq.size());
  target_cache_.mask_positions(j, target_end - big_g + n, target_end);
  const int64_t draft_kept = std::min(n, r.g - 1);  // proposals the drafts saw and may keep
  draft_cache_.mask_positions(j, draft_end - (big_g - 1) + draft_kept, draft_end);
  r.draft_fed = len + draft_kept;
}

// 3. One target forward verifies every row's proposals (outputs at positions len .. len + g);
//    each row keeps its accepted prefix and the target's token. Returns the tokens to record.
std::vector<SpeculativeBatch::Emission> SpeculativeBatch::verify(int64_t big_g) {
  const auto b = static_cast<int64_t>(rows_.size());
  std::vector<std::vector<int64_t>> verify_feeds;
  for (auto& r : rows_) {
    verify_feeds.push_back({r.seq.back()});
    verify_feeds.back().insert(verify_feeds.back().end(), r.proposals.begin(), r.proposals.end());
  }
  auto [target, reference] = verify_step(verify_feeds);  // [B, G + 1, V]
  const int64_t target_end = target_cache_.length(), draft_end = draft_cache_.length();
  std::vector<Emission> emissions;
  for (int64_t j = 0; j < b; ++j) {
    auto& r = rows_[static_cast<size_t>(j)];
    auto t = target[j].narrow(0, 0, r.g + 1);
    auto ref = reference.defined() ? reference[j].narrow(0, 0, r.g + 1) : torch::Tensor();
    auto verdict = verify_proposals(warped_log_probs(t, r.opt.sampling), torch::stack(r.q),
                                    r.proposals, r.opt.sampling.greedy(), r.sampler);
    const int64_t n = verdict.accepted;
    ++r.stats.rounds;
    r.stats.proposed += r.g;
    r.stats.accepted += n;
    r.stats.round_gamma.push_back(r.g);
    r.stats.round_accepted.push_back(n);
    r.gamma.update(r.g, n);
    roll_back(j, n, big_g, target_end, draft_end);
    r.seq.insert(r.seq.end(), r.proposals.begin(), r.proposals.begin() + n);
    r.seq.push_back(verdict.token);

    Emission e{&r, {}, {}, {}};
    for (int64_t k = 0; k <= n; ++k) {
      SpecToken tok;
      tok.id = k < n ? r.proposals[static_cast<size_t>(k)] : verdict.token;
      tok.accepted = k < n;
      e.toks.push_back(std::move(tok));
      e.at.push_back({t[k], ref.defined() ? ref[k] : torch::Tensor()});
    }
    if (verdict.bonus && r.opt.uncertainty) {  // no draft distribution at its position yet
      r.pending.emplace(std::move(e.toks.back()), e.at.back());
      e.toks.pop_back();
      e.at.pop_back();
    }
    if (!e.toks.empty() && r.opt.uncertainty)
      e.drafts = torch::stack(
          std::vector<torch::Tensor>(r.dists.begin(), r.dists.begin() + e.toks.size()), 1);
    emissions.push_back(std::move(e));
  }
  target_cache_.compact();
  draft_cache_.compact();
  return emissions;
}

std::vector<SpeculativeBatch::Finished> SpeculativeBatch::step() {
  torch::NoGradGuard no_grad;
  std::vector<Finished> done;
  admit();
  if (rows_.empty()) return done;
  RoundClock clock;
  const auto next = feed_drafts(done, clock);
  if (!next.defined()) return done;
  const int64_t big_g = propose(next);
  clock.charge(rows_, &SpecStats::draft_s);
  auto emissions = verify(big_g);
  clock.charge(rows_, &SpecStats::target_s);
  emit(emissions);
  clock.charge_total(rows_);
  drop_finished(done, nullptr);
  return done;
}

}  // namespace drafteu::serve
