#include "model/rope.h"

#include <cmath>

namespace drafteu {

torch::Tensor rope_inverse_frequencies(const LlamaConfig& c) {
  auto exponents = torch::arange(0, c.head_dim, 2, torch::kInt64).to(torch::kFloat32) /
                   static_cast<float>(c.head_dim);
  auto inv_freq = 1.0 / torch::pow(static_cast<float>(c.rope_theta), exponents);
  if (!c.rope_scaling) return inv_freq;

  // transformers' _compute_llama3_parameters: long wavelengths are slowed by `factor`,
  // short ones kept, the band between smoothly interpolated.
  const auto& s = *c.rope_scaling;
  double old_len = static_cast<double>(s.original_max_position_embeddings);
  double low_freq_wavelen = old_len / s.low_freq_factor;
  double high_freq_wavelen = old_len / s.high_freq_factor;
  auto wavelen = 2 * M_PI / inv_freq;
  auto scaled = torch::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  auto smooth = (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  auto smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  auto medium = torch::logical_not(wavelen < high_freq_wavelen) *
                torch::logical_not(wavelen > low_freq_wavelen);
  return torch::where(medium, smoothed, scaled);
}

std::pair<torch::Tensor, torch::Tensor> rope_cos_sin(const torch::Tensor& inv_freq,
                                                     const torch::Tensor& positions,
                                                     torch::ScalarType dtype) {
  auto freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(positions.device());
  auto emb = torch::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

torch::Tensor apply_rope(const torch::Tensor& x, const torch::Tensor& cos,
                         const torch::Tensor& sin) {
  int64_t half = x.size(-1) / 2;
  auto x1 = x.narrow(-1, 0, half);
  auto x2 = x.narrow(-1, half, half);
  auto rotated = torch::cat({-x2, x1}, -1);
  return x * cos.unsqueeze(1) + rotated * sin.unsqueeze(1);
}

}  // namespace drafteu
