// Trainable LoRA (Hu et al.; PEFT's layout): W' = W + scaling·B·A, A [r, in] kaiming-uniform,
// B [out, r] zeros (so a fresh adapter leaves the model unchanged), dropout on the adapter's input
// in training mode only. The adapter is a torch module owning the parameters (an optimizer trains
// them); attach() hooks them into a model's linear layers and detach() removes them.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "family/lora_config.h"
#include "family/low_rank.h"
#include "model/llama.h"

namespace drafteu {

// The model's modules that `config` targets, in name order; throws when a target matches nothing.
std::vector<std::string> lora_target_modules(const LlamaForCausalLMImpl& model,
                                             const LoraConfig& config);

// One adapted module: the LinearDelta x -> scaling·B·A·dropout(x).
class LoraLayerImpl : public torch::nn::Module, public LinearDelta {
 public:
  LoraLayerImpl(int64_t in_features, int64_t out_features, int64_t r, double scaling,
                double dropout, const torch::TensorOptions& options);
  torch::Tensor forward(const torch::Tensor& x) const override;
  torch::Tensor delta_weight() const;  // scaling·B·A, [out, in]

  torch::Tensor lora_A;  // [r, in]
  torch::Tensor lora_B;  // [out, r]
  double scaling;
  double dropout;
};
TORCH_MODULE(LoraLayer);

class LoraAdapterImpl : public torch::nn::Module {
 public:
  // Fresh parameters for every module `config` targets (PEFT's initialisation, from torch's
  // global generator), or for exactly `modules` (e.g. those a saved adapter holds).
  LoraAdapterImpl(LlamaForCausalLMImpl& model, LoraConfig config);
  LoraAdapterImpl(LlamaForCausalLMImpl& model, LoraConfig config,
                  const std::vector<std::string>& modules);

  const LoraConfig& config() const { return config_; }
  std::vector<std::string> module_names() const;
  const std::map<std::string, LoraLayer>& layers() const { return layers_; }
  LoraLayer layer(const std::string& module) const;

  // Hooks every layer into `model`'s linears (detaching from a previous model first).
  void attach(LlamaForCausalLMImpl& model);
  void detach() { attached_.detach(); }

  // The current factors as a family member (detached copies; dropout does not apply).
  MemberDeltas to_member() const;

 private:
  LoraConfig config_;
  std::map<std::string, LoraLayer> layers_;
  AttachedDeltas attached_;
};
TORCH_MODULE(LoraAdapter);

}  // namespace drafteu
