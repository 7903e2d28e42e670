#include "family/seeding.h"

#include <ATen/CPUGeneratorImpl.h>

namespace drafteu {

static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

uint64_t mix_seed(std::initializer_list<uint64_t> parts) {
  uint64_t h = 0x243F6A8885A308D3ULL;
  for (uint64_t p : parts) h = splitmix64(h ^ splitmix64(p));
  return h;
}

at::Generator seeded_generator(std::initializer_list<uint64_t> parts) {
  return at::make_generator<at::CPUGeneratorImpl>(mix_seed(parts));
}

torch::Tensor gaussian(at::IntArrayRef shape, double sigma, at::Generator& gen,
                       const torch::TensorOptions& options) {
  auto t = torch::randn(shape, gen, torch::TensorOptions().dtype(torch::kFloat32));
  if (sigma != 1.0) t.mul_(sigma);
  return t.to(options.device(), options.dtype().toScalarType());
}

}  // namespace drafteu
