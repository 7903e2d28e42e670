// Frozen low-rank Gaussian perturbations of a model's weights: the members of a "target family"
// (posterior samples around the target) and the noisy starting points of drafts.
//
//   lora-noise: W + (alpha/r)·B·A with A [r, in], B [out, r] entries ~ N(0, sigma²). alpha
//               defaults to r (scale 1), so sigma alone sets the size: ΔW entries have standard
//               deviation sigma²·sqrt(r). Setting alpha keeps LoRA's convention for other scales.
//               relative: A, B entries ~ N(0, 1) and ΔW = sigma·rms(W)·B·A/sqrt(r), so ΔW entries
//               have standard deviation sigma·rms(W) and ‖ΔW‖_F/‖W‖_F ≈ sigma in every module of
//               every model: sigma is the size of the perturbation relative to the weights it
//               perturbs (TokUR's noise is likewise tied to W, through its singular vectors).
//   tokur:      W + U_r·E (TokUR), U_r the top-r left singular vectors of W, E [r, in] entries
//               ~ N(0, sigma²): the noise lives in W's dominant output subspace. Optionally E is
//               redrawn at every token position, and member 0 kept unperturbed.
//
// Member m of a family with seed s draws only from generators seeded by (s, m) (and the token
// position in per-token mode), so it is the same member whatever the family size or device.
#pragma once
#include <torch/torch.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "family/low_rank.h"
#include "model/llama.h"

namespace drafteu {

enum class NoiseKind { LoraNoise, Tokur };
NoiseKind parse_noise_kind(const std::string& name);  // "lora-noise" | "tokur"
std::string noise_kind_name(NoiseKind kind);

struct NoiseConfig {
  NoiseKind kind = NoiseKind::LoraNoise;
  std::vector<std::string> target_modules{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                          "gate_proj", "up_proj", "down_proj"};
  int64_t rank = 8;
  double sigma = 0.1;           // standard deviation of each entry
  std::optional<double> alpha;  // lora-noise: scale alpha/rank; unset = rank (scale 1)
  uint64_t seed = 0;
  bool per_token = false;         // tokur: redraw E at every token position
  bool keep_unperturbed = false;  // member 0 is the unperturbed model
  bool relative = false;          // lora-noise: sigma relative to rms(W) (see above)

  double scale() const;
  void validate() const;

  static NoiseConfig target_family(uint64_t seed);  // lora-noise, all seven modules, sigma 0.1
  static NoiseConfig draft_init(uint64_t seed);     // lora-noise, all seven modules, sigma 0.5
  static NoiseConfig tokur(uint64_t seed);          // q_proj/v_proj, rank 8, sigma 0.1
};

// U_r: the top-`rank` left singular vectors of weight [out, in], as [out, rank] (SVD in float64).
torch::Tensor tokur_basis(const torch::Tensor& weight, int64_t rank);

// Samples members of one noise family over a model (TokUR's bases are computed once here).
class NoiseSampler {
 public:
  NoiseSampler(LlamaForCausalLMImpl& model, NoiseConfig config);
  const NoiseConfig& config() const { return config_; }
  const std::vector<std::string>& modules() const { return modules_; }
  const torch::Tensor& basis(const std::string& module) const;  // tokur only

  MemberDeltas member(int64_t m) const;
  std::vector<MemberDeltas> members(int64_t count) const;  // members 0..count-1

 private:
  NoiseConfig config_;
  std::vector<std::string> modules_;
  std::vector<std::pair<int64_t, int64_t>> shapes_;  // (out, in) per module
  std::vector<torch::TensorOptions> options_;
  std::vector<double> rms_;  // rms(W) per module (relative lora-noise)
  std::map<std::string, torch::Tensor> bases_;
};

}  // namespace drafteu
