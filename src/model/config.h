// Llama hyper-parameters, as Hugging Face's LlamaConfig names them.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace drafteu {

namespace io {
class GgufFile;
}

// rope_scaling {"rope_type": "llama3", ...} of Llama 3.1+.
struct Llama3RopeScaling {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct LlamaConfig {
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;  // hidden_size / num_attention_heads unless given
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  std::optional<Llama3RopeScaling> rope_scaling;
  bool tie_word_embeddings = false;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;

  // Throws drafteu::Error naming `source` and the field when a value is missing or inconsistent.
  void validate(const std::string& source) const;
  int64_t num_parameters() const;                 // weights only, tied embeddings counted once
  int64_t num_parameters_read_per_token() const;  // all but an untied embedding table

  static LlamaConfig from_hf_json(const nlohmann::json& j, const std::string& source);
  static LlamaConfig from_hf_file(const std::filesystem::path& config_json);
  static LlamaConfig from_gguf(const io::GgufFile& gguf);
  nlohmann::json to_hf_json() const;

  // Built-in configs so tests and demos need no download: "tiny" (random init, GQA, untied),
  // "stories15m" (dim 288, 6 layers, 6 heads, vocab 32000, the ~15M benchmark size), ...
  static LlamaConfig preset(const std::string& name);
  static std::vector<std::string> preset_names();
};

// generation_config.json: end-of-sequence ids and sampling defaults.
struct GenerationConfig {
  std::vector<int64_t> eos_token_ids;
  std::optional<int64_t> bos_token_id;
  bool do_sample = false;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  std::optional<int64_t> max_new_tokens;

  // Fields of `j` over the model's defaults (bos/eos of `model`); ids must lie in its
  // vocabulary. Errors name `source` and the field.
  static GenerationConfig from_hf_json(const nlohmann::json& j, const LlamaConfig& model,
                                       const std::string& source);
};

}  // namespace drafteu
