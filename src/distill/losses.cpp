#include "distill/losses.h"

#include <algorithm>

#include "util/error.h"

namespace drafteu::distill {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

namespace {

constexpr int64_t kChunkElements = int64_t{1} << 20;  // rows per chunk = this / V (cache-sized)

void check_rows(const char* fn, const torch::Tensor& s, const torch::Tensor& t) {
  if (s.dim() != 2) fail(fn, ": student logits must be [N, V], got ", s.sizes());
  if (t.size(-1) != s.size(1) || t.size(-2) != s.size(0))
    fail(fn, ": teacher logits ", t.sizes(), " do not match student ", s.sizes());
}

int64_t chunk_rows(int64_t vocab) {
  return std::max<int64_t>(1, kChunkElements / std::max<int64_t>(vocab, 1));
}

// Saves d loss / d student (already divided by N) in forward; backward scales it.
struct ForwardKLFn : public torch::autograd::Function<ForwardKLFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& student,
                               const torch::Tensor& teachers) {
    const int64_t n = student.size(0), v = student.size(1), k = teachers.size(0);
    auto s = student.contiguous();
    auto grad = torch::empty_like(s);
    double total = 0;
    for (int64_t i = 0; i < n; i += chunk_rows(v)) {
      const int64_t c = std::min(chunk_rows(v), n - i);
      auto ls = torch::log_softmax(s.narrow(0, i, c), -1);
      auto pbar = torch::zeros_like(ls);
      double negent = 0;
      for (int64_t j = 0; j < k; ++j) {
        auto lt = torch::log_softmax(teachers[j].narrow(0, i, c), -1);
        auto p = lt.exp();
        negent += (p * lt).sum().item<double>();
        pbar.add_(p);
      }
      pbar.div_(static_cast<double>(k));
      total += negent / static_cast<double>(k) - (pbar * ls).sum().item<double>();
      auto g = grad.narrow(0, i, c);
      torch::exp_out(g, ls);
      g.sub_(pbar);
    }
    grad.div_(static_cast<double>(std::max<int64_t>(n, 1)));
    ctx->save_for_backward({grad});
    return torch::tensor(total / static_cast<double>(std::max<int64_t>(n, 1)), s.options());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    return {ctx->get_saved_variables()[0] * grad_out[0], torch::Tensor()};
  }
};

struct ReverseKLFn : public torch::autograd::Function<ReverseKLFn> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& student,
                               const torch::Tensor& teacher) {
    const int64_t n = student.size(0), v = student.size(1);
    auto s = student.contiguous();
    auto grad = torch::empty_like(s);
    double total = 0;
    for (int64_t i = 0; i < n; i += chunk_rows(v)) {
      const int64_t c = std::min(chunk_rows(v), n - i);
      auto ls = torch::log_softmax(s.narrow(0, i, c), -1);
      auto d = ls - torch::log_softmax(teacher.narrow(0, i, c), -1);
      auto q = ls.exp_();
      auto kl = (q * d).sum(-1, /*keepdim=*/true);  // d KL / d s = q ⊙ (d − KL)
      total += kl.sum().item<double>();
      grad.narrow(0, i, c).copy_(q.mul_(d.sub_(kl)));
    }
    grad.div_(static_cast<double>(std::max<int64_t>(n, 1)));
    ctx->save_for_backward({grad});
    return torch::tensor(total / static_cast<double>(std::max<int64_t>(n, 1)), s.options());
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    return {ctx->get_saved_variables()[0] * grad_out[0], torch::Tensor()};
  }
};

}  // namespace

torch::Tensor forward_kl_loss(const torch::Tensor& student, const torch::Tensor& teacher) {
  check_rows("forward_kl_loss", student, teacher);
  auto t = teacher.dim() == 2 ? teacher.unsqueeze(0) : teacher;
  if (t.dim() != 3) fail("forward_kl_loss: teacher logits must be [K, N, V] or [N, V]");
  return ForwardKLFn::apply(student, t.detach());
}

torch::Tensor reverse_kl_loss(const torch::Tensor& student, const torch::Tensor& teacher) {
  check_rows("reverse_kl_loss", student, teacher);
  if (teacher.dim() != 2) fail("reverse_kl_loss: teacher logits must be [N, V]");
  return ReverseKLFn::apply(student, teacher.detach());
}

torch::Tensor generalized_jsd_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                                   double beta) {
  check_rows("generalized_jsd_loss", student, teacher);
  if (!(beta >= 0.0 && beta <= 1.0)) fail("gkd: beta must lie in [0, 1], got ", beta);
  if (beta == 0.0) return forward_kl_loss(student, teacher);
  if (beta == 1.0) return reverse_kl_loss(student, teacher);
  auto ls = torch::log_softmax(student, -1);
  auto lt = torch::log_softmax(teacher.detach(), -1);
  auto lm = torch::logsumexp(torch::stack({ls + std::log1p(-beta), lt + std::log(beta)}), 0);
  auto kl_t = (lt.exp() * (lt - lm)).sum(-1);
  auto kl_s = (ls.exp() * (ls - lm)).sum(-1);
  return (beta * kl_t + (1.0 - beta) * kl_s).mean();
}

MiniLLMLoss minillm_loss(const torch::Tensor& student, const torch::Tensor& teacher,
                         const torch::Tensor& targets, const torch::Tensor& loss_mask) {
  check_rows("minillm_loss", student, teacher);
  const int64_t n = student.size(0);
  if (targets.dim() != 1 || targets.size(0) != n)
    fail("minillm_loss: targets must be [", n, "], got ", targets.sizes());
  if (loss_mask.dim() != 2 || loss_mask.sum().item<int64_t>() != n)
    fail("minillm_loss: loss_mask [B, T] must hold ", n, " true entries");
  MiniLLMLoss out;
  out.single_step = reverse_kl_loss(student, teacher);
  auto y = targets.unsqueeze(1);
  auto log_q = student.gather(1, y).squeeze(1) - torch::logsumexp(student, -1);
  torch::Tensor reward_to_go;
  {
    torch::NoGradGuard no_grad;
    auto log_p = torch::log_softmax(teacher, -1).gather(1, y).squeeze(1);
    auto r = (log_p - log_q.detach()).to(torch::kFloat64);
    auto mask = loss_mask.to(torch::kBool);
    auto grid = torch::zeros(mask.sizes(), r.options()).masked_scatter(mask, r);
    auto count = mask.to(torch::kFloat64);
    // Sums over the later positions of each row: reverse cumsum minus the position itself.
    auto later = grid.flip(1).cumsum(1).flip(1) - grid;
    auto later_n = count.flip(1).cumsum(1).flip(1) - count;
    auto mean_later =
        torch::where(later_n > 0, later / later_n.clamp_min(1), torch::zeros_like(later));
    reward_to_go = mean_later.masked_select(mask).to(student.scalar_type());
  }
  out.long_term = -(reward_to_go * log_q).mean();
  out.total = out.single_step + out.long_term;
  return out;
}

}  // namespace drafteu::distill
