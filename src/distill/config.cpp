#include "distill/config.h"

#include "util/json.h"

#include "family/seeding.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::distill {

namespace fs = std::filesystem;
using json = nlohmann::json;

json to_json(const TrainConfig& c) {
  return {{"lr", c.lr},
          {"weight_decay", c.weight_decay},
          {"adam_beta1", c.adam_beta1},
          {"adam_beta2", c.adam_beta2},
          {"adam_eps", c.adam_eps},
          {"max_grad_norm", c.max_grad_norm},
          {"schedule", c.schedule.kind},
          {"warmup_steps", c.schedule.warmup_steps},
          {"warmup_ratio", c.schedule.warmup_ratio},
          {"batch_size", c.batch_size},
          {"grad_accum", c.grad_accum},
          {"epochs", c.epochs},
          {"max_steps", c.max_steps},
          {"max_seq_len", c.max_seq_len},
          {"save_every", c.save_every},
          {"keep_checkpoints", c.keep_checkpoints},
          {"log_every", c.log_every},
          {"seed", c.seed},
          {"dtype", c.dtype}};
}

TrainConfig train_config_from_json(const json& j, const std::string& source, TrainConfig c) {
  check_fields(j, source, {"lr",           "weight_decay",  "adam_beta1", "adam_beta2",
                           "adam_eps",     "max_grad_norm", "schedule",   "warmup_steps",
                           "warmup_ratio", "batch_size",    "grad_accum", "epochs",
                           "max_steps",    "max_seq_len",   "save_every", "keep_checkpoints",
                           "log_every",    "seed",          "dtype",      "stop_after"});
  take(j, "lr", c.lr, source);
  take(j, "weight_decay", c.weight_decay, source);
  take(j, "adam_beta1", c.adam_beta1, source);
  take(j, "adam_beta2", c.adam_beta2, source);
  take(j, "adam_eps", c.adam_eps, source);
  take(j, "max_grad_norm", c.max_grad_norm, source);
  take(j, "schedule", c.schedule.kind, source);
  take(j, "warmup_steps", c.schedule.warmup_steps, source);
  take(j, "warmup_ratio", c.schedule.warmup_ratio, source);
  take(j, "batch_size", c.batch_size, source);
  take(j, "grad_accum", c.grad_accum, source);
  take(j, "epochs", c.epochs, source);
  take(j, "max_steps", c.max_steps, source);
  take(j, "max_seq_len", c.max_seq_len, source);
  take(j, "save_every", c.save_every, source);
  take(j, "keep_checkpoints", c.keep_checkpoints, source);
  take(j, "log_every", c.log_every, source);
  take(j, "seed", c.seed, source);
  take(j, "dtype", c.dtype, source);
  take(j, "stop_after", c.stop_after, source);
  c.validate(source);
  return c;
}

json to_json(const LoraConfig& c) {
  return {{"r", c.r},
          {"alpha", c.alpha},
          {"dropout", c.dropout},
          {"target_modules", c.target_modules},
          {"target_regex", c.target_regex},
          {"use_rslora", c.use_rslora}};
}

LoraConfig lora_config_from_json(const json& j, const std::string& source, LoraConfig c) {
  check_fields(j, source,
               {"r", "alpha", "dropout", "target_modules", "target_regex", "use_rslora"});
  take(j, "r", c.r, source);
  take(j, "alpha", c.alpha, source);
  take(j, "dropout", c.dropout, source);
  take(j, "target_modules", c.target_modules, source);
  take(j, "target_regex", c.target_regex, source);
  take(j, "use_rslora", c.use_rslora, source);
  c.validate(source);
  return c;
}

json to_json(const OnPolicyConfig& c) {
  return {{"temperature", c.sampling.temperature},
          {"top_p", c.sampling.top_p},
          {"max_new_tokens", c.max_new_tokens},
          {"generations", c.generations}};
}

OnPolicyConfig on_policy_config_from_json(const json& j, const std::string& source,
                                          OnPolicyConfig c) {
  take(j, "temperature", c.sampling.temperature, source);
  take(j, "top_p", c.sampling.top_p, source);
  take(j, "max_new_tokens", c.max_new_tokens, source);
  take(j, "generations", c.generations, source);
  return c;
}

json to_json(const OsdConfig& c) {
  return {{"lora", to_json(c.lora)},
          {"teacher_noise", to_json(c.teacher_noise)},
          {"teachers", c.teachers},
          {"family_members", c.family_members},
          {"n_teachers", c.n_teachers}};
}

json to_json(const GkdConfig& c) {
  json j = to_json(c.on_policy);
  j["lambda"] = c.lambda;
  j["beta"] = c.beta;
  j["lora"] = to_json(c.lora);
  j["loss"] = "TRL generalized_jsd_loss: M = beta p_T + (1-beta) q_S";
  return j;
}

json to_json(const MiniLLMConfig& c) {
  json j = to_json(c.on_policy);
  j["lora"] = to_json(c.lora);
  return j;
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
