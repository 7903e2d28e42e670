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
// Calls that took the fast path in this process (tests and benchmarks check which path ran).
int64_t fast_forward_calls();

// A family's batch expansion (family/low_rank_family): layers from `layer` on (num_hidden_layers:
// only lm_head) hold `members`·B rows, member-major (row k·B + b), and the stacked deltas
// attached to the linear layers tell the members apart. The default is a plain forward.
struct Expansion {
  int64_t members = 1;
  int64_t layer = 0;
};

// "" when the fast path can run this call; otherwise the reason it cannot (gradients needed,
// autocast, a dtype or device other than float32 CPU, a linear delta without a raw form, a
// cache expanded otherwise than `expansion` says, inputs the reference path rejects with its own
// error).
std::string fast_forward_refusal(const LlamaForCausalLMImpl& model, const torch::Tensor& ids,
                                 const KVCache* cache, const torch::Tensor& attention_mask,
                                 const Expansion& expansion = {});

// Same contract as LlamaForCausalLMImpl::forward, with logits [members·B, T, V]; call only when
// the refusal is empty.
torch::Tensor fast_forward(const LlamaForCausalLMImpl& model, const torch::Tensor& ids,
                           KVCache* cache, const torch::Tensor& attention_mask, bool last_only,
                           const Expansion& expansion = {});

}  // namespace drafteu
