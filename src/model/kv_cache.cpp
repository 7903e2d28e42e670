#include "model/kv_cache.h"

#include "util/error.h"

namespace drafteu {

KVCache::KVCache(int64_t num_layers, int64_t initial_capacity)
    : layers_(static_cast<size_t>(num_layers)),
      initial_capacity_(std::max<int64_t>(1, initial_capacity)) {}

std::pair<torch::Tensor, torch::Tensor> KVCache::append(int64_t layer, const torch::Tensor& k,
                                                        const torch::Tensor& v) {
  if (layer < 0 || layer >= static_cast<int64_t>(layers_.size()))
    fail("KVCache: layer ", layer, " out of range (", layers_.size(), " layers)");
  auto& L = layers_[static_cast<size_t>(layer)];
  int64_t t = k.size(2);
  int64_t need = length_ + t;
  if (!L.k.defined() || L.k.size(0) != k.size(0)) {
    if (L.k.defined() && length_ > 0)
      fail("KVCache: layer ", layer, " holds batch ", L.k.size(0), " but got ", k.size(0));
    int64_t cap = std::max(initial_capacity_, need);
    L.k = torch::empty({k.size(0), k.size(1), cap, k.size(3)}, k.options());
    L.v = torch::empty({v.size(0), v.size(1), cap, v.size(3)}, v.options());
  } else if (need > L.k.size(2)) {
    int64_t cap = std::max(need, 2 * L.k.size(2));
    auto grow = [&](const torch::Tensor& old) {
      auto fresh = torch::empty({old.size(0), old.size(1), cap, old.size(3)}, old.options());
      fresh.narrow(2, 0, length_).copy_(old.narrow(2, 0, length_));
      return fresh;
    };
    L.k = grow(L.k);
    L.v = grow(L.v);
  }
  L.k.narrow(2, length_, t).copy_(k);
  L.v.narrow(2, length_, t).copy_(v);
  return {L.k.narrow(2, 0, need), L.v.narrow(2, 0, need)};
}

void KVCache::commit(const torch::Tensor& new_key_mask) {
  auto m = new_key_mask.to(torch::kBool);
  key_mask_ = key_mask_.defined() && length_ > 0 ? torch::cat({key_mask_, m}, 1) : m;
  length_ += m.size(1);
}

void KVCache::truncate(int64_t new_length) {
  if (new_length < 0 || new_length > length_)
    fail("KVCache: cannot truncate to ", new_length, " (length ", length_, ")");
  length_ = new_length;
  if (key_mask_.defined()) key_mask_ = key_mask_.narrow(1, 0, new_length);
}

torch::Tensor KVCache::keys(int64_t layer) const {
  const auto& L = layers_.at(static_cast<size_t>(layer));
  return L.k.defined() ? L.k.narrow(2, 0, length_) : torch::Tensor();
}

torch::Tensor KVCache::values(int64_t layer) const {
  const auto& L = layers_.at(static_cast<size_t>(layer));
  return L.v.defined() ? L.v.narrow(2, 0, length_) : torch::Tensor();
}

void KVCache::select_rows(const torch::Tensor& rows) {
  int64_t base = key_mask_.defined() ? key_mask_.size(0) : -1;
  for (auto& L : layers_) {
    if (!L.k.defined()) continue;
    auto idx = rows.to(L.k.device());
    if (base > 0 && L.k.size(0) != base) {  // expanded layer: member-major tiles of the base batch
      int64_t members = L.k.size(0) / base;
      auto offsets = torch::arange(members, idx.options()).mul(base).unsqueeze(1);
      idx = (offsets + idx.unsqueeze(0)).reshape({-1});
    }
    L.k = L.k.index_select(0, idx);
    L.v = L.v.index_select(0, idx);
  }
  if (key_mask_.defined()) key_mask_ = key_mask_.index_select(0, rows.to(key_mask_.device()));
}

}  // namespace drafteu
