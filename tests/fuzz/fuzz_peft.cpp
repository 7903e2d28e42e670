// Fuzz target: a PEFT adapter directory (read_peft_adapter) for the "tiny" preset's linear layers.
// Input: a 4-byte little-endian length N, N bytes of adapter_config.json, then the bytes of
// adapter_model.safetensors. A config that loads must survive a round trip through PEFT's dict.
#include <map>
#include <string>

#include "family/peft_format.h"
#include "fuzz_support.h"
#include "model/config.h"
#include "util/error.h"

namespace {

// The linear layers LlamaForCausalLM builds for `c` (model/llama.cpp), by module name.
std::map<std::string, drafteu::LinearShape> linear_shapes(const drafteu::LlamaConfig& c) {
  std::map<std::string, drafteu::LinearShape> out;
  const int64_t q = c.num_attention_heads * c.head_dim, kv = c.num_key_value_heads * c.head_dim;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    out[p + ".self_attn.q_proj"] = {c.hidden_size, q};
    out[p + ".self_attn.k_proj"] = {c.hidden_size, kv};
    out[p + ".self_attn.v_proj"] = {c.hidden_size, kv};
    out[p + ".self_attn.o_proj"] = {q, c.hidden_size};
    out[p + ".mlp.gate_proj"] = {c.hidden_size, c.intermediate_size};
    out[p + ".mlp.up_proj"] = {c.hidden_size, c.intermediate_size};
    out[p + ".mlp.down_proj"] = {c.intermediate_size, c.hidden_size};
  }
  if (!c.tie_word_embeddings) out["lm_head"] = {c.hidden_size, c.vocab_size};
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu;
  if (size < 4) return 0;
  const size_t n = std::min<size_t>(
      size - 4, data[0] | data[1] << 8 | data[2] << 16 | static_cast<size_t>(data[3]) << 24);
  static const auto linears = linear_shapes(LlamaConfig::preset("tiny"));
  const auto config = fuzz::input_file(data + 4, n, kPeftConfigFile);
  fuzz::input_file(data + 4 + n, size - 4 - n, kPeftWeightsFile);
  try {
    const auto files = read_peft_adapter(config.parent_path(), linears);
    const auto again = peft_config_from_json(peft_config_json(files.config), "round trip");
    if (again.r != files.config.r || again.target_modules != files.config.target_modules ||
        again.target_regex != files.config.target_regex)
      __builtin_trap();  // the saved config would not load back as the same adapter
  } catch (const Error&) {
  }
  return 0;
}
