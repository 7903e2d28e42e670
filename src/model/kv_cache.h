// Keys and values of past positions, per layer, in preallocated buffers that grow by doubling.
// Layers may hold different batch sizes (a family expands its batch at its first perturbed
// layer), so each layer's buffer is sized by the first keys it receives.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace drafteu {

class KVCache {
 public:
  KVCache(int64_t num_layers, int64_t initial_capacity = 256);

  int64_t length() const { return length_; }  // positions stored (the same in every layer)

  // Writes k, v [N, Hkv, T, hd] at [length, length + T) of `layer` and returns views of all
  // positions so far, [N, Hkv, length + T, hd]. commit() advances length once all layers wrote.
  std::pair<torch::Tensor, torch::Tensor> append(int64_t layer, const torch::Tensor& k,
                                                 const torch::Tensor& v);
  // Makes room for t more positions of batch n in `layer` and returns its whole buffers,
  // [n, kv_heads, capacity, head_dim], contiguous: the fast path writes keys there in place.
  std::pair<torch::Tensor, torch::Tensor> reserve(int64_t layer, int64_t n, int64_t kv_heads,
                                                  int64_t t, int64_t head_dim,
                                                  const torch::TensorOptions& options);
  // Batch size a layer holds (a family may expand it), or -1 before its first keys.
  int64_t layer_batch(int64_t layer) const;
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }

  // new_key_mask: [B, T], true for real tokens.
  void commit(const torch::Tensor& new_key_mask);

  // Forgets positions from new_length on (speculative decoding rolls rejected drafts back).
  void truncate(int64_t new_length);
  void clear() { truncate(0); }

  // Key mask of the stored positions, [B, length] (true = a real token, false = padding), kept
  // at the base batch size B.
  const torch::Tensor& key_mask() const { return key_mask_; }

  // Views of a layer's stored keys/values, [N, Hkv, length, hd] (for tests and inspection).
  torch::Tensor keys(int64_t layer) const;
  torch::Tensor values(int64_t layer) const;

  // Keeps only the batch rows in `rows` (int64 indices) in every layer, e.g. to drop finished
  // sequences; `rows` indexes the base batch and is tiled for expanded layers.
  void select_rows(const torch::Tensor& rows);

  // Continuous batching (serve/speculative_batch). Positions are counted over unmasked keys and
  // baked into the cached keys by RoPE, so masked columns may sit anywhere and may be removed.
  // Marks positions [from, to) of base row `row` as padding (a row's rejected drafts).
  void mask_positions(int64_t row, int64_t from, int64_t to);
  // Appends the rows of `other` (same layers, same expansion, both non-empty) after this cache's
  // rows; the shorter of the two is left-padded with masked positions.
  void append_rows(const KVCache& other);
  // Drops trailing positions masked in every row; when at least `min_fraction` of all positions
  // are masked in every row, drops those everywhere (one copy).
  void compact(double min_fraction = 0.25);

 private:
  struct Layer {
    torch::Tensor k, v;  // [N, Hkv, capacity, hd]
  };
  std::vector<Layer> layers_;
  int64_t initial_capacity_;
  int64_t length_ = 0;
  torch::Tensor key_mask_;
};

}  // namespace drafteu
