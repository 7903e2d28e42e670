#include "family/peft_format.h"

#include <cmath>
#include <optional>
#include <set>

#include "model/io/dtype.h"
#include "model/io/safetensors.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace drafteu {
namespace fs = std::filesystem;
using nlohmann::json;

static const std::string kPrefix = "base_model.model.";

std::string peft_tensor_name(const std::string& module, char which) {
  return kPrefix + module + (which == 'A' ? ".lora_A.weight" : ".lora_B.weight");
}

json peft_config_json(const LoraConfig& c) {
  // The fields of PEFT's LoraConfig.to_dict(); those this runtime does not use keep PEFT's
  // defaults.
  json targets = c.target_regex.empty() ? json(c.target_modules) : json(c.target_regex);
  return json{{"alpha_pattern", json::object()},
              {"auto_mapping", nullptr},
              {"base_model_name_or_path", c.base_model_name_or_path},
              {"bias", "none"},
              {"exclude_modules", nullptr},
              {"fan_in_fan_out", false},
              {"inference_mode", true},
              {"init_lora_weights", true},
              {"layer_replication", nullptr},
              {"layers_pattern", nullptr},
              {"layers_to_transform", nullptr},
              {"loftq_config", json::object()},
              {"lora_alpha", c.alpha},
              {"lora_bias", false},
              {"lora_dropout", c.dropout},
              {"megatron_config", nullptr},
              {"megatron_core", "megatron.core"},
              {"modules_to_save", nullptr},
              {"peft_type", "LORA"},
              {"r", c.r},
              {"rank_pattern", json::object()},
              {"revision", nullptr},
              {"target_modules", targets},
              {"task_type", "CAUSAL_LM"},
              {"use_dora", false},
              {"use_rslora", c.use_rslora}};
}

namespace {

// A field that must, when present and not null, equal `expected` (features this runtime lacks).
void require_absent_or(const json& j, const std::string& source, const char* field,
                       const json& expected, const char* why) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null() || *it == expected) return;
  if (expected.is_object() && it->is_object() && it->empty()) return;
  fail(source, ": field '", field, "' = ", json_preview(*it), " is not supported (", why, ")");
}

double number_field(const json& j, const std::string& source, const char* field,
                    std::optional<double> fallback) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    if (fallback) return *fallback;
    fail(source, ": missing field '", field, "'");
  }
  if (!it->is_number())
    fail(source, ": field '", field, "' must be a number, got ", json_preview(*it));
  return it->get<double>();
}

}  // namespace

LoraConfig peft_config_from_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail(source, ": expected a JSON object");
  LoraConfig c;
  auto type = j.find("peft_type");
  if (type == j.end() || !type->is_string())
    fail(source, ": field 'peft_type' is missing or not a string");
  if (type->get<std::string>() != "LORA")
    fail(source, ": field 'peft_type' is '", type->get<std::string>(), "', only LORA is supported");

  auto r = j.find("r");
  if (r == j.end() || !r->is_number_integer())
    fail(source, ": field 'r' is missing or not an integer");
  c.r = r->get<int64_t>();
  c.alpha = number_field(j, source, "lora_alpha", 8.0);  // PEFT's default
  c.dropout = number_field(j, source, "lora_dropout", 0.0);

  auto t = j.find("target_modules");
  if (t == j.end() || t->is_null()) fail(source, ": missing field 'target_modules'");
  if (t->is_string()) {
    c.target_regex = t->get<std::string>();
    c.target_modules.clear();
  } else if (t->is_array()) {
    c.target_modules.clear();
    for (const auto& m : *t) {
      if (!m.is_string())
        fail(source, ": field 'target_modules' must hold strings, got ", json_preview(m));
      c.target_modules.push_back(m.get<std::string>());
    }
  } else {
    fail(source, ": field 'target_modules' must be a list of names or a regex string, got ",
         json_preview(*t));
  }

  if (auto it = j.find("use_rslora"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) fail(source, ": field 'use_rslora' must be a boolean");
    c.use_rslora = it->get<bool>();
  }
  if (auto it = j.find("base_model_name_or_path"); it != j.end() && it->is_string())
    c.base_model_name_or_path = it->get<std::string>();

  require_absent_or(j, source, "bias", "none", "bias adapters are not implemented");
  require_absent_or(j, source, "fan_in_fan_out", false, "weights are stored [out, in]");
  require_absent_or(j, source, "use_dora", false, "DoRA is not implemented");
  require_absent_or(j, source, "lora_bias", false, "LoRA biases are not implemented");
  require_absent_or(j, source, "rank_pattern", json::object(),
                    "per-module ranks are not implemented");
  require_absent_or(j, source, "alpha_pattern", json::object(),
                    "per-module alphas are not implemented");
  require_absent_or(j, source, "modules_to_save", json::array(),
                    "full-module copies are not implemented");
  require_absent_or(j, source, "layer_replication", json::array(),
                    "layer replication is not implemented");
  c.validate(source);
  return c;
}

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// A factor's values as f32; non-finite values are an error (they would turn every EU into NaN).
std::vector<float> factor_values(const io::TensorView& v, const std::string& src) {
  std::vector<float> out(static_cast<size_t>(v.numel()));
  io::convert_to_f32(v.dtype, v.data, out.data(), out.size());
  for (float x : out)
    if (!std::isfinite(x))
      fail(src, ": tensor '", v.name, "' holds non-finite values (inf or NaN)");
  return out;
}

}  // namespace

PeftAdapterFiles read_peft_adapter(const fs::path& dir,
                                   const std::map<std::string, LinearShape>& linears) {
  const fs::path config_path = dir / kPeftConfigFile;
  const fs::path weights_path = dir / kPeftWeightsFile;
  const std::string cfg_src = config_path.string();
  if (!fs::exists(config_path)) fail(cfg_src, ": file not found");
  if (!fs::exists(weights_path)) fail(weights_path.string(), ": file not found");
  PeftAdapterFiles out;
  out.config = peft_config_from_json(parse_json(read_text_file(config_path), cfg_src), cfg_src);
  const LoraConfig& config = out.config;

  io::SafetensorsFile file(weights_path);
  const std::string src = weights_path.string();
  // module -> (A, B) views; every tensor must be one of the two factors of a linear module.
  std::map<std::string, std::pair<const io::TensorView*, const io::TensorView*>> factors;
  std::vector<std::string> names;
  for (const auto& [name, _] : linears) names.push_back(name);
  const auto targets = lora_target_names(names, config);
  const std::set<std::string> targeted(targets.begin(), targets.end());
  for (const auto& t : file.tensors()) {
    const std::string& n = t.name;
    const bool is_a = n.size() > 14 && n.ends_with(".lora_A.weight");
    const bool is_b = n.size() > 14 && n.ends_with(".lora_B.weight");
    if (!n.starts_with(kPrefix) || !(is_a || is_b))
      fail(src, ": tensor '", n, "' is not a PEFT LoRA factor (",
           "expected base_model.model.<module>.lora_A.weight / .lora_B.weight)");
    const std::string module = n.substr(kPrefix.size(), n.size() - kPrefix.size() - 14);
    if (!linears.count(module))
      fail(src, ": tensor '", n, "' targets module '", module, "', which the model lacks");
    if (!targeted.count(module))
      fail(src, ": tensor '", n, "' adapts module '", module, "', which ", cfg_src,
           " field 'target_modules' does not target");
    if (t.dtype != io::DType::F32 && t.dtype != io::DType::F16 && t.dtype != io::DType::BF16 &&
        t.dtype != io::DType::F64)
      fail(src, ": tensor '", n, "' has dtype ", io::dtype_name(t.dtype),
           ", expected a float type");
    auto& slot = factors[module];
    (is_a ? slot.first : slot.second) = &t;
  }
  if (factors.empty()) fail(src, ": holds no LoRA tensors");

  for (const auto& [module, ab] : factors) {
    if (!ab.first || !ab.second)
      fail(src, ": module '", module, "' has lora_", ab.first ? 'B' : 'A', " missing (",
           peft_tensor_name(module, ab.first ? 'B' : 'A'), ")");
    const LinearShape& lin = linears.at(module);
    const std::vector<int64_t> want_a{config.r, lin.in_features};
    const std::vector<int64_t> want_b{lin.out_features, config.r};
    if (ab.first->shape != want_a)
      fail(src, ": tensor '", ab.first->name, "' has shape ", shape_text(ab.first->shape),
           ", expected ", shape_text(want_a), " (r = ", config.r, " from ", cfg_src, ")");
    if (ab.second->shape != want_b)
      fail(src, ": tensor '", ab.second->name, "' has shape ", shape_text(ab.second->shape),
           ", expected ", shape_text(want_b), " (r = ", config.r, " from ", cfg_src, ")");
    out.factors.push_back({module, factor_values(*ab.first, src), factor_values(*ab.second, src)});
  }
  return out;
}

}  // namespace drafteu
