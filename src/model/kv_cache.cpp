#include "model/kv_cache.h"

#include "util/error.h"

namespace drafteu {

KVCache::KVCache(int64_t num_layers, int64_t initial_capacity)
    : layers_(static_cast<size_t>(num_layers)),
      initial_capacity_(std::max<int64_t>(1, initial_capacity)) {}

std::pair<torch::Tensor, torch::Tensor> KVCache::reserve(int64_t layer, int64_t n, int64_t kv_heads,
                                                         int64_t t, int64_t head_dim,
                                                         const torch::TensorOptions& options) {
  if (layer < 0 || layer >= static_cast<int64_t>(layers_.size()))
    fail("KVCache: layer ", layer, " out of range (", layers_.size(), " layers)");
  auto& L = layers_[static_cast<size_t>(layer)];
  const int64_t need = length_ + t;
  if (!L.k.defined() || L.k.size(0) != n) {
    if (L.k.defined() && length_ > 0)
      fail("KVCache: layer ", layer, " holds batch ", L.k.size(0), " but got ", n);
    const int64_t cap = std::max(initial_capacity_, need);
    L.k = torch::empty({n, kv_heads, cap, head_dim}, options);
    L.v = torch::empty({n, kv_heads, cap, head_dim}, options);
  } else if (need > L.k.size(2)) {
    const int64_t cap = std::max(need, 2 * L.k.size(2));
    auto grow = [&](const torch::Tensor& old) {
      auto fresh = torch::empty({old.size(0), old.size(1), cap, old.size(3)}, old.options());
      fresh.narrow(2, 0, length_).copy_(old.narrow(2, 0, length_));
      return fresh;
    };
    L.k = grow(L.k);
    L.v = grow(L.v);
  }
  return {L.k, L.v};
}

int64_t KVCache::layer_batch(int64_t layer) const {
  const auto& L = layers_.at(static_cast<size_t>(layer));
  return L.k.defined() ? L.k.size(0) : -1;
}

std::pair<torch::Tensor, torch::Tensor> KVCache::append(int64_t layer, const torch::Tensor& k,
                                                        const torch::Tensor& v) {
  const int64_t t = k.size(2), need = length_ + t;
  auto [kb, vb] = reserve(layer, k.size(0), k.size(1), t, k.size(3), k.options());
  kb.narrow(2, length_, t).copy_(k);
  vb.narrow(2, length_, t).copy_(v);
  return {kb.narrow(2, 0, need), vb.narrow(2, 0, need)};
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

void KVCache::mask_positions(int64_t row, int64_t from, int64_t to) {
  if (!key_mask_.defined() || row < 0 || row >= key_mask_.size(0) || from < 0 || to < from ||
      to > length_)
    fail("KVCache: cannot mask positions [", from, ", ", to, ") of row ", row);
  if (to > from) key_mask_[row].narrow(0, from, to - from).fill_(false);
}

void KVCache::append_rows(const KVCache& other) {
  if (layers_.size() != other.layers_.size())
    fail("KVCache: cannot append a cache of ", other.layers_.size(), " layers to one of ",
         layers_.size());
  if (length_ == 0 || other.length_ == 0) fail("KVCache: append_rows needs two non-empty caches");
  const int64_t rows_a = key_mask_.size(0), rows_b = other.key_mask_.size(0);
  const int64_t len = std::max(length_, other.length_);
  const int64_t cap = std::max(initial_capacity_, 2 * len);
  for (size_t l = 0; l < layers_.size(); ++l) {
    auto& A = layers_[l];
    const auto& B = other.layers_[l];
    const int64_t members = A.k.size(0) / rows_a;
    if (B.k.size(0) != members * rows_b || B.k.size(1) != A.k.size(1) || B.k.size(3) != A.k.size(3))
      fail("KVCache: layer ", l, " shapes differ: ", A.k.sizes(), " vs ", B.k.sizes());
    // Member-major: member m's rows are [m * rows, (m + 1) * rows).
    auto merge = [&](const torch::Tensor& a, const torch::Tensor& b) {
      auto out =
          torch::zeros({members * (rows_a + rows_b), a.size(1), cap, a.size(3)}, a.options());
      auto o = out.view({members, rows_a + rows_b, a.size(1), cap, a.size(3)});
      auto av = a.view({members, rows_a, a.size(1), a.size(2), a.size(3)});
      auto bv = b.view({members, rows_b, b.size(1), b.size(2), b.size(3)});
      o.narrow(1, 0, rows_a).narrow(3, len - length_, length_).copy_(av.narrow(3, 0, length_));
      o.narrow(1, rows_a, rows_b)
          .narrow(3, len - other.length_, other.length_)
          .copy_(bv.narrow(3, 0, other.length_));
      return out;
    };
    A.k = merge(A.k, B.k);
    A.v = merge(A.v, B.v);
  }
  auto pad = [&](const torch::Tensor& mask, int64_t n) {
    auto m = mask.narrow(1, 0, n);
    return n == len ? m : torch::cat({torch::zeros({m.size(0), len - n}, m.options()), m}, 1);
  };
  key_mask_ = torch::cat(
      {pad(key_mask_, length_), pad(other.key_mask_.to(key_mask_.device()), other.length_)}, 0);
  length_ = len;
}

void KVCache::compact(double min_fraction) {
  if (!key_mask_.defined() || length_ == 0) return;
  auto used = key_mask_.narrow(1, 0, length_).any(0).to(torch::kCPU);  // [length]
  auto u = used.accessor<bool, 1>();
  int64_t end = length_, dead = 0;
  while (end > 0 && !u[end - 1]) --end;
  for (int64_t i = 0; i < end; ++i) dead += u[i] ? 0 : 1;
  if (end < length_) truncate(end);
  if (dead == 0 || static_cast<double>(dead) < min_fraction * static_cast<double>(end)) return;
  auto keep = used.narrow(0, 0, end).nonzero().view({-1});
  for (auto& L : layers_) {
    if (!L.k.defined()) continue;
    auto idx = keep.to(L.k.device());
    auto pick = [&](const torch::Tensor& t) {
      auto out = torch::empty(
          {t.size(0), t.size(1), std::max(initial_capacity_, t.size(2)), t.size(3)}, t.options());
      out.narrow(2, 0, idx.size(0)).copy_(t.narrow(2, 0, end).index_select(2, idx));
      return out;
    };
    L.k = pick(L.k);
    L.v = pick(L.v);
  }
  key_mask_ = key_mask_.index_select(1, keep.to(key_mask_.device()));
  length_ = keep.size(0);
}

}  // namespace drafteu
