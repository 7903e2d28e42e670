#include "family/low_rank.h"

#include <algorithm>

#include "family/seeding.h"
#include "model/kernels.h"
#include "util/error.h"

namespace drafteu {

torch::Tensor TokenRedraw::draw(const torch::Tensor& positions,
                                const torch::TensorOptions& options) const {
  // One draw per distinct position, then gathered: decode steps draw a single matrix.
  auto pos = positions.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* p = pos.data_ptr<int64_t>();
  std::map<int64_t, int64_t> index;
  for (int64_t i = 0; i < pos.numel(); ++i) index.emplace(p[i], 0);
  std::vector<torch::Tensor> draws;
  draws.reserve(index.size());
  for (auto& [position, slot_index] : index) {
    slot_index = static_cast<int64_t>(draws.size());
    auto gen = seeded_generator({seed, static_cast<uint64_t>(member),
                                 static_cast<uint64_t>(position), static_cast<uint64_t>(slot)});
    draws.push_back(gaussian({rank, in_features}, sigma, gen, torch::TensorOptions()));
  }
  auto gather = torch::empty({pos.numel()}, torch::kInt64);
  int64_t* g = gather.data_ptr<int64_t>();
  for (int64_t i = 0; i < pos.numel(); ++i) g[i] = index[p[i]];
  auto a = torch::stack(draws).index_select(0, gather);
  return a.view({positions.size(0), positions.size(1), rank, in_features})
      .to(options.device(), options.dtype().toScalarType());
}

torch::Tensor LowRankTerm::delta_weight() const {
  if (per_token()) fail("delta_weight: a per-token term has no single weight");
  return torch::matmul(b, a) * scale;
}

LowRankDelta::LowRankDelta(LowRankTerm term) : term_(std::move(term)) {
  const auto& b = term_.b;
  // Terms that may still be trained (requires_grad) keep the module path, which autograd sees.
  if (!term_.per_token() && term_.a.scalar_type() == torch::kFloat32 &&
      b.scalar_type() == torch::kFloat32 && term_.a.device().is_cpu() && b.device().is_cpu() &&
      !term_.a.requires_grad() && !b.requires_grad()) {
    torch::NoGradGuard no_grad;
    a_ = term_.a.contiguous();
    bt_ = (b * term_.scale).t().contiguous();
  }
}

void LowRankDelta::add_raw(const float* x, int64_t rows, float* y) const {
  kernels::low_rank_add(a_.data_ptr<float>(), bt_.data_ptr<float>(), a_.size(0), a_.size(1),
                        bt_.size(1), x, rows, y);
}

void LowRankDelta::set_positions(const torch::Tensor& positions) {
  if (term_.per_token()) token_a_ = term_.redraw->draw(positions, term_.b.options());
}

torch::Tensor LowRankDelta::forward(const torch::Tensor& x) const {
  torch::Tensor z;
  if (term_.per_token()) {
    if (!token_a_.defined() || token_a_.size(0) != x.size(0) || token_a_.size(1) != x.size(1))
      fail("LowRankDelta: per-token term needs set_positions() for input ", x.sizes());
    z = torch::matmul(token_a_, x.unsqueeze(-1)).squeeze(-1);  // [N, T, r]
  } else {
    z = torch::matmul(x, term_.a.t());
  }
  return torch::matmul(z, term_.b.t()) * term_.scale;
}

AttachedDeltas::AttachedDeltas(
    LlamaForCausalLMImpl& model,
    std::vector<std::pair<std::string, std::shared_ptr<LinearDelta>>> deltas)
    : keep_alive_(model.shared_from_this()) {
  for (auto& [name, delta] : deltas) {
    auto& lin = model.linear(name);
    lin.add_delta(delta);
    attached_.emplace_back(&lin, std::move(delta));
  }
}

AttachedDeltas::AttachedDeltas(AttachedDeltas&& other) noexcept
    : keep_alive_(std::move(other.keep_alive_)), attached_(std::move(other.attached_)) {
  other.attached_.clear();
}

AttachedDeltas& AttachedDeltas::operator=(AttachedDeltas&& other) noexcept {
  if (this != &other) {
    detach();
    keep_alive_ = std::move(other.keep_alive_);
    attached_ = std::move(other.attached_);
    other.attached_.clear();
  }
  return *this;
}

void AttachedDeltas::detach() {
  for (auto& [lin, delta] : attached_) lin->remove_delta(delta.get());
  attached_.clear();
  keep_alive_.reset();
}

AttachedDeltas attach_member(LlamaForCausalLMImpl& model, const MemberDeltas& member,
                             const torch::Tensor& positions) {
  std::vector<std::pair<std::string, std::shared_ptr<LinearDelta>>> deltas;
  for (const auto& [name, term] : member) {
    auto d = std::make_shared<LowRankDelta>(term);
    if (term.per_token()) {
      if (!positions.defined()) fail("attach_member: '", name, "' is per-token; pass positions");
      d->set_positions(positions);
    }
    deltas.emplace_back(name, std::move(d));
  }
  return AttachedDeltas(model, std::move(deltas));
}

torch::Tensor token_positions(const torch::Tensor& ids, const KVCache* cache,
                              const torch::Tensor& attention_mask) {
  const int64_t b = ids.size(0), t = ids.size(1);
  const int64_t past = cache ? cache->length() : 0;
  auto opts = torch::TensorOptions().dtype(torch::kBool).device(ids.device());
  torch::Tensor keys =
      attention_mask.defined()
          ? attention_mask.narrow(1, attention_mask.size(1) - t, t).to(torch::kBool)
          : torch::ones({b, t}, opts);
  if (past > 0) keys = torch::cat({cache->key_mask().to(ids.device()), keys}, 1);
  return (keys.to(torch::kInt64).cumsum(1) - 1).clamp_min(0).narrow(1, past, t);
}

std::vector<std::string> match_modules(const LlamaForCausalLMImpl& model,
                                       const std::vector<std::string>& suffixes,
                                       const std::string& what) {
  return match_module_names(model.linear_names(), suffixes, what);
}

}  // namespace drafteu
