#include "distill/config.h"

#include "util/json.h"

#include "family/seeding.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::distill {

namespace fs = std::filesystem;
using json = nlohmann::json;

const config::Fields<TrainConfig>& train_config_fields() {
  static const config::Fields<TrainConfig> f = [] {
    using config::at_least;
    config::Fields<TrainConfig> t;
    t.field("lr", &TrainConfig::lr, config::positive<double>())
        .field("weight_decay", &TrainConfig::weight_decay, at_least(0.0))
        .field("adam_beta1", &TrainConfig::adam_beta1)
        .field("adam_beta2", &TrainConfig::adam_beta2)
        .field("adam_eps", &TrainConfig::adam_eps)
        .field("max_grad_norm", &TrainConfig::max_grad_norm, at_least(0.0))
        // The schedule's fields sit beside the others in the JSON.
        .field(
            "schedule", [](auto& c) -> auto& { return c.schedule.kind; },
            config::one_of({"linear", "cosine", "constant", "cosine_floor"}))
        .field(
            "warmup_steps", [](auto& c) -> auto& { return c.schedule.warmup_steps; },
            at_least<int64_t>(0))
        .field(
            "warmup_ratio", [](auto& c) -> auto& { return c.schedule.warmup_ratio; },
            config::in_range(0.0, 1.0))
        .field("batch_size", &TrainConfig::batch_size, at_least<int64_t>(1))
        .field("grad_accum", &TrainConfig::grad_accum, at_least<int64_t>(1))
        .field("epochs", &TrainConfig::epochs)
        .field("max_steps", &TrainConfig::max_steps)
        .field("max_seq_len", &TrainConfig::max_seq_len, at_least<int64_t>(2))
        .field("save_every", &TrainConfig::save_every)
        .field("keep_checkpoints", &TrainConfig::keep_checkpoints)
        .field("log_every", &TrainConfig::log_every)
        .field("seed", &TrainConfig::seed)
        .field("dtype", &TrainConfig::dtype, config::one_of({"f32", "bf16", "auto"}))
        .read_only("stop_after", &TrainConfig::stop_after)
        .rule([](const TrainConfig& c, const config::Where& w) {
          if (!(c.epochs > 0) && c.max_steps <= 0)
            config::fail_field(w.at("epochs"), "must be > 0 (or set max_steps)");
        });
    return t;
  }();
  return f;
}

const config::Fields<LoraConfig>& lora_config_fields() {
  static const config::Fields<LoraConfig> f = [] {
    config::Fields<LoraConfig> l;
    l.field("r", &LoraConfig::r)
        .field("alpha", &LoraConfig::alpha)
        .field("dropout", &LoraConfig::dropout)
        .field("target_modules", &LoraConfig::target_modules)
        .field("target_regex", &LoraConfig::target_regex)
        .field("use_rslora", &LoraConfig::use_rslora)
        // LoraConfig::validate also checks adapter_config.json, so it names PEFT's fields.
        .rule([](const LoraConfig& c, const config::Where& w) { c.validate(w.label()); });
    return l;
  }();
  return f;
}

const config::Fields<OnPolicyConfig>& on_policy_config_fields() {
  static const config::Fields<OnPolicyConfig> f = [] {
    config::Fields<OnPolicyConfig> o;
    o.field(
         "temperature", [](auto& c) -> auto& { return c.sampling.temperature; })
        .field(
            "top_p", [](auto& c) -> auto& { return c.sampling.top_p; })
        .field("max_new_tokens", &OnPolicyConfig::max_new_tokens)
        .field("generations", &OnPolicyConfig::generations);
    return o;
  }();
  return f;
}

const config::Fields<OsdConfig>& osd_config_fields() {
  static const config::Fields<OsdConfig> f = [] {
    config::Fields<OsdConfig> o;
    o.nested("lora", &OsdConfig::lora, lora_config_fields())
        .nested("teacher_noise", &OsdConfig::teacher_noise, noise_config_fields())
        .field("teachers", &OsdConfig::teachers, config::one_of({"family", "posterior"}))
        .field("family_members", &OsdConfig::family_members)
        .field("n_teachers", &OsdConfig::n_teachers, config::at_least<int64_t>(1))
        .rule([](const OsdConfig& c, const config::Where& w) { c.validate(w.label()); });
    return o;
  }();
  return f;
}

// GKD and MiniLLM write their on-policy settings at their own level, beside their LoRA.
const config::Fields<GkdConfig>& gkd_config_fields() {
  static const config::Fields<GkdConfig> f = [] {
    config::Fields<GkdConfig> g;
    g.nested("", &GkdConfig::on_policy, on_policy_config_fields())
        .field("lambda", &GkdConfig::lambda, config::in_range(0.0, 1.0))
        .field("beta", &GkdConfig::beta, config::in_range(0.0, 1.0))
        .nested("lora", &GkdConfig::lora, lora_config_fields())
        .constant("loss", "TRL generalized_jsd_loss: M = beta p_T + (1-beta) q_S")
        .rule([](const GkdConfig& c, const config::Where& w) { c.validate(w.label()); });
    return g;
  }();
  return f;
}

const config::Fields<MiniLLMConfig>& minillm_config_fields() {
  static const config::Fields<MiniLLMConfig> f = [] {
    config::Fields<MiniLLMConfig> m;
    m.nested("", &MiniLLMConfig::on_policy, on_policy_config_fields())
        .nested("lora", &MiniLLMConfig::lora, lora_config_fields())
        .rule([](const MiniLLMConfig& c, const config::Where& w) { c.validate(w.label()); });
    return m;
  }();
  return f;
}

json to_json(const TrainConfig& c) {
  return train_config_fields().to_json(c);
}
json to_json(const LoraConfig& c) {
  return lora_config_fields().to_json(c);
}
json to_json(const OnPolicyConfig& c) {
  return on_policy_config_fields().to_json(c);
}
json to_json(const OsdConfig& c) {
  return osd_config_fields().to_json(c);
}
json to_json(const GkdConfig& c) {
  return gkd_config_fields().to_json(c);
}
json to_json(const MiniLLMConfig& c) {
  return minillm_config_fields().to_json(c);
}

TrainConfig train_config_from_json(const json& j, const config::Where& where, TrainConfig c) {
  return train_config_fields().from_json(j, where, std::move(c));
}
LoraConfig lora_config_from_json(const json& j, const config::Where& where, LoraConfig c) {
  return lora_config_fields().from_json(j, where, std::move(c));
}
OnPolicyConfig on_policy_config_from_json(const json& j, const config::Where& where,
                                          OnPolicyConfig c) {
  return on_policy_config_fields().from_json(j, where, std::move(c));
}
OsdConfig osd_config_from_json(const json& j, const config::Where& where, OsdConfig c) {
  return osd_config_fields().from_json(j, where, std::move(c));
}
GkdConfig gkd_config_from_json(const json& j, const config::Where& where, GkdConfig c) {
  return gkd_config_fields().from_json(j, where, std::move(c));
}
MiniLLMConfig minillm_config_from_json(const json& j, const config::Where& where, MiniLLMConfig c) {
  return minillm_config_fields().from_json(j, where, std::move(c));
}

LoadedModel load_model_spec(const std::string& spec, const std::string& field) {
  if (spec.empty()) fail("missing field '", field, "' (a model path or preset:NAME)");
  if (spec.rfind("preset:", 0) == 0) {
    std::string rest = spec.substr(7);
    uint64_t seed = 0;
    if (auto colon = rest.find(':'); colon != std::string::npos) {
      try {
        seed = std::stoull(rest.substr(colon + 1));
      } catch (const std::exception&) {
        fail(field, ": bad seed in '", spec, "'");
      }
      rest = rest.substr(0, colon);
    }
    LoadedModel m;
    torch::manual_seed(mix_seed({seed, 0x3e5}));
    m.model = LlamaForCausalLM(LlamaConfig::preset(rest));
    m.generation.eos_token_ids = m.model->config().eos_token_ids;
    m.source = spec;
    return m;
  }
  if (!fs::exists(spec)) fail(field, ": model '", spec, "' does not exist");
  return load_model(spec);
}

}  // namespace drafteu::distill
