// Forwards for training: logits at a batch's loss positions only (the lm_head and every
// full-vocabulary buffer then scale with the response tokens, not the padded batch), for a
// student with autograd and for teachers (a model plus one member's deltas) without.
#pragma once
#include <torch/torch.h>

#include <vector>

#include "distill/data.h"
#include "family/low_rank.h"
#include "model/llama.h"

namespace drafteu::distill {

// Logits [N, V] at batch.loss_mask positions (row-major), with whatever deltas are attached.
torch::Tensor loss_position_logits(LlamaForCausalLMImpl& model, const Batch& batch);

// A teacher: a model with one member's deltas attached for each call (empty = the model itself).
struct Teacher {
  LlamaForCausalLM model{nullptr};
  MemberDeltas deltas;
};
// Without autograd; [N, V].
torch::Tensor teacher_logits(const Teacher& teacher, const Batch& batch);
// Several members of one model: [K, N, V].
torch::Tensor members_logits(LlamaForCausalLMImpl& model, const std::vector<MemberDeltas>& members,
                             const Batch& batch);

}  // namespace drafteu::distill
