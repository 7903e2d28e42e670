#include "family/low_rank_family.h"

#include <algorithm>
#include <set>

#include "model/fast_forward.h"
#include "util/error.h"

namespace drafteu {

namespace {

// "model.layers.3.mlp.up_proj" -> 3; lm_head -> num_layers (after every layer).
int64_t layer_of(const std::string& module, int64_t num_layers) {
  static const std::string prefix = "model.layers.";
  if (module.rfind(prefix, 0) != 0) return module == "lm_head" ? num_layers : 0;
  return std::stoll(module.substr(prefix.size()));
}

// Tiles a batch member-major. A batch of one is expanded as a view: no copy of masks or tables.
torch::Tensor tile(const torch::Tensor& t, int64_t k) {
  if (t.size(0) == 1) {
    auto shape = t.sizes().vec();
    shape[0] = k;
    return t.expand(shape);
  }
  std::vector<int64_t> reps(static_cast<size_t>(t.dim()), 1);
  reps[0] = k;
  return t.repeat(reps);
}

}  // namespace

LowRankFamily::LowRankFamily(LlamaForCausalLM base, std::vector<MemberDeltas> members)
    : base_(std::move(base)), members_(std::move(members)) {
  if (members_.empty()) fail("LowRankFamily: needs at least one member");
  const auto& cfg = base_->config();
  const auto names = base_->linear_names();
  const std::set<std::string> known(names.begin(), names.end());
  std::set<std::string> modules;
  for (const auto& m : members_) {
    for (const auto& [name, _] : m) {
      if (!known.count(name)) fail("LowRankFamily: member perturbs unknown module '", name, "'");
      modules.insert(name);
    }
  }
  expand_layer_ = cfg.num_hidden_layers;
  for (const auto& name : modules) {
    auto& lin = base_->linear(name);
    std::vector<const LowRankTerm*> terms;
    for (const auto& m : members_) {
      auto it = m.find(name);
      terms.push_back(it == m.end() ? nullptr : &it->second);
    }
    auto d = std::make_shared<StackedDelta>(terms, lin.in_features(), lin.out_features(),
                                            lin.weight.options().requires_grad(false));
    per_token_ = per_token_ || d->per_token();
    stacked_.emplace_back(name, std::move(d));
    expand_layer_ = std::min(expand_layer_, layer_of(name, cfg.num_hidden_layers));
  }
}

int64_t LowRankFamily::parameters_read_per_token() const {
  int64_t n = base_->config().num_parameters_read_per_token();
  for (const auto& member : members_)
    for (const auto& [name, term] : member)
      n += (term.a.defined() ? term.a.numel() : 0) + term.b.numel();
  return n;
}

FamilyCache LowRankFamily::new_cache(int64_t capacity) const {
  std::vector<KVCache> caches;
  caches.push_back(base_->new_cache(capacity));
  return FamilyCache(std::move(caches));
}

torch::Tensor LowRankFamily::forward(const torch::Tensor& ids, FamilyCache* cache,
                                     const torch::Tensor& attention_mask, bool last_only) {
  if (cache && cache->size() != 1) fail("LowRankFamily: cache was not made by this family");
  KVCache* kv = cache ? &cache->at(0) : nullptr;
  const int64_t k = size(), num_layers = base_->config().num_hidden_layers;
  if (per_token_) {
    auto positions = token_positions(ids, kv, attention_mask);
    for (auto& [_, d] : stacked_) d->set_positions(positions);
  }
  std::vector<std::pair<std::string, std::shared_ptr<LinearDelta>>> deltas(stacked_.begin(),
                                                                           stacked_.end());
  AttachedDeltas attached(*base_, std::move(deltas));

  // Cached calls (decoding, speculative drafting) take the fast path when it can run them: all
  // K members at once over raw buffers, the base weights streamed once for the K·B rows.
  const Expansion expansion{k, expand_layer_};
  if (kv && fast_forward_enabled() &&
      fast_forward_refusal(*base_, ids, kv, attention_mask, expansion).empty()) {
    for (auto& [_, d] : stacked_) d->set_active(0, k);
    auto logits = fast_forward(*base_, ids, kv, attention_mask, last_only, expansion);
    return logits.view({k, ids.size(0), logits.size(1), logits.size(2)});
  }

  torch::Tensor new_mask;
  auto in = base_->prepare(ids, kv, attention_mask, &new_mask);
  auto x = base_->embed(ids);
  for (int64_t i = 0; i < expand_layer_; ++i) x = base_->run_layer(i, x, in);

  const int64_t rows = ids.size(0) * ids.size(1);
  int64_t chunk = k;
  if (!kv && expand_layer_ < num_layers) chunk = std::clamp<int64_t>(max_rows_ / rows, 1, k);
  std::vector<torch::Tensor> hidden;
  for (int64_t first = 0; first < k; first += chunk) {
    const int64_t count = std::min(chunk, k - first);
    for (auto& [_, d] : stacked_) d->set_active(first, count);
    AttentionInputs tiled = in;
    tiled.cos = tile(in.cos, count);
    tiled.sin = tile(in.sin, count);
    tiled.mask = tile(in.mask, count);
    auto h = count == 1 ? x : x.repeat({count, 1, 1});
    for (int64_t i = expand_layer_; i < num_layers; ++i) h = base_->run_layer(i, h, tiled);
    if (last_only) h = h.narrow(1, h.size(1) - 1, 1);
    hidden.push_back(h);
  }
  for (auto& [_, d] : stacked_) d->set_active(0, k);
  if (kv) kv->commit(new_mask);
  // One lm_head call over all K·B rows: the [K, B, T, V] logits are written once.
  auto logits = base_->logits(hidden.size() == 1 ? hidden.front() : torch::cat(hidden, 0));
  return logits.view({k, ids.size(0), logits.size(1), logits.size(2)});
}

torch::Tensor LowRankFamily::forward_member(int64_t k, const torch::Tensor& ids, KVCache* cache,
                                            const torch::Tensor& attention_mask, bool last_only) {
  const auto& m = members_.at(static_cast<size_t>(k));
  torch::Tensor positions;
  if (per_token_) positions = token_positions(ids, cache, attention_mask);
  auto attached = attach_member(*base_, m, positions);
  return base_->forward(ids, cache, attention_mask, last_only);
}

}  // namespace drafteu
