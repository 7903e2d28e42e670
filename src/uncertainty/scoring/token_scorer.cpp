#include "uncertainty/scoring/token_scorer.h"

#include "uncertainty/uncertainty.h"
#include "util/error.h"

namespace drafteu {

TokenScorer::TokenScorer(ScoringModels models, int64_t chunk)
    : models_(std::move(models)), chunk_(std::max<int64_t>(1, chunk)) {
  if (!models_.target_family && !models_.drafts) fail("score: give a target family and/or drafts");
  if (models_.drafts && !models_.reference && !models_.target_family)
    fail("score: the draft estimator needs a reference model or a target family");
  int64_t vocab = 0;
  for (const auto* f :
       {models_.target_family.get(), models_.drafts.get(), models_.reference.get()}) {
    if (!f) continue;
    if (vocab && f->vocab_size() != vocab)
      fail("score: the models disagree on the vocabulary size (", vocab, " vs ", f->vocab_size(),
           ")");
    vocab = f->vocab_size();
  }
}

namespace {

// Streams one family over prompt + response with its KV cache: log-probs [K, R, V] of the
// positions predicting response tokens [begin, begin + n).
class FamilyStream {
 public:
  FamilyStream(Family& family, const std::vector<int64_t>& prompt) : family_(family) {
    cache_ = family.new_cache(static_cast<int64_t>(prompt.size()) + 256);
    // Feed all but the last prompt token; the last one is fed with the first chunk so that
    // every chunk's outputs line up with the tokens it predicts.
    if (prompt.size() > 1) {
      std::vector<int64_t> head(prompt.begin(), prompt.end() - 1);
      family_.forward(torch::tensor(head, torch::kInt64).unsqueeze(0), &cache_, {}, true);
    }
    pending_ = prompt.back();
  }

  // Inputs: the pending token then response[begin, begin + n - 1]; outputs predict
  // response[begin, begin + n).
  torch::Tensor next(const std::vector<int64_t>& response, size_t begin, size_t n) {
    std::vector<int64_t> ids = {pending_};
    ids.insert(ids.end(), response.begin() + static_cast<long>(begin),
               response.begin() + static_cast<long>(begin + n - 1));
    pending_ = response[begin + n - 1];
    auto logits = family_.forward(torch::tensor(ids, torch::kInt64).unsqueeze(0), &cache_);
    // float64: float32's log-sum-exp rounds away a tail mass under ~6e-8, and with it the EU
    // of a nearly certain position (off by up to 4x).
    return torch::log_softmax(logits.select(1, 0).to(torch::kFloat64), -1);  // [K, n, V]
  }

 private:
  Family& family_;
  FamilyCache cache_;
  int64_t pending_ = 0;
};

std::optional<double> value_at(const torch::Tensor& t, int64_t i) {
  if (!t.defined()) return std::nullopt;
  return t[i].item<double>();
}

}  // namespace

std::vector<ScoredToken> TokenScorer::score(const std::vector<int64_t>& prompt_ids,
                                            const std::vector<int64_t>& response_ids,
                                            const Tokenizer* tokenizer) {
  if (prompt_ids.empty()) fail("score: the prompt must hold at least one token (e.g. BOS)");
  torch::NoGradGuard no_grad;
  std::optional<FamilyStream> target, drafts, reference;
  if (models_.target_family) target.emplace(*models_.target_family, prompt_ids);
  if (models_.drafts) drafts.emplace(*models_.drafts, prompt_ids);
  if (models_.reference) reference.emplace(*models_.reference, prompt_ids);

  std::vector<ScoredToken> out;
  for (size_t begin = 0; begin < response_ids.size(); begin += static_cast<size_t>(chunk_)) {
    size_t n = std::min(static_cast<size_t>(chunk_), response_ids.size() - begin);
    uncertainty::RecordInputs in;
    if (target) in.target = target->next(response_ids, begin, n);
    if (drafts) in.drafts = drafts->next(response_ids, begin, n);
    if (reference) in.reference = reference->next(response_ids, begin, n).select(0, 0);
    torch::Tensor token_logp;  // [n]: log p_ref of each response token
    if (in.reference.defined()) {
      auto ids =
          torch::tensor(std::vector<int64_t>(response_ids.begin() + static_cast<long>(begin),
                                             response_ids.begin() + static_cast<long>(begin + n)),
                        torch::kInt64);
      token_logp = in.reference.gather(-1, ids.unsqueeze(-1)).squeeze(-1);
    }
    auto rec = uncertainty::token_record(in);
    for (size_t i = 0; i < n; ++i) {
      auto row = static_cast<int64_t>(i);
      ScoredToken t;
      t.index = static_cast<int64_t>(begin + i);
      t.id = response_ids[begin + i];
      if (tokenizer) t.text = tokenizer->token_bytes(static_cast<int32_t>(t.id));
      t.eu_true = value_at(rec.eu_true, row);
      t.jsd = value_at(rec.jsd, row);
      t.bias = value_at(rec.bias, row);
      t.eu_hat = value_at(rec.eu_hat, row);
      t.entropy_target = value_at(rec.entropy_target, row);
      t.entropy_mix = value_at(rec.entropy_mix, row);
      t.logprob = value_at(token_logp, row);
      out.push_back(std::move(t));
    }
  }
  return out;
}

}  // namespace drafteu
