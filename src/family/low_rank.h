// Low-rank additive deltas of linear modules, W' = W + scale·B·A with A [r, in] and B [out, r].
// Trained LoRA, low-rank Gaussian noise and TokUR perturbations all take this form, so one
// member of a family is a map from module name to such a term, and a family stacks them.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "family/module_names.h"
#include "model/kv_cache.h"
#include "model/linear.h"
#include "model/llama.h"

namespace drafteu {

// TokUR's per-token mode: A is drawn afresh for each token position from a generator seeded by
// (seed, member, position, slot) alone, so a token's noise does not depend on batching or
// padding. Positions count real tokens (as RoPE does), not padded slots.
struct TokenRedraw {
  uint64_t seed = 0;
  int64_t member = 0;
  int64_t slot = 0;  // the module's index among the recipe's targets
  int64_t rank = 0;
  int64_t in_features = 0;
  double sigma = 0.0;
  // positions [N, T] (int64) -> A [N, T, rank, in] ~ N(0, sigma²), with `options`.
  torch::Tensor draw(const torch::Tensor& positions, const torch::TensorOptions& options) const;
};

struct LowRankTerm {
  torch::Tensor a;  // [r, in]; undefined when `redraw` is set
  torch::Tensor b;  // [out, r]
  double scale = 1.0;
  std::optional<TokenRedraw> redraw;

  int64_t rank() const { return b.size(1); }
  bool per_token() const { return redraw.has_value(); }
  torch::Tensor delta_weight() const;  // scale·B·A, [out, in]; fixed terms only
};

// One member's perturbation, by HF module name ("model.layers.0.self_attn.q_proj").
using MemberDeltas = std::map<std::string, LowRankTerm>;

// One term as a linear layer's delta: x -> scale·(x Aᵀ) Bᵀ.
class LowRankDelta : public LinearDelta {
 public:
  explicit LowRankDelta(LowRankTerm term);
  torch::Tensor forward(const torch::Tensor& x) const override;
  bool adds_raw() const override { return a_.defined(); }
  void add_raw(const float* x, int64_t rows, float* y) const override;
  // Per-token terms need the positions [N, T] of the next forward's tokens; draws A for them.
  void set_positions(const torch::Tensor& positions);
  const LowRankTerm& term() const { return term_; }

 private:
  LowRankTerm term_;
  torch::Tensor token_a_;  // [N, T, r, in] for the current call (per-token terms)
  torch::Tensor a_, bt_;   // fixed float32 CPU terms: A and (scale·B)ᵀ, contiguous
};

// Deltas attached to a model's linear layers for this object's lifetime.
class AttachedDeltas {
 public:
  AttachedDeltas() = default;
  AttachedDeltas(LlamaForCausalLMImpl& model,
                 std::vector<std::pair<std::string, std::shared_ptr<LinearDelta>>> deltas);
  AttachedDeltas(AttachedDeltas&& other) noexcept;
  AttachedDeltas& operator=(AttachedDeltas&& other) noexcept;
  AttachedDeltas(const AttachedDeltas&) = delete;
  AttachedDeltas& operator=(const AttachedDeltas&) = delete;
  ~AttachedDeltas() { detach(); }
  void detach();

 private:
  std::shared_ptr<torch::nn::Module> keep_alive_;  // the model, so detaching never dangles
  std::vector<std::pair<LinearImpl*, std::shared_ptr<LinearDelta>>> attached_;
};

// Attaches one member's terms (a LowRankDelta per module). `positions` [B, T] are required when
// the member has per-token terms (see token_positions).
AttachedDeltas attach_member(LlamaForCausalLMImpl& model, const MemberDeltas& member,
                             const torch::Tensor& positions = {});

// The positions LlamaForCausalLM gives the new tokens `ids` [B, T]: the count of real tokens
// before each one, so left-padded rows start at 0. [B, T] int64.
torch::Tensor token_positions(const torch::Tensor& ids, const KVCache* cache,
                              const torch::Tensor& attention_mask);

// The model's linear layers matching any suffix, in name order (match_module_names).
std::vector<std::string> match_modules(const LlamaForCausalLMImpl& model,
                                       const std::vector<std::string>& suffixes,
                                       const std::string& what);

}  // namespace drafteu
