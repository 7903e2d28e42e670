// The Llama architecture as transformers' LlamaForCausalLM: RMSNorm (fp32), RoPE (half-split,
// llama3 scaling), grouped-query attention, SwiGLU MLP, tied or untied embeddings. Parameter
// names are Hugging Face's ("model.layers.3.self_attn.q_proj.weight"), so checkpoints map 1:1 and
// every linear layer is addressable by its module name.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/kv_cache.h"
#include "model/linear.h"

namespace drafteu {

// What every layer of one forward call shares: rotary tables, the additive attention mask and
// the cache. A family repeats it along the batch when it expands into members.
struct AttentionInputs {
  torch::Tensor cos, sin;  // [N, T, head_dim]
  torch::Tensor mask;      // additive [N, 1, T, S], S = cached + T
  KVCache* cache = nullptr;
  AttentionInputs repeat_batch(int64_t members) const;  // member-major tiling of the batch
};

class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

class AttentionImpl : public torch::nn::Module {
 public:
  AttentionImpl(const LlamaConfig& c, int64_t layer);
  torch::Tensor forward(const torch::Tensor& x, const AttentionInputs& in);
  Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t layer_, heads_, kv_heads_, head_dim_;
};
TORCH_MODULE(Attention);

class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const LlamaConfig& c);
  torch::Tensor forward(const torch::Tensor& x);
  Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const LlamaConfig& c, int64_t layer);
  torch::Tensor forward(const torch::Tensor& x, const AttentionInputs& in);
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MLP mlp{nullptr};
};
TORCH_MODULE(DecoderLayer);

// "model." in HF names: embeddings, decoder layers, final norm.
class LlamaBackboneImpl : public torch::nn::Module {
 public:
  explicit LlamaBackboneImpl(const LlamaConfig& c);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
  std::vector<DecoderLayer> layer_list;
};
TORCH_MODULE(LlamaBackbone);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  explicit LlamaForCausalLMImpl(const LlamaConfig& c);

  // ids [B, T] -> logits [B, T, V] ([B, 1, V] with last_only). attention_mask: [B, T] for the new
  // tokens or [B, cached + T] (1 = real token, 0 = padding); omitted = all real. With a cache,
  // the new tokens follow the cached ones and are appended to it.
  torch::Tensor forward(const torch::Tensor& ids, KVCache* cache = nullptr,
                        const torch::Tensor& attention_mask = {}, bool last_only = false);

  // The same forward in pieces, for callers that change the batch between layers (families):
  // prepare -> embed -> run_layer for each layer -> cache->commit(new_key_mask) -> logits.
  AttentionInputs prepare(const torch::Tensor& ids, KVCache* cache,
                          const torch::Tensor& attention_mask, torch::Tensor* new_key_mask);
  torch::Tensor embed(const torch::Tensor& ids);
  torch::Tensor run_layer(int64_t layer, const torch::Tensor& x, const AttentionInputs& in);
  torch::Tensor logits(const torch::Tensor& hidden);  // final norm + lm_head

  KVCache new_cache(int64_t capacity = 256) const;

  // forward() runs the fused float32 kernels (model/fast_forward) where they apply and the
  // module path otherwise (set_fast_forward_enabled(false): always the module path).
  const torch::Tensor& inv_freq() const { return inv_freq_; }

  const LlamaConfig& config() const { return config_; }
  // Linear layers by HF module name ("model.layers.3.self_attn.q_proj", "lm_head").
  LinearImpl& linear(const std::string& module_name);
  std::vector<std::string> linear_names() const;
  // Parameters by HF tensor name ("model.norm.weight"); lm_head.weight absent when tied.
  std::map<std::string, torch::Tensor> hf_state() const;
  torch::ScalarType dtype() const { return backbone->norm->weight.scalar_type(); }
  torch::Device device() const { return backbone->norm->weight.device(); }

  LlamaBackbone backbone{nullptr};  // registered as "model"
  Linear lm_head{nullptr};          // null when embeddings are tied

 private:
  LlamaConfig config_;
  torch::Tensor inv_freq_;
  std::map<std::string, LinearImpl*> linears_;
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace drafteu
