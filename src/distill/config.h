// JSON forms of the distillation configs (the files `--config` reads, manifests record and the
// experiment's step keys hash): one field table per config (util/config_fields.h). Parsing starts
// from a method's defaults, takes only the fields present, and rejects unknown fields, wrong types
// and values out of range with an error naming the source and the field's path.
#pragma once
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "distill/gkd.h"
#include "distill/minillm.h"
#include "distill/osd.h"
#include "distill/trainer.h"
#include "family/draft_family.h"
#include "family/lora.h"
#include "family/noise.h"
#include "model/checkpoint.h"
#include "util/config_fields.h"
#include "util/json.h"

namespace drafteu::distill {

using drafteu::read_json_file;  // util/json.h

const config::Fields<TrainConfig>& train_config_fields();
const config::Fields<LoraConfig>& lora_config_fields();
const config::Fields<OnPolicyConfig>& on_policy_config_fields();
const config::Fields<OsdConfig>& osd_config_fields();
const config::Fields<GkdConfig>& gkd_config_fields();
const config::Fields<MiniLLMConfig>& minillm_config_fields();

nlohmann::json to_json(const TrainConfig& c);
nlohmann::json to_json(const LoraConfig& c);
nlohmann::json to_json(const OnPolicyConfig& c);
nlohmann::json to_json(const OsdConfig& c);
nlohmann::json to_json(const GkdConfig& c);
nlohmann::json to_json(const MiniLLMConfig& c);

// `defaults` overridden by the fields of `j`; `where` names the file and the section read.
TrainConfig train_config_from_json(const nlohmann::json& j, const config::Where& where,
                                   TrainConfig defaults);
LoraConfig lora_config_from_json(const nlohmann::json& j, const config::Where& where,
                                 LoraConfig defaults);
OnPolicyConfig on_policy_config_from_json(const nlohmann::json& j, const config::Where& where,
                                          OnPolicyConfig defaults);
OsdConfig osd_config_from_json(const nlohmann::json& j, const config::Where& where,
                               OsdConfig defaults);
GkdConfig gkd_config_from_json(const nlohmann::json& j, const config::Where& where,
                               GkdConfig defaults);
MiniLLMConfig minillm_config_from_json(const nlohmann::json& j, const config::Where& where,
                                       MiniLLMConfig defaults);

// A model: a path (HF directory or .gguf) or "preset:NAME[:SEED]" (random init, for tests and
// benchmarks). `field` names the config field in errors.
LoadedModel load_model_spec(const std::string& spec, const std::string& field);

}  // namespace drafteu::distill
