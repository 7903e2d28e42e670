#include "family/lora.h"

#include <cmath>
#include <memory>

#include "util/error.h"

namespace drafteu {

std::vector<std::string> lora_target_modules(const LlamaForCausalLMImpl& model,
                                             const LoraConfig& config) {
  return lora_target_names(model.linear_names(), config);
}

LoraLayerImpl::LoraLayerImpl(int64_t in_features, int64_t out_features, int64_t r, double scaling_,
                             double dropout_, const torch::TensorOptions& options)
    : scaling(scaling_), dropout(dropout_) {
  lora_A = register_parameter("lora_A", torch::empty({r, in_features}, options));
  lora_B = register_parameter("lora_B", torch::zeros({out_features, r}, options));
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(lora_A, std::sqrt(5.0));  // as PEFT's reset_lora_parameters
}

torch::Tensor LoraLayerImpl::forward(const torch::Tensor& x) const {
  auto h = dropout > 0.0 ? torch::dropout(x, dropout, is_training()) : x;
  return torch::matmul(torch::matmul(h, lora_A.t()), lora_B.t()) * scaling;
}

torch::Tensor LoraLayerImpl::delta_weight() const {
  return torch::matmul(lora_B, lora_A) * scaling;
}

LoraAdapterImpl::LoraAdapterImpl(LlamaForCausalLMImpl& model, LoraConfig config)
    : LoraAdapterImpl(model, config, lora_target_modules(model, config)) {}

LoraAdapterImpl::LoraAdapterImpl(LlamaForCausalLMImpl& model, LoraConfig config,
                                 const std::vector<std::string>& modules)
    : config_(std::move(config)) {
  config_.validate("LoRA config");
  for (const auto& name : modules) {
    auto& lin = model.linear(name);
    std::string key = name;  // torch module names may not contain '.'
    for (auto& ch : key) ch = ch == '.' ? '_' : ch;
    auto layer = LoraLayer(lin.in_features(), lin.out_features(), config_.r, config_.scaling(),
                           config_.dropout, lin.weight.options().requires_grad(false));
    layers_.emplace(name, register_module(key, layer));
  }
}

std::vector<std::string> LoraAdapterImpl::module_names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : layers_) out.push_back(name);
  return out;
}

LoraLayer LoraAdapterImpl::layer(const std::string& module) const {
  auto it = layers_.find(module);
  if (it == layers_.end()) fail("LoRA adapter has no layer for module '", module, "'");
  return it->second;
}

void LoraAdapterImpl::attach(LlamaForCausalLMImpl& model) {
  attached_.detach();
  std::vector<std::pair<std::string, std::shared_ptr<LinearDelta>>> deltas;
  for (const auto& [name, layer] : layers_) deltas.emplace_back(name, layer.ptr());
  attached_ = AttachedDeltas(model, std::move(deltas));
}

MemberDeltas LoraAdapterImpl::to_member() const {
  MemberDeltas out;
  for (const auto& [name, layer] : layers_) {
    LowRankTerm t;
    t.a = layer->lora_A.detach().clone();
    t.b = layer->lora_B.detach().clone();
    t.scale = layer->scaling;
    out.emplace(name, std::move(t));
  }
  return out;
}

}  // namespace drafteu
