#include "serve/acceptance.h"

#include "util/error.h"

namespace drafteu::serve {

Verdict verify_proposals(const torch::Tensor& target_logp, const torch::Tensor& proposal_logp,
                         const std::vector<int64_t>& proposals, bool greedy, Sampler& sampler) {
  const auto gamma = static_cast<int64_t>(proposals.size());
  if (target_logp.dim() != 2 || target_logp.size(0) != gamma + 1)
    fail("verify_proposals: target_logp must be [gamma + 1, V] for ", gamma, " proposals, got ",
         target_logp.sizes());
  if (gamma > 0 && (proposal_logp.dim() != 2 || proposal_logp.size(0) != gamma ||
                    proposal_logp.size(1) != target_logp.size(1)))
    fail("verify_proposals: proposal_logp must be [gamma, V], got ", proposal_logp.sizes());
  // Probabilities in float64 on the CPU: the ratio test and the residual need no more precision
  // than that, and element access is cheap there.
  auto p = target_logp.detach().to(torch::kCPU, torch::kFloat64).exp();
  Verdict v;
  if (greedy) {
    auto best = p.argmax(-1);
    auto b = best.accessor<int64_t, 1>();
    while (v.accepted < gamma && proposals[static_cast<size_t>(v.accepted)] == b[v.accepted])
      ++v.accepted;
    v.token = b[v.accepted];
    v.bonus = v.accepted == gamma;
    return v;
  }
  auto q = gamma > 0 ? proposal_logp.detach().to(torch::kCPU, torch::kFloat64).exp() : p;
  auto pa = p.accessor<double, 2>();
  auto qa = q.accessor<double, 2>();
  for (; v.accepted < gamma; ++v.accepted) {
    const int64_t i = v.accepted, x = proposals[static_cast<size_t>(i)];
    const double px = pa[i][x], qx = qa[i][x];
    // u < p/q, written without the division (q(x) > 0 since x was drawn from q).
    if (sampler.uniform() * qx < px) continue;
    auto residual = (p[i] - q[i]).clamp_min(0.0);
    // p == q up to rounding leaves no residual mass; then p itself is the right law.
    v.token = sampler.sample(residual.sum().item<double>() > 0 ? residual : p[i]);
    return v;
  }
  v.token = sampler.sample(p[gamma]);
  v.bonus = true;
  return v;
}

int64_t draw_proposal(const torch::Tensor& proposal_logp, bool greedy, Sampler& sampler) {
  if (greedy) return proposal_logp.argmax(-1).item<int64_t>();
  return sampler.sample(proposal_logp.exp());
}

}  // namespace drafteu::serve
