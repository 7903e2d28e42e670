#include "model/sampling.h"

#include <limits>

#include "util/error.h"

namespace drafteu {

torch::Tensor warped_log_probs(const torch::Tensor& logits, const SamplingParams& p) {
  auto x = logits.to(torch::kFloat32);
  const double neg_inf = -std::numeric_limits<double>::infinity();
  if (p.greedy()) {
    auto idx = x.argmax(-1, /*keepdim=*/true);
    return torch::full_like(x, neg_inf).scatter_(-1, idx, 0.0);
  }
  x = x / p.temperature;
  const int64_t vocab = x.size(-1);
  if (p.top_k > 0 && p.top_k < vocab) {
    auto kth = std::get<0>(x.topk(p.top_k, -1)).narrow(-1, p.top_k - 1, 1);
    x = x.masked_fill(x < kth, neg_inf);
  }
  if (p.top_p < 1.0) {
    // Keep the smallest prefix of the sorted distribution whose mass reaches top_p (at least one).
    auto [sorted, order] = x.sort(-1, /*descending=*/true);
    auto cum = torch::softmax(sorted, -1).cumsum(-1);
    auto drop_sorted = (cum - torch::softmax(sorted, -1)) >= p.top_p;
    auto drop = torch::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    x = x.masked_fill(drop, neg_inf);
  }
  return torch::log_softmax(x, -1);
}

double Sampler::uniform() {
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

int64_t Sampler::sample(const torch::Tensor& probs) {
  auto p = probs.detach().to(torch::kCPU, torch::kFloat64).contiguous();
  if (p.dim() != 1) fail("Sampler: expected a probability vector, got shape ", p.sizes());
  const double* d = p.data_ptr<double>();
  const int64_t n = p.numel();
  double total = 0;
  for (int64_t i = 0; i < n; ++i) total += d[i];
  if (!(total > 0) || !std::isfinite(total)) fail("Sampler: probabilities sum to ", total);
  double u = uniform() * total, acc = 0;
  int64_t last = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (d[i] <= 0) continue;
    acc += d[i];
    last = i;
    if (u < acc) return i;
  }
  return last;  // rounding: u landed past the final partial sum
}

int64_t Sampler::sample_from_logits(const torch::Tensor& logits, const SamplingParams& params) {
  if (params.greedy()) return logits.argmax(-1).item<int64_t>();
  return sample(warped_log_probs(logits, params).exp());
}

}  // namespace drafteu
