#include "family/lora.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cmath>
#include <memory>

#include "util/error.h"

namespace drafteu {

double LoraConfig::scaling() const {
  return use_rslora ? alpha / std::sqrt(static_cast<double>(r)) : alpha / static_cast<double>(r);
}

void LoraConfig::validate(const std::string& source) const {
  if (r <= 0) fail(source, ": field 'r' must be a positive integer, got ", r);
  // Real adapters use alphas up to a few hundred; beyond 1e6 the scaled update overflows float.
  if (!std::isfinite(alpha) || std::abs(alpha) > kMaxLoraAlpha)
    fail(source, ": field 'lora_alpha' must be a finite number of magnitude at most ",
         kMaxLoraAlpha, ", got ", alpha);
  if (!(dropout >= 0.0 && dropout < 1.0))
    fail(source, ": field 'lora_dropout' must be in [0, 1), got ", dropout);
  if (target_regex.empty() && target_modules.empty())
    fail(source, ": field 'target_modules' names no module");
}

namespace {

// PEFT's re.fullmatch(pattern, name) on PCRE2 with bounded backtracking: the pattern comes from
// adapter_config.json, and std::regex backtracks exponentially on patterns like "(.|.|.)*z".
class FullMatcher {
 public:
  explicit FullMatcher(const std::string& pattern) : pattern_(pattern) {
    int err = 0;
    PCRE2_SIZE off = 0;
    code_.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_UTF, &err, &off, nullptr));
    if (!code_) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fail("LoRA: target_modules regex '", pattern, "' is invalid at offset ", off, ": ",
           reinterpret_cast<const char*>(msg));
    }
    data_.reset(pcre2_match_data_create_from_pattern(code_.get(), nullptr));
    ctx_.reset(pcre2_match_context_create(nullptr));
    if (!data_ || !ctx_) fail("pcre2: out of memory");
    pcre2_set_match_limit(ctx_.get(), 1'000'000);
    pcre2_set_depth_limit(ctx_.get(), 10'000);
  }

  bool operator()(const std::string& name) const {
    const int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(name.data()), name.size(),
                               0, 0, data_.get(), ctx_.get());
    if (rc >= 0) return true;
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
      fail("LoRA: target_modules regex '", pattern_,
           "' exceeds its backtracking limit matching module '", name, "'");
    fail("LoRA: target_modules regex '", pattern_, "' failed on module '", name, "' (PCRE2 error ",
         rc, ")");
  }

 private:
  struct CodeFree {
    void operator()(pcre2_code* p) const { pcre2_code_free(p); }
  };
  struct DataFree {
    void operator()(pcre2_match_data* p) const { pcre2_match_data_free(p); }
  };
  struct CtxFree {
    void operator()(pcre2_match_context* p) const { pcre2_match_context_free(p); }
  };
  std::string pattern_;
  std::unique_ptr<pcre2_code, CodeFree> code_;
  std::unique_ptr<pcre2_match_data, DataFree> data_;
  std::unique_ptr<pcre2_match_context, CtxFree> ctx_;
};

}  // namespace

std::vector<std::string> lora_target_modules(const LlamaForCausalLMImpl& model,
                                             const LoraConfig& config) {
  if (config.target_regex.empty()) return match_modules(model, config.target_modules, "LoRA");
  std::vector<std::string> out;
  if (config.target_regex == "all-linear") {
    for (const auto& name : model.linear_names())
      if (name != "lm_head") out.push_back(name);
  } else {
    const FullMatcher matches(config.target_regex);
    for (const auto& name : model.linear_names())
      if (matches(name)) out.push_back(name);
  }
  if (out.empty())
    fail("LoRA: target_modules regex '", config.target_regex, "' matches no linear layer");
  return out;
}

LoraLayerImpl::LoraLayerImpl(int64_t in_features, int64_t out_features, int64_t r, double scaling_,
                             double dropout_, const torch::TensorOptions& options)
    : scaling(scaling_), dropout(dropout_) {
  lora_A = register_parameter("lora_A", torch::empty({r, in_features}, options));
  lora_B = register_parameter("lora_B", torch::zeros({out_features, r}, options));
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(lora_A, std::sqrt(5.0));  // as PEFT's reset_lora_parameters
}

torch::Tensor LoraLayerImpl::forward(const torch::Tensor& x) const {
  auto h = dropout > 0.0 ? torch::dropout(x, dropout, is_training()) : x;
  return torch::matmul(torch::matmul(h, lora_A.t()), lora_B.t()) * scaling;
}

torch::Tensor LoraLayerImpl::delta_weight() const {
  return torch::matmul(lora_B, lora_A) * scaling;
}

LoraAdapterImpl::LoraAdapterImpl(LlamaForCausalLMImpl& model, LoraConfig config)
    : LoraAdapterImpl(model, config, lora_target_modules(model, config)) {}

LoraAdapterImpl::LoraAdapterImpl(LlamaForCausalLMImpl& model, LoraConfig config,
                                 const std::vector<std::string>& modules)
    : config_(std::move(config)) {
  config_.validate("LoRA config");
  for (const auto& name : modules) {
    auto& lin = model.linear(name);
    std::string key = name;  // torch module names may not contain '.'
    for (auto& ch : key) ch = ch == '.' ? '_' : ch;
    auto layer = LoraLayer(lin.in_features(), lin.out_features(), config_.r, config_.scaling(),
                           config_.dropout, lin.weight.options().requires_grad(false));
    layers_.emplace(name, register_module(key, layer));
  }
}

std::vector<std::string> LoraAdapterImpl::module_names() const {
  std::vector<std::string> out;
  for (const auto& [name, _] : layers_) out.push_back(name);
  return out;
}

LoraLayer LoraAdapterImpl::layer(const std::string& module) const {
  auto it = layers_.find(module);
  if (it == layers_.end()) fail("LoRA adapter has no layer for module '", module, "'");
  return it->second;
}

void LoraAdapterImpl::attach(LlamaForCausalLMImpl& model) {
  attached_.detach();
  std::vector<std::pair<std::string, std::shared_ptr<LinearDelta>>> deltas;
  for (const auto& [name, layer] : layers_) deltas.emplace_back(name, layer.ptr());
  attached_ = AttachedDeltas(model, std::move(deltas));
}

MemberDeltas LoraAdapterImpl::to_member() const {
  MemberDeltas out;
  for (const auto& [name, layer] : layers_) {
    LowRankTerm t;
    t.a = layer->lora_A.detach().clone();
    t.b = layer->lora_B.detach().clone();
    t.scale = layer->scaling;
    out.emplace(name, std::move(t));
  }
  return out;
}

}  // namespace drafteu
