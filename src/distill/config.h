// JSON forms of the distillation configs (the files `--config` reads and manifests record).
// Parsing starts from a method's defaults, takes only the fields present, and rejects unknown
// fields and wrong types with an error naming the source and the field.
#pragma once
#include <filesystem>
#include <string>
#include "util/json.h"

#include <nlohmann/json.hpp>

#include "distill/gkd.h"
#include "distill/minillm.h"
#include "distill/osd.h"
#include "distill/trainer.h"
#include "family/draft_family.h"
#include "family/lora.h"
#include "family/noise.h"
#include "model/checkpoint.h"

namespace drafteu::distill {

using drafteu::read_json_file;  // util/json.h

nlohmann::json to_json(const TrainConfig& c);
nlohmann::json to_json(const LoraConfig& c);
nlohmann::json to_json(const OnPolicyConfig& c);
nlohmann::json to_json(const OsdConfig& c);
nlohmann::json to_json(const GkdConfig& c);
nlohmann::json to_json(const MiniLLMConfig& c);

TrainConfig train_config_from_json(const nlohmann::json& j, const std::string& source,
                                   TrainConfig defaults);
LoraConfig lora_config_from_json(const nlohmann::json& j, const std::string& source,
                                 LoraConfig defaults);
OnPolicyConfig on_policy_config_from_json(const nlohmann::json& j, const std::string& source,
                                          OnPolicyConfig defaults);

// A model: a path (HF directory or .gguf) or "preset:NAME[:SEED]" (random init, for tests and
// benchmarks). `field` names the config field in errors.
LoadedModel load_model_spec(const std::string& spec, const std::string& field);

}  // namespace drafteu::distill
