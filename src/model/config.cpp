#include "model/config.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "model/io/gguf.h"
#include "util/error.h"
#include "util/json.h"

namespace drafteu {
using nlohmann::json;

void LlamaConfig::validate(const std::string& source) const {
  auto positive = [&](int64_t v, const char* field) {
    if (v <= 0) fail(source, ": field '", field, "' must be positive, got ", v);
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(max_position_embeddings, "max_position_embeddings");
  // Upper bounds far above any real Llama (405B: width 16384, 126 layers, vocab 128256), so that
  // size arithmetic cannot overflow and a lying config fails here, not in the allocator.
  auto at_most = [&](int64_t v, int64_t limit, const char* field) {
    if (v > limit) fail(source, ": field '", field, "' is ", v, ", above the limit of ", limit);
  };
  at_most(vocab_size, int64_t{1} << 24, "vocab_size");
  at_most(hidden_size, int64_t{1} << 16, "hidden_size");
  at_most(intermediate_size, int64_t{1} << 18, "intermediate_size");
  at_most(num_hidden_layers, 4096, "num_hidden_layers");
  at_most(num_attention_heads, 4096, "num_attention_heads");
  at_most(num_key_value_heads, 4096, "num_key_value_heads");
  at_most(head_dim, 4096, "head_dim");
  at_most(max_position_embeddings, int64_t{1} << 24, "max_position_embeddings");
  if (bos_token_id && (*bos_token_id < 0 || *bos_token_id >= vocab_size))
    fail(source, ": field 'bos_token_id' is ", *bos_token_id, ", outside the vocabulary of ",
         vocab_size);
  for (int64_t id : eos_token_ids)
    if (id < 0 || id >= vocab_size)
      fail(source, ": field 'eos_token_id' holds ", id, ", outside the vocabulary of ", vocab_size);
  if (num_attention_heads % num_key_value_heads != 0)
    fail(source, ": num_attention_heads (", num_attention_heads,
         ") must be a multiple of num_key_value_heads (", num_key_value_heads, ")");
  if (head_dim % 2 != 0) fail(source, ": head_dim must be even for RoPE, got ", head_dim);
  if (!(rms_norm_eps > 0)) fail(source, ": field 'rms_norm_eps' must be positive");
  if (!(rope_theta > 0)) fail(source, ": field 'rope_theta' must be positive");
  if (rope_scaling) {
    const auto& s = *rope_scaling;
    if (!(s.factor > 0) || !(s.low_freq_factor > 0) || !(s.high_freq_factor > s.low_freq_factor) ||
        s.original_max_position_embeddings <= 0)
      fail(source, ": field 'rope_scaling' has inconsistent llama3 parameters");
  }
}

int64_t LlamaConfig::num_parameters() const {
  int64_t q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = hidden_size * q * 2 + hidden_size * kv * 2;
  int64_t mlp = 3 * hidden_size * intermediate_size;
  int64_t layer = attn + mlp + 2 * hidden_size;
  int64_t emb = vocab_size * hidden_size * (tie_word_embeddings ? 1 : 2);
  return num_hidden_layers * layer + emb + hidden_size;
}

int64_t LlamaConfig::num_parameters_read_per_token() const {
  // A decode step gathers one row of an untied embedding table.
  return num_parameters() - (tie_word_embeddings ? 0 : vocab_size * hidden_size);
}

namespace {

// nlohmann converts between number types (and booleans) silently: 64.5 would become 64.
template <typename T>
bool has_type(const json& v) {
  if constexpr (std::is_same_v<T, int64_t>)
    return v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > INT64_MAX);
  else if constexpr (std::is_same_v<T, double>)
    return v.is_number();
  else if constexpr (std::is_same_v<T, bool>)
    return v.is_boolean();
  else
    return v.is_string();
}

template <typename T>
T required(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) fail(source, ": missing field '", key, "'");
  if (!has_type<T>(*it))
    fail(source, ": field '", key, "' has the wrong type (", it->type_name(), " ",
         json_preview(*it), ", expected ",
         std::is_same_v<T, int64_t>  ? "an integer"
         : std::is_same_v<T, double> ? "a number"
         : std::is_same_v<T, bool>   ? "a boolean"
                                     : "a string",
         ")");
  return it->get<T>();
}

template <typename T>
T optional_field(const json& j, const char* key, T fallback, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  return required<T>(j, key, source);
}

std::vector<int64_t> id_list(const json& j, const char* key, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return {};
  if (has_type<int64_t>(*it)) return {it->get<int64_t>()};
  if (it->is_array()) {
    std::vector<int64_t> out;
    for (const auto& v : *it) {
      if (!has_type<int64_t>(v)) fail(source, ": field '", key, "' must hold integers");
      out.push_back(v.get<int64_t>());
    }
    return out;
  }
  fail(source, ": field '", key, "' must be an integer or a list of integers");
}

}  // namespace

LlamaConfig LlamaConfig::from_hf_json(const json& j, const std::string& source) {
  if (!j.is_object()) fail(source, ": expected a JSON object");
  if (j.contains("model_type")) {
    auto type = required<std::string>(j, "model_type", source);
    if (type != "llama")
      fail(source, ": field 'model_type' is '", type, "', only 'llama' is supported");
  }
  LlamaConfig c;
  c.vocab_size = required<int64_t>(j, "vocab_size", source);
  c.hidden_size = required<int64_t>(j, "hidden_size", source);
  c.intermediate_size = required<int64_t>(j, "intermediate_size", source);
  c.num_hidden_layers = required<int64_t>(j, "num_hidden_layers", source);
  c.num_attention_heads = required<int64_t>(j, "num_attention_heads", source);
  c.num_key_value_heads =
      optional_field<int64_t>(j, "num_key_value_heads", c.num_attention_heads, source);
  c.head_dim = optional_field<int64_t>(
      j, "head_dim", c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0, source);
  c.max_position_embeddings = optional_field<int64_t>(j, "max_position_embeddings", 2048, source);
  c.rms_norm_eps = optional_field<double>(j, "rms_norm_eps", 1e-6, source);
  c.rope_theta = optional_field<double>(j, "rope_theta", 10000.0, source);
  c.tie_word_embeddings = optional_field<bool>(j, "tie_word_embeddings", false, source);
  if (auto it = j.find("rope_scaling"); it != j.end() && !it->is_null()) {
    if (!it->is_object()) fail(source, ": field 'rope_scaling' must be an object");
    std::string type = it->contains("rope_type")
                           ? required<std::string>(*it, "rope_type", source)
                           : optional_field<std::string>(*it, "type", "", source);
    if (type != "llama3")
      fail(source, ": field 'rope_scaling.rope_type' is '", type, "', only 'llama3' is supported");
    Llama3RopeScaling s;
    s.factor = required<double>(*it, "factor", source);
    s.low_freq_factor = required<double>(*it, "low_freq_factor", source);
    s.high_freq_factor = required<double>(*it, "high_freq_factor", source);
    s.original_max_position_embeddings =
        required<int64_t>(*it, "original_max_position_embeddings", source);
    c.rope_scaling = s;
  }
  auto bos = id_list(j, "bos_token_id", source);
  if (!bos.empty()) c.bos_token_id = bos.front();
  c.eos_token_ids = id_list(j, "eos_token_id", source);
  c.validate(source);
  return c;
}

GenerationConfig GenerationConfig::from_hf_json(const json& j, const LlamaConfig& model,
                                                const std::string& source) {
  if (!j.is_object()) fail(source, ": expected a JSON object");
  GenerationConfig g;
  g.eos_token_ids = model.eos_token_ids;
  g.bos_token_id = model.bos_token_id;
  auto in_vocab = [&](int64_t id, const char* field) {
    if (id < 0 || id >= model.vocab_size)
      fail(source, ": field '", field, "' holds ", id, ", outside the vocabulary of ",
           model.vocab_size);
    return id;
  };
  if (j.contains("eos_token_id") && !j["eos_token_id"].is_null()) {
    g.eos_token_ids.clear();
    for (int64_t id : id_list(j, "eos_token_id", source))
      g.eos_token_ids.push_back(in_vocab(id, "eos_token_id"));
  }
  if (j.contains("bos_token_id") && !j["bos_token_id"].is_null())
    g.bos_token_id = in_vocab(required<int64_t>(j, "bos_token_id", source), "bos_token_id");
  g.do_sample = optional_field<bool>(j, "do_sample", false, source);
  g.temperature = optional_field<double>(j, "temperature", 1.0, source);
  g.top_k = optional_field<int64_t>(j, "top_k", 0, source);
  g.top_p = optional_field<double>(j, "top_p", 1.0, source);
  if (j.contains("max_new_tokens") && !j["max_new_tokens"].is_null())
    g.max_new_tokens = required<int64_t>(j, "max_new_tokens", source);
  if (!(g.temperature >= 0) || !std::isfinite(g.temperature))
    fail(source, ": field 'temperature' must be a finite number >= 0");
  if (!(g.top_p > 0 && g.top_p <= 1)) fail(source, ": field 'top_p' must be in (0, 1]");
  if (g.top_k < 0) fail(source, ": field 'top_k' must be >= 0");
  if (g.max_new_tokens && *g.max_new_tokens < 0)
    fail(source, ": field 'max_new_tokens' must be >= 0");
  return g;
}

LlamaConfig LlamaConfig::from_hf_file(const std::filesystem::path& config_json) {
  return from_hf_json(read_json_file(config_json), config_json.string());
}

json LlamaConfig::to_hf_json() const {
  json j = {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"vocab_size", vocab_size},
            {"hidden_size", hidden_size},
            {"intermediate_size", intermediate_size},
            {"num_hidden_layers", num_hidden_layers},
            {"num_attention_heads", num_attention_heads},
            {"num_key_value_heads", num_key_value_heads},
            {"head_dim", head_dim},
            {"max_position_embeddings", max_position_embeddings},
            {"rms_norm_eps", rms_norm_eps},
            {"rope_theta", rope_theta},
            {"tie_word_embeddings", tie_word_embeddings},
            {"hidden_act", "silu"},
            {"attention_bias", false},
            {"mlp_bias", false},
            {"torch_dtype", "float32"}};
  j["rope_scaling"] = nullptr;
  if (rope_scaling)
    j["rope_scaling"] = {
        {"rope_type", "llama3"},
        {"factor", rope_scaling->factor},
        {"low_freq_factor", rope_scaling->low_freq_factor},
        {"high_freq_factor", rope_scaling->high_freq_factor},
        {"original_max_position_embeddings", rope_scaling->original_max_position_embeddings}};
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids.front();
  if (eos_token_ids.size() > 1) j["eos_token_id"] = eos_token_ids;
  return j;
}

LlamaConfig LlamaConfig::from_gguf(const io::GgufFile& g) {
  const std::string src = g.path().string();
  std::string arch = g.get_string("general.architecture");
  if (arch != "llama")
    fail(src, ": general.architecture is '", arch, "', only 'llama' is supported");
  LlamaConfig c;
  c.hidden_size = g.get_int("llama.embedding_length");
  c.intermediate_size = g.get_int("llama.feed_forward_length");
  c.num_hidden_layers = g.get_int("llama.block_count");
  c.num_attention_heads = g.get_int("llama.attention.head_count");
  c.num_key_value_heads =
      g.find_int("llama.attention.head_count_kv").value_or(c.num_attention_heads);
  c.head_dim = g.find_int("llama.attention.key_length")
                   .value_or(c.num_attention_heads > 0 ? c.hidden_size / c.num_attention_heads : 0);
  c.max_position_embeddings = g.find_int("llama.context_length").value_or(2048);
  c.rms_norm_eps = g.find_float("llama.attention.layer_norm_rms_epsilon").value_or(1e-5);
  c.rope_theta = g.find_float("llama.rope.freq_base").value_or(10000.0);
  if (auto v = g.find_int("llama.vocab_size")) {
    c.vocab_size = *v;
  } else if (g.has("tokenizer.ggml.tokens")) {
    c.vocab_size = static_cast<int64_t>(g.get_string_array("tokenizer.ggml.tokens").size());
  }
  if (const auto* emb = g.find_tensor("token_embd.weight"); emb && c.vocab_size == 0) {
    if (emb->shape.size() != 2)
      fail(src, ": tensor 'token_embd.weight' has ", emb->shape.size(), " dimensions, expected 2");
    c.vocab_size = emb->shape[0];
  }
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  auto id = [&](const char* key) {  // llama.cpp writes "none" as -1 (0xFFFFFFFF as u32)
    auto v = g.find_int(key);
    return v && *v != -1 && *v != 0xFFFFFFFF ? v : std::nullopt;
  };
  if (auto v = id("tokenizer.ggml.bos_token_id")) c.bos_token_id = *v;
  if (auto v = id("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {*v};
  c.validate(src);
  return c;
}

LlamaConfig LlamaConfig::preset(const std::string& name) {
  LlamaConfig c;
  c.rms_norm_eps = 1e-5;
  if (name == "tiny") {  // random-init test model: GQA, untied, small vocab
    c.vocab_size = 512, c.hidden_size = 64, c.intermediate_size = 172, c.num_hidden_layers = 2;
    c.num_attention_heads = 4, c.num_key_value_heads = 2, c.head_dim = 16;
    c.max_position_embeddings = 512;
  } else if (name == "stories260k") {  // the shape of karpathy's stories260K
    c.vocab_size = 512, c.hidden_size = 64, c.intermediate_size = 172, c.num_hidden_layers = 5;
    c.num_attention_heads = 8, c.num_key_value_heads = 4, c.head_dim = 8;
    c.max_position_embeddings = 512;
  } else if (name == "stories15m") {  // the ~15M benchmark size (llama2.c stories15M shape)
    c.vocab_size = 32000, c.hidden_size = 288, c.intermediate_size = 768, c.num_hidden_layers = 6;
    c.num_attention_heads = 6, c.num_key_value_heads = 6, c.head_dim = 48;
    c.max_position_embeddings = 256;
  } else if (name == "stories110m") {  // llama2.c stories110M shape (Llama-2-style 110M)
    c.vocab_size = 32000, c.hidden_size = 768, c.intermediate_size = 2048, c.num_hidden_layers = 12;
    c.num_attention_heads = 12, c.num_key_value_heads = 12, c.head_dim = 64;
    c.max_position_embeddings = 1024;
  } else if (name == "d256") {  // mid-size CPU testbed shape
    c.vocab_size = 2048, c.hidden_size = 256, c.intermediate_size = 688, c.num_hidden_layers = 4;
    c.num_attention_heads = 8, c.num_key_value_heads = 4, c.head_dim = 32;
    c.max_position_embeddings = 1024;
  } else {
    std::string known;
    for (const auto& n : preset_names()) known += " " + n;
    fail("unknown model preset '", name, "' (known:", known, ")");
  }
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.validate("preset " + name);
  return c;
}

std::vector<std::string> LlamaConfig::preset_names() {
  return {"tiny", "stories260k", "stories15m", "stories110m", "d256"};
}

}  // namespace drafteu
