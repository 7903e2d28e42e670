// PEFT's on-disk LoRA format, read and checked without torch (the fuzz harness
// tests/fuzz/fuzz_peft.cpp runs it): adapter_config.json (LoraConfig.to_dict()) and
// adapter_model.safetensors with tensors "base_model.model.<module>.lora_A.weight" /
// ".lora_B.weight".
#pragma once
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "family/lora_config.h"

namespace drafteu {

inline constexpr const char* kPeftConfigFile = "adapter_config.json";
inline constexpr const char* kPeftWeightsFile = "adapter_model.safetensors";

// "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" for which = 'A' (or 'B').
std::string peft_tensor_name(const std::string& module, char which);

nlohmann::json peft_config_json(const LoraConfig& config);
// Validates every field this runtime relies on; errors name `source` and the field.
LoraConfig peft_config_from_json(const nlohmann::json& j, const std::string& source);

// A linear layer's sizes (weight [out_features, in_features]).
struct LinearShape {
  int64_t in_features = 0, out_features = 0;
};

// One adapted module's factors as f32: a [r, in], b [out, r], row-major.
struct PeftFactors {
  std::string module;
  std::vector<float> a, b;
};

struct PeftAdapterFiles {
  LoraConfig config;
  std::vector<PeftFactors> factors;  // by module name
};

// Reads dir/adapter_config.json and dir/adapter_model.safetensors for a model whose linear layers
// are `linears` (by module name). The tensors present decide which modules are adapted; each must
// be a linear matched by target_modules, with both factors of the configured rank, the right
// shapes and finite values. Errors name the file and the field or tensor.
PeftAdapterFiles read_peft_adapter(const std::filesystem::path& dir,
                                   const std::map<std::string, LinearShape>& linears);

}  // namespace drafteu
