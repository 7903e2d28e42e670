// Differentiable distillation losses over the vocabulary at the loss positions only: inputs are
// logits rows [N, V] (student with autograd, teacher without), results are means over the N rows.
// Forward and reverse KL use hand-written gradients computed in row chunks, so a step holds one
// full-vocabulary buffer (the gradient) beyond the logits themselves.
#pragma once
#include <torch/torch.h>

namespace drafteu::distill {

// mean_n mean_k KL(p_k,n ‖ q_n): teachers [K, N, V] (or [N, V] for one). Its minimiser over q is
// the teachers' arithmetic mean, which is what OSD relies on.
torch::Tensor forward_kl_loss(const torch::Tensor& student_logits,
                              const torch::Tensor& teacher_logits);

// mean_n KL(q_n ‖ p_n) (the "exact single-step" term of MiniLLM).
torch::Tensor reverse_kl_loss(const torch::Tensor& student_logits,
                              const torch::Tensor& teacher_logits);

// TRL's GKDTrainer.generalized_jsd_loss (temperature 1, "batchmean" over the loss tokens):
// M = β·p_T + (1−β)·q_S and JSD_β = β·KL(p_T ‖ M) + (1−β)·KL(q_S ‖ M). β = 0 is taken as forward
// KL(p_T ‖ q_S) and β = 1 as reverse KL(q_S ‖ p_T), as TRL special-cases them (the interior formula
// itself vanishes at both ends).
torch::Tensor generalized_jsd_loss(const torch::Tensor& student_logits,
                                   const torch::Tensor& teacher_logits, double beta);

// MiniLLM (Gu et al.) on student samples: reverse KL with the exact single-step term plus the
// policy-gradient long-term term -R_{t+1}·log q(y_t), where R_{t+1} is the mean of the detached
// rewards r = log p_T(y) − log q(y) over the later tokens of the same response (0 at the last).
// Rows follow loss_mask [B, T] in row-major order; targets [N] are the sampled tokens y_t.
struct MiniLLMLoss {
  torch::Tensor total, single_step, long_term;
};
MiniLLMLoss minillm_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                         const torch::Tensor& targets, const torch::Tensor& loss_mask);

}  // namespace drafteu::distill
