#include "family/noise.h"

#include <cmath>

#include "family/seeding.h"
#include "util/error.h"

namespace drafteu {

NoiseKind parse_noise_kind(const std::string& name) {
  if (name == "lora-noise") return NoiseKind::LoraNoise;
  if (name == "tokur") return NoiseKind::Tokur;
  fail("unknown noise kind '", name, "' (known: lora-noise, tokur)");
}

std::string noise_kind_name(NoiseKind kind) {
  return kind == NoiseKind::LoraNoise ? "lora-noise" : "tokur";
}

double NoiseConfig::scale() const {
  if (kind == NoiseKind::Tokur) return 1.0;
  return alpha.value_or(static_cast<double>(rank)) / static_cast<double>(rank);
}

void NoiseConfig::validate() const {
  const std::string what = noise_kind_name(kind) + " noise";
  if (rank <= 0) fail(what, ": rank must be positive, got ", rank);
  if (!(sigma >= 0.0) || !std::isfinite(sigma)) fail(what, ": sigma must be >= 0, got ", sigma);
  if (per_token && kind != NoiseKind::Tokur) fail(what, ": per-token redraw is a tokur option");
  if (relative && kind != NoiseKind::LoraNoise)
    fail(what, ": relative sigma is a lora-noise option");
}

NoiseConfig NoiseConfig::target_family(uint64_t seed) {
  NoiseConfig c;
  c.seed = seed;
  return c;
}

NoiseConfig NoiseConfig::draft_init(uint64_t seed) {
  NoiseConfig c;
  c.sigma = 0.5;
  c.seed = seed;
  return c;
}

NoiseConfig NoiseConfig::tokur(uint64_t seed) {
  NoiseConfig c;
  c.kind = NoiseKind::Tokur;
  c.target_modules = {"q_proj", "v_proj"};
  c.rank = 8;
  c.sigma = 0.1;
  c.seed = seed;
  return c;
}

torch::Tensor tokur_basis(const torch::Tensor& weight, int64_t rank) {
  const int64_t k = std::min(weight.size(0), weight.size(1));
  if (rank > k)
    fail("tokur: rank ", rank, " exceeds the weight's rank bound ", k, " (", weight.sizes(), ")");
  auto w = weight.detach().to(torch::kCPU, torch::kFloat64);
  auto svd = torch::linalg_svd(w, /*full_matrices=*/false);
  return std::get<0>(svd).narrow(1, 0, rank).contiguous().to(weight.device(), weight.scalar_type());
}

NoiseSampler::NoiseSampler(LlamaForCausalLMImpl& model, NoiseConfig config)
    : config_(std::move(config)) {
  config_.validate();
  modules_ = match_modules(model, config_.target_modules, noise_kind_name(config_.kind) + " noise");
  for (const auto& name : modules_) {
    const auto& w = model.linear(name).weight;
    shapes_.emplace_back(w.size(0), w.size(1));
    options_.push_back(w.options().requires_grad(false));
    rms_.push_back(config_.relative
                       ? w.detach().to(torch::kFloat64).square().mean().sqrt().item<double>()
                       : 0.0);
    if (config_.kind == NoiseKind::Tokur) bases_[name] = tokur_basis(w, config_.rank);
  }
}

const torch::Tensor& NoiseSampler::basis(const std::string& module) const {
  auto it = bases_.find(module);
  if (it == bases_.end()) fail("NoiseSampler: no TokUR basis for module '", module, "'");
  return it->second;
}

MemberDeltas NoiseSampler::member(int64_t m) const {
  MemberDeltas out;
  if (config_.keep_unperturbed && m == 0) return out;
  const int64_t r = config_.rank;
  auto gen = seeded_generator({config_.seed, static_cast<uint64_t>(m)});
  // Draw order is fixed (modules in name order; A before B), so the member depends on (seed, m).
  for (size_t i = 0; i < modules_.size(); ++i) {
    const auto& name = modules_[i];
    const auto [out_f, in_f] = shapes_[i];
    LowRankTerm t;
    if (config_.kind == NoiseKind::LoraNoise) {
      if (config_.relative) {
        t.a = gaussian({r, in_f}, 1.0, gen, options_[i]);
        t.b = gaussian({out_f, r}, 1.0, gen, options_[i]);
        t.scale = config_.sigma * rms_[i] / std::sqrt(static_cast<double>(r));
      } else {
        t.a = gaussian({r, in_f}, config_.sigma, gen, options_[i]);
        t.b = gaussian({out_f, r}, config_.sigma, gen, options_[i]);
        t.scale = config_.scale();
      }
    } else {
      t.b = bases_.at(name);
      if (config_.per_token) {
        t.redraw = TokenRedraw{config_.seed, m, static_cast<int64_t>(i), r, in_f, config_.sigma};
      } else {
        t.a = gaussian({r, in_f}, config_.sigma, gen, options_[i]);
      }
    }
    out.emplace(name, std::move(t));
  }
  return out;
}

std::vector<MemberDeltas> NoiseSampler::members(int64_t count) const {
  std::vector<MemberDeltas> out;
  for (int64_t m = 0; m < count; ++m) out.push_back(member(m));
  return out;
}

}  // namespace drafteu
