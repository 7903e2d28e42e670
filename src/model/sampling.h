// Sampling warps (temperature, top-k, top-p) and a seeded, platform-independent sampler.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <random>

#include "model/sampling_params.h"

namespace drafteu {

// Log-probabilities of the warped distribution over the last dim of `logits` (-inf outside the
// kept set). Greedy gives a one-hot at the argmax. Speculative decoding applies the same warps
// to target and draft, so this is the single definition of "the distribution we sample from".
torch::Tensor warped_log_probs(const torch::Tensor& logits, const SamplingParams& params);

// Draws from a probability vector with a seeded mt19937_64; the same seed gives the same
// tokens on every platform (no std:: distributions, whose output is implementation-defined).
class Sampler {
 public:
  explicit Sampler(uint64_t seed) : rng_(seed) {}
  double uniform();                            // in [0, 1), 53 random bits
  int64_t sample(const torch::Tensor& probs);  // probs [V], need not be normalised
  int64_t sample_from_logits(const torch::Tensor& logits, const SamplingParams& params);

 private:
  std::mt19937_64 rng_;
};

}  // namespace drafteu
