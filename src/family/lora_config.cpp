#include "family/lora_config.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cmath>
#include <memory>

#include "family/module_names.h"
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

std::vector<std::string> lora_target_names(const std::vector<std::string>& linear_names,
                                           const LoraConfig& config) {
  if (config.target_regex.empty())
    return match_module_names(linear_names, config.target_modules, "LoRA");
  std::vector<std::string> out;
  if (config.target_regex == "all-linear") {
    for (const auto& name : linear_names)
      if (name != "lm_head") out.push_back(name);
  } else {
    const FullMatcher matches(config.target_regex);
    for (const auto& name : linear_names)
      if (matches(name)) out.push_back(name);
  }
  if (out.empty())
    fail("LoRA: target_modules regex '", config.target_regex, "' matches no linear layer");
  return out;
}

}  // namespace drafteu
