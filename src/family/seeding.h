// Reproducible draws: every random tensor of a family member comes from a CPU generator seeded by
// a hash of (family seed, member, ...) alone, so a member is the same whatever K or the device.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <initializer_list>

namespace drafteu {

// A well-mixed 64-bit hash of the parts (splitmix64 chained): torch's mt19937 uses only the low
// 32 bits of its seed, so nearby inputs must differ there too.
uint64_t mix_seed(std::initializer_list<uint64_t> parts);

// A fresh CPU generator seeded with mix_seed(parts).
at::Generator seeded_generator(std::initializer_list<uint64_t> parts);

// N(0, sigma²) entries of `shape`, drawn in float32 on the CPU from `gen`, then moved to
// `options`' dtype and device (so the values do not depend on the device).
torch::Tensor gaussian(at::IntArrayRef shape, double sigma, at::Generator& gen,
                       const torch::TensorOptions& options);

}  // namespace drafteu
