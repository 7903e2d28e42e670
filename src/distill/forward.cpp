#include "distill/forward.h"

#include "util/error.h"

namespace drafteu::distill {

torch::Tensor loss_position_logits(LlamaForCausalLMImpl& model, const Batch& batch) {
  const auto dev = model.device();
  auto ids = batch.ids.to(dev);
  torch::Tensor new_mask;
  auto in = model.prepare(ids, nullptr, batch.attention.to(dev), &new_mask);
  auto x = model.embed(ids);
  for (int64_t i = 0; i < model.config().num_hidden_layers; ++i) x = model.run_layer(i, x, in);
  return model.logits(x.index({batch.loss_mask.to(dev)}));
}

torch::Tensor teacher_logits(const Teacher& teacher, const Batch& batch) {
  if (!teacher.model) fail("teacher_logits: no teacher model");
  torch::NoGradGuard no_grad;
  AttachedDeltas attached;
  if (!teacher.deltas.empty()) attached = attach_member(*teacher.model.ptr(), teacher.deltas);
  return loss_position_logits(*teacher.model.ptr(), batch);
}

torch::Tensor members_logits(LlamaForCausalLMImpl& model, const std::vector<MemberDeltas>& members,
                             const Batch& batch) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (const auto& m : members) {
    auto attached = attach_member(model, m);
    out.push_back(loss_position_logits(model, batch));
  }
  return torch::stack(out);
}

}  // namespace drafteu::distill
