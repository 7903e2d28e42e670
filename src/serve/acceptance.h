// The acceptance rule of speculative sampling (Leviathan et al. 2023; Chen et al. 2023) on given
// distributions, apart from any model so that tests can drive it with hand-made ones:
//   accept proposal x_i ~ q_i with probability min(1, p_i(x_i) / q_i(x_i));
//   at the first rejection draw from norm(max(0, p_i - q_i)); after γ acceptances draw a bonus
//   token from p_{γ+1}. The emitted tokens are then distributed exactly as p.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/sampling.h"

namespace drafteu::serve {

struct Verdict {
  int64_t accepted = 0;  // leading proposals kept
  int64_t token = 0;     // the token after them: the resampled one, or the bonus
  bool bonus = false;    // every proposal was accepted and `token` comes from p_{γ+1}
};

// target_logp [γ+1, V]: log p at the γ proposal positions and the one after (already warped);
// proposal_logp [γ, V]: log q, the warped distributions the proposals were drawn from.
// greedy: accept while the proposal is p's argmax; the next token is p's argmax (no randomness),
// so greedy speculative output equals greedy target output.
Verdict verify_proposals(const torch::Tensor& target_logp, const torch::Tensor& proposal_logp,
                         const std::vector<int64_t>& proposals, bool greedy, Sampler& sampler);

// Draws a proposal from warped log-probs [V] (argmax when greedy).
int64_t draw_proposal(const torch::Tensor& proposal_logp, bool greedy, Sampler& sampler);

}  // namespace drafteu::serve
