#include "model/llama.h"

#include <cmath>
#include <limits>

#include "model/fast_forward.h"
#include "model/rope.h"
#include "util/error.h"

namespace drafteu {

AttentionInputs AttentionInputs::repeat_batch(int64_t members) const {
  AttentionInputs out = *this;
  out.cos = cos.repeat({members, 1, 1});
  out.sin = sin.repeat({members, 1, 1});
  out.mask = mask.repeat({members, 1, 1, 1});
  return out;
}

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor RMSNormImpl::forward(const torch::Tensor& x) {
  // Computed in fp32 whatever the model dtype, as transformers does.
  auto h = x.to(torch::kFloat32);
  h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * h.to(x.scalar_type());
}

AttentionImpl::AttentionImpl(const LlamaConfig& c, int64_t layer)
    : layer_(layer),
      heads_(c.num_attention_heads),
      kv_heads_(c.num_key_value_heads),
      head_dim_(c.head_dim) {
  q_proj = register_module("q_proj", Linear(c.hidden_size, heads_ * head_dim_));
  k_proj = register_module("k_proj", Linear(c.hidden_size, kv_heads_ * head_dim_));
  v_proj = register_module("v_proj", Linear(c.hidden_size, kv_heads_ * head_dim_));
  o_proj = register_module("o_proj", Linear(heads_ * head_dim_, c.hidden_size));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const AttentionInputs& in) {
  const int64_t n = x.size(0), t = x.size(1), groups = heads_ / kv_heads_;
  auto q = q_proj(x).view({n, t, heads_, head_dim_}).transpose(1, 2);
  auto k = k_proj(x).view({n, t, kv_heads_, head_dim_}).transpose(1, 2);
  auto v = v_proj(x).view({n, t, kv_heads_, head_dim_}).transpose(1, 2);
  q = apply_rope(q, in.cos, in.sin);
  k = apply_rope(k, in.cos, in.sin);
  if (in.cache) std::tie(k, v) = in.cache->append(layer_, k, v);
  const int64_t s = k.size(2);

  // Grouped-query attention without copying K/V per head: the query heads that share a KV head
  // are stacked along the query axis, [N, Hkv, G*T, hd].
  auto qg = q.reshape({n, kv_heads_, groups * t, head_dim_});
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim_));
  // Decode (one query row per head): broadcast-multiply-sum runs as one kernel, where a
  // batched matmul would make one tiny BLAS call per (sequence, KV head) — the main cost of
  // decoding K family members at once.
  const bool single_row = groups * t <= 4 && n * kv_heads_ > 1;
  auto scores = single_row ? (qg.unsqueeze(3) * k.unsqueeze(2)).sum(-1) * scale
                           : torch::matmul(qg, k.transpose(2, 3)) * scale;
  scores = scores.view({n, kv_heads_, groups, t, s}) + in.mask.unsqueeze(2);
  auto probs = torch::softmax(scores.to(torch::kFloat32), -1).to(q.scalar_type());
  auto pg = probs.view({n, kv_heads_, groups * t, s});
  auto out = single_row ? (pg.unsqueeze(-1) * v.unsqueeze(2)).sum(3) : torch::matmul(pg, v);
  out = out.view({n, heads_, t, head_dim_}).transpose(1, 2).reshape({n, t, heads_ * head_dim_});
  return o_proj(out);
}

MLPImpl::MLPImpl(const LlamaConfig& c) {
  gate_proj = register_module("gate_proj", Linear(c.hidden_size, c.intermediate_size));
  up_proj = register_module("up_proj", Linear(c.hidden_size, c.intermediate_size));
  down_proj = register_module("down_proj", Linear(c.intermediate_size, c.hidden_size));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
  return down_proj(torch::silu(gate_proj(x)) * up_proj(x));
}

DecoderLayerImpl::DecoderLayerImpl(const LlamaConfig& c, int64_t layer) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  self_attn = register_module("self_attn", Attention(c, layer));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  mlp = register_module("mlp", MLP(c));
}

torch::Tensor DecoderLayerImpl::forward(const torch::Tensor& x, const AttentionInputs& in) {
  auto h = x + self_attn(input_layernorm(x), in);
  return h + mlp(post_attention_layernorm(h));
}

LlamaBackboneImpl::LlamaBackboneImpl(const LlamaConfig& c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    layer_list.push_back(DecoderLayer(c, i));
    layers->push_back(layer_list.back());
  }
  norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& c) : config_(c) {
  c.validate("LlamaForCausalLM");
  backbone = register_module("model", LlamaBackbone(c));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", Linear(c.hidden_size, c.vocab_size));
  inv_freq_ = register_buffer("inv_freq", rope_inverse_frequencies(c));
  for (auto& item : named_modules("", /*include_self=*/false)) {
    if (auto* lin = item.value()->as<LinearImpl>()) linears_[item.key()] = lin;
  }
}

KVCache LlamaForCausalLMImpl::new_cache(int64_t capacity) const {
  return KVCache(config_.num_hidden_layers, capacity);
}

AttentionInputs LlamaForCausalLMImpl::prepare(const torch::Tensor& ids, KVCache* cache,
                                              const torch::Tensor& attention_mask,
                                              torch::Tensor* new_key_mask) {
  if (ids.dim() != 2) fail("forward: input ids must be [batch, time], got ", ids.sizes());
  const int64_t b = ids.size(0), t = ids.size(1);
  const int64_t past = cache ? cache->length() : 0;
  auto dev = ids.device();

  torch::Tensor new_mask;
  if (!attention_mask.defined()) {
    new_mask = torch::ones({b, t}, torch::TensorOptions().dtype(torch::kBool).device(dev));
  } else {
    if (attention_mask.dim() != 2 || attention_mask.size(0) != b ||
        (attention_mask.size(1) != t && attention_mask.size(1) != past + t))
      fail("forward: attention_mask must be [", b, ", ", t, "] or [", b, ", ", past + t, "], got ",
           attention_mask.sizes());
    new_mask = attention_mask.narrow(1, attention_mask.size(1) - t, t).to(torch::kBool);
  }
  torch::Tensor keys = new_mask;
  if (past > 0) {
    const auto& old = cache->key_mask();
    if (!old.defined() || old.size(0) != b)
      fail("forward: batch ", b, " does not match the cache's batch");
    keys = torch::cat({old.to(dev), new_mask}, 1);
  }
  // Positions count real tokens only, so left-padded rows start at 0 like unpadded ones.
  auto positions = (keys.to(torch::kInt64).cumsum(1) - 1).clamp_min(0).narrow(1, past, t);

  AttentionInputs in;
  std::tie(in.cos, in.sin) = rope_cos_sin(inv_freq_, positions, dtype());
  auto q_index =
      torch::arange(past, past + t, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  auto k_index = torch::arange(past + t, torch::TensorOptions().dtype(torch::kInt64).device(dev));
  auto causal = k_index.unsqueeze(0) <= q_index.unsqueeze(1);  // [T, S]
  auto allowed = causal.unsqueeze(0) & keys.unsqueeze(1);      // [B, T, S]
  // A large negative number, not -inf: fully masked rows (padding queries) stay finite.
  const double neg = std::numeric_limits<float>::lowest();
  in.mask = torch::zeros(allowed.sizes(), torch::TensorOptions().dtype(dtype()).device(dev))
                .masked_fill(allowed.logical_not(), neg)
                .unsqueeze(1);
  in.cache = cache;
  if (new_key_mask) *new_key_mask = new_mask;
  return in;
}

torch::Tensor LlamaForCausalLMImpl::embed(const torch::Tensor& ids) {
  return backbone->embed_tokens(ids);
}

torch::Tensor LlamaForCausalLMImpl::run_layer(int64_t layer, const torch::Tensor& x,
                                              const AttentionInputs& in) {
  return backbone->layer_list.at(static_cast<size_t>(layer))->forward(x, in);
}

torch::Tensor LlamaForCausalLMImpl::logits(const torch::Tensor& hidden) {
  auto h = backbone->norm(hidden);
  // float32 logits even under bf16 autocast: softmax and the divergences need the precision.
  if (lm_head) return lm_head(h).to(torch::kFloat);
  const auto& w = backbone->embed_tokens->weight;
  if (h.numel() == w.size(1) && !(torch::GradMode::is_enabled() && w.requires_grad())) {
    auto shape = h.sizes().vec();
    shape.back() = w.size(0);
    return torch::mv(w, h.reshape({-1})).view(shape);
  }
  return torch::matmul(h, w.t()).to(torch::kFloat);
}

torch::Tensor LlamaForCausalLMImpl::forward(const torch::Tensor& ids, KVCache* cache,
                                            const torch::Tensor& attention_mask, bool last_only) {
  if (fast_forward_enabled() && fast_forward_refusal(*this, ids, cache, attention_mask).empty())
    return fast_forward(*this, ids, cache, attention_mask, last_only);
  torch::Tensor new_mask;
  auto in = prepare(ids, cache, attention_mask, &new_mask);
  auto x = embed(ids);
  for (int64_t i = 0; i < config_.num_hidden_layers; ++i) x = run_layer(i, x, in);
  if (cache) cache->commit(new_mask);
  if (last_only) x = x.narrow(1, x.size(1) - 1, 1);
  return logits(x);
}

LinearImpl& LlamaForCausalLMImpl::linear(const std::string& module_name) {
  auto it = linears_.find(module_name);
  if (it == linears_.end()) {
    fail("no linear module named '", module_name, "' (e.g. model.layers.0.self_attn.q_proj, ",
         "model.layers.0.mlp.down_proj", lm_head ? ", lm_head" : "", ")");
  }
  return *it->second;
}

std::vector<std::string> LlamaForCausalLMImpl::linear_names() const {
  std::vector<std::string> names;
  for (const auto& [name, _] : linears_) names.push_back(name);
  return names;
}

std::map<std::string, torch::Tensor> LlamaForCausalLMImpl::hf_state() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : named_parameters(/*recurse=*/true)) out[p.key()] = p.value();
  return out;
}

}  // namespace drafteu
