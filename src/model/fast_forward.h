// The fast path of LlamaForCausalLMImpl::forward: the same Llama computation over raw float32
// buffers (model/kernels), without libtorch's per-op dispatch and allocation, which dominate
// small-batch decoding. forward() takes it whenever fast_forward_refusal() is empty and falls
// back to the module path (the reference) otherwise; tests hold the two to the same logits.
#pragma once
#include <torch/torch.h>

#include <string>

namespace drafteu {

class LlamaForCausalLMImpl;
class KVCache;

// Process-wide switch, on by default; off = every forward takes the module path (the reference
// the tests compare with; bench_model --reference-path).
void set_fast_forward_enabled(bool on);
bool fast_forward_enabled();

// "" when the fast path can run this call; otherwise the reason it cannot (gradients needed,
// autocast, a dtype or device other than float32 CPU, adapters attached to a linear layer, a
// cache expanded by a family, inputs the reference path rejects with its own error).
std::string fast_forward_refusal(const LlamaForCausalLMImpl& model, const torch::Tensor& ids,
                                 const KVCache* cache, const torch::Tensor& attention_mask);

// Same contract as LlamaForCausalLMImpl::forward; call only when the refusal is empty.
torch::Tensor fast_forward(const LlamaForCausalLMImpl& model, const torch::Tensor& ids,
                           KVCache* cache, const torch::Tensor& attention_mask, bool last_only);

}  // namespace drafteu
