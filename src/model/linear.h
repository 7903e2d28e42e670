// A bias-free linear layer that adapters attach to. Adapters (LoRA, low-rank noise, the stacked
// deltas of a family's members) are additive deltas, so the base weight is read once per call.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace drafteu {

class LinearDelta {
 public:
  virtual ~LinearDelta() = default;
  // x: [N, T, in] -> this delta's additive contribution, [N, T, out].
  virtual torch::Tensor forward(const torch::Tensor& x) const = 0;

  // The fast path's form (model/fast_forward), for float32 deltas that need nothing per call:
  // y [rows, out] += this delta's contribution for x [rows, in], rows ordered as forward's N·T.
  // Deltas that cannot (per-token draws, training) keep the default and the module path runs.
  virtual bool adds_raw() const { return false; }
  virtual void add_raw(const float* /*x*/, int64_t /*rows*/, float* /*y*/) const {}
};

class LinearImpl : public torch::nn::Module {
 public:
  LinearImpl(int64_t in_features, int64_t out_features);
  torch::Tensor forward(const torch::Tensor& x);

  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }

  void add_delta(std::shared_ptr<LinearDelta> delta) { deltas_.push_back(std::move(delta)); }
  void remove_delta(const LinearDelta* delta);
  void clear_deltas() { deltas_.clear(); }
  const std::vector<std::shared_ptr<LinearDelta>>& deltas() const { return deltas_; }

  torch::Tensor weight;  // [out, in], as Hugging Face stores it

 private:
  std::vector<std::shared_ptr<LinearDelta>> deltas_;
};
TORCH_MODULE(Linear);

}  // namespace drafteu
