#include "model/checkpoint.h"

#include <nlohmann/json.hpp>
#include <regex>

#include "model/io/gguf.h"
#include "model/io/safetensors.h"
#include "model/tokenizer/gguf_vocab.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace drafteu {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
const std::pair<const char*, const char*> kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// A checkpoint tensor as float32 on the CPU (F16/BF16/F64 converted).
torch::Tensor to_float_tensor(io::DType dtype, const std::vector<int64_t>& shape, const void* data,
                              int64_t numel) {
  auto t = torch::empty(shape, torch::kFloat32);
  io::convert_to_f32(dtype, data, t.data_ptr<float>(), static_cast<size_t>(numel));
  return t;
}

void assign(torch::Tensor& param, const torch::Tensor& value, const std::string& where,
            const std::string& name) {
  if (param.sizes() != value.sizes())
    fail(where, ": tensor '", name, "' has shape ", value.sizes(), " but the config implies ",
         param.sizes());
  torch::NoGradGuard no_grad;
  param.copy_(value);
}

GenerationConfig read_generation_config(const fs::path& dir, const LlamaConfig& c) {
  const fs::path file = dir / "generation_config.json";
  if (!fs::exists(file)) return GenerationConfig::from_hf_json(json::object(), c, file.string());
  return GenerationConfig::from_hf_json(read_json_file(file), c, file.string());
}

json generation_config_json(const GenerationConfig& g) {
  json j = {{"do_sample", g.do_sample},
            {"temperature", g.temperature},
            {"top_k", g.top_k},
            {"top_p", g.top_p}};
  if (g.bos_token_id) j["bos_token_id"] = *g.bos_token_id;
  if (g.eos_token_ids.size() == 1) j["eos_token_id"] = g.eos_token_ids.front();
  if (g.eos_token_ids.size() > 1) j["eos_token_id"] = g.eos_token_ids;
  if (g.max_new_tokens) j["max_new_tokens"] = *g.max_new_tokens;
  return j;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

// Every tensor the config implies must be in the file with that shape, checked before the model
// is built: a lying config must not allocate (or initialise) gigabytes first.
void check_hf_shapes(const LlamaConfig& c, const io::SafetensorsCheckpoint& ckpt,
                     const fs::path& config_file) {
  for (const auto& [name, want] : expected_hf_shapes(c)) {
    const io::TensorView& v = ckpt.get(name);
    if (v.shape != want)
      fail(ckpt.describe(), ": tensor '", name, "' has shape ", shape_text(v.shape), " but ",
           config_file.string(), " implies ", shape_text(want));
  }
}

void check_gguf_shapes(const LlamaConfig& c, const io::GgufFile& g) {
  for (const auto& [name, want] : expected_hf_shapes(c)) {
    const std::string gname = gguf_tensor_name(name);
    const io::GgufTensor* t = g.find_tensor(gname);
    if (!t) fail(g.path().string(), ": missing tensor '", gname, "' (", name, ")");
    if (t->shape != want)
      fail(g.path().string(), ": tensor '", gname, "' has shape ", shape_text(t->shape),
           " but the metadata (llama.*) implies ", shape_text(want));
  }
}

void load_hf_weights(LlamaForCausalLMImpl& model, const io::SafetensorsCheckpoint& ckpt) {
  auto state = model.hf_state();
  for (auto& [name, param] : state) {
    const io::TensorView& v = ckpt.get(name);
    assign(param, to_float_tensor(v.dtype, v.shape, v.data, v.numel()), ckpt.describe(), name);
  }
}

void load_gguf_weights(LlamaForCausalLMImpl& model, const io::GgufFile& g) {
  const auto& c = model.config();
  auto state = model.hf_state();
  for (auto& [name, param] : state) {
    std::string gname = gguf_tensor_name(name);
    const io::GgufTensor* t = g.find_tensor(gname);
    if (!t) fail(g.path().string(), ": missing tensor '", gname, "' (", name, ")");
    auto value = to_float_tensor(t->dtype, t->shape, t->data,
                                 static_cast<int64_t>(t->nbytes / io::dtype_size(t->dtype)));
    if (name.ends_with("self_attn.q_proj.weight"))
      value = unpermute_gguf_rope_rows(value, c.num_attention_heads);
    else if (name.ends_with("self_attn.k_proj.weight"))
      value = unpermute_gguf_rope_rows(value, c.num_key_value_heads);
    assign(param, value, g.path().string(), gname);
  }
}

}  // namespace

std::map<std::string, std::vector<int64_t>> expected_hf_shapes(const LlamaConfig& c) {
  const int64_t h = c.hidden_size, q = c.num_attention_heads * c.head_dim,
                kv = c.num_key_value_heads * c.head_dim, ffn = c.intermediate_size;
  std::map<std::string, std::vector<int64_t>> out{{"model.embed_tokens.weight", {c.vocab_size, h}},
                                                  {"model.norm.weight", {h}}};
  if (!c.tie_word_embeddings) out["lm_head.weight"] = {c.vocab_size, h};
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    out[p + "input_layernorm.weight"] = {h};
    out[p + "post_attention_layernorm.weight"] = {h};
    out[p + "self_attn.q_proj.weight"] = {q, h};
    out[p + "self_attn.k_proj.weight"] = {kv, h};
    out[p + "self_attn.v_proj.weight"] = {kv, h};
    out[p + "self_attn.o_proj.weight"] = {h, q};
    out[p + "mlp.gate_proj.weight"] = {ffn, h};
    out[p + "mlp.up_proj.weight"] = {ffn, h};
    out[p + "mlp.down_proj.weight"] = {h, ffn};
  }
  return out;
}

std::string gguf_tensor_name(const std::string& hf) {
  for (const auto& [h, g] : kGlobalNames)
    if (hf == h) return g;
  static const std::regex layer_re(R"(model\.layers\.(\d+)\.(.+))");
  std::smatch m;
  if (std::regex_match(hf, m, layer_re)) {
    for (const auto& [h, g] : kLayerNames)
      if (m[2] == h) return "blk." + m[1].str() + "." + g;
  }
  return "";
}

std::string hf_tensor_name(const std::string& gguf) {
  for (const auto& [h, g] : kGlobalNames)
    if (gguf == g) return h;
  static const std::regex blk_re(R"(blk\.(\d+)\.(.+))");
  std::smatch m;
  if (std::regex_match(gguf, m, blk_re)) {
    for (const auto& [h, g] : kLayerNames)
      if (m[2] == g) return "model.layers." + m[1].str() + "." + h;
  }
  return "";
}

torch::Tensor unpermute_gguf_rope_rows(const torch::Tensor& w, int64_t heads) {
  auto rows = w.size(0);
  return w.reshape({heads, rows / heads / 2, 2, w.size(1)}).transpose(1, 2).reshape(w.sizes());
}

torch::Tensor permute_gguf_rope_rows(const torch::Tensor& w, int64_t heads) {
  auto rows = w.size(0);
  return w.reshape({heads, 2, rows / heads / 2, w.size(1)}).transpose(1, 2).reshape(w.sizes());
}

std::shared_ptr<Tokenizer> load_tokenizer(const fs::path& path) {
  if (fs::is_directory(path)) {
    if (fs::exists(path / "tokenizer.json")) return load_tokenizer_json(path / "tokenizer.json");
    fail(path.string(), ": no tokenizer.json in this directory");
  }
  if (!fs::exists(path)) fail(path.string(), ": no such file or directory");
  if (path.extension() == ".gguf") {
    io::GgufFile g(path);
    return tokenizer_from_gguf_vocab(gguf_vocab_from_file(g));
  }
  return load_tokenizer_json(path);
}

LoadedModel load_model(const fs::path& path, const LoadOptions& options) {
  LoadedModel out;
  out.source = path;
  torch::NoGradGuard no_grad;
  if (fs::is_directory(path)) {
    auto config = LlamaConfig::from_hf_file(path / "config.json");
    io::SafetensorsCheckpoint ckpt(path);
    check_hf_shapes(config, ckpt, path / "config.json");
    out.model = LlamaForCausalLM(config);
    load_hf_weights(*out.model, ckpt);
    out.generation = read_generation_config(path, config);
    if (!options.tokenizer && fs::exists(path / "tokenizer.json"))
      out.tokenizer = load_tokenizer_json(path / "tokenizer.json");
  } else {
    if (!fs::exists(path)) fail(path.string(), ": no such file or directory");
    if (path.extension() != ".gguf")
      fail(path.string(), ": expected an HF model directory or a .gguf file");
    io::GgufFile g(path);
    auto config = LlamaConfig::from_gguf(g);
    check_gguf_shapes(config, g);
    out.model = LlamaForCausalLM(config);
    load_gguf_weights(*out.model, g);
    out.generation.eos_token_ids = config.eos_token_ids;
    out.generation.bos_token_id = config.bos_token_id;
    if (!options.tokenizer && g.has("tokenizer.ggml.tokens"))
      out.tokenizer = tokenizer_from_gguf_vocab(gguf_vocab_from_file(g));
  }
  if (options.tokenizer) out.tokenizer = load_tokenizer(*options.tokenizer);
  if (out.tokenizer) {
    if (out.tokenizer->vocab_size() > out.config().vocab_size)
      fail(path.string(), ": tokenizer has ", out.tokenizer->vocab_size(),
           " tokens but the model's vocab_size is ", out.config().vocab_size);
    if (out.generation.eos_token_ids.empty())
      for (auto id : out.tokenizer->eos_ids()) out.generation.eos_token_ids.push_back(id);
    if (!out.generation.bos_token_id) {
      if (auto b = out.tokenizer->bos_id()) out.generation.bos_token_id = *b;
    }
  }
  out.model->to(options.device, options.dtype);
  out.model->eval();
  for (auto& p : out.model->parameters()) p.set_requires_grad(false);
  return out;
}

namespace {

// Contiguous CPU bytes of `t` in `dtype` (F32, BF16 or F16); `keep` owns them.
std::pair<const void*, size_t> tensor_bytes(const torch::Tensor& t, io::DType dtype,
                                            std::vector<torch::Tensor>& keep) {
  auto f = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  if (dtype == io::DType::F32) {
    keep.push_back(f);
    return {f.data_ptr(), static_cast<size_t>(f.numel()) * 4};
  }
  auto half = torch::empty({f.numel()}, torch::kInt16);
  auto* dst = reinterpret_cast<uint16_t*>(half.data_ptr<int16_t>());
  if (dtype == io::DType::BF16)
    io::convert_f32_to_bf16(f.data_ptr<float>(), dst, static_cast<size_t>(f.numel()));
  else if (dtype == io::DType::F16)
    io::convert_f32_to_f16(f.data_ptr<float>(), dst, static_cast<size_t>(f.numel()));
  else
    fail("save: unsupported weight dtype ", io::dtype_name(dtype), " (use F32, BF16 or F16)");
  keep.push_back(half);
  return {half.data_ptr(), static_cast<size_t>(f.numel()) * 2};
}

}  // namespace

void save_hf_model(const LoadedModel& m, const fs::path& dir, io::DType dtype) {
  fs::create_directories(dir);
  std::vector<torch::Tensor> keep;
  std::vector<io::TensorToWrite> tensors;
  for (const auto& [name, t] : m.model->hf_state()) {
    auto [data, nbytes] = tensor_bytes(t, dtype, keep);
    tensors.push_back({name, dtype, t.sizes().vec(), data, nbytes});
  }
  io::write_safetensors_checkpoint(dir, tensors, size_t{5} << 30, {{"format", "pt"}});
  write_file_atomic(dir / "config.json", m.config().to_hf_json().dump(2) + "\n");
  write_file_atomic(dir / "generation_config.json",
                    generation_config_json(m.generation).dump(2) + "\n");
  if (m.tokenizer) m.tokenizer->save_hf(dir);
}

void save_gguf_model(const LoadedModel& m, const fs::path& file, io::DType dtype) {
  using io::GgufScalar;
  using io::GgufType;
  using io::GgufValue;
  const auto& c = m.config();
  std::map<std::string, GgufValue> kv;
  auto put_u32 = [&](const std::string& k, int64_t v) {
    kv[k] = GgufValue{GgufType::U32, GgufScalar{static_cast<uint64_t>(v)}, GgufType::U32, {}};
  };
  auto put_f32 = [&](const std::string& k, double v) {
    kv[k] = GgufValue{GgufType::F32, GgufScalar{v}, GgufType::U32, {}};
  };
  auto put_str = [&](const std::string& k, const std::string& v) {
    kv[k] = GgufValue{GgufType::STRING, GgufScalar{v}, GgufType::U32, {}};
  };
  put_str("general.architecture", "llama");
  put_str("general.name", m.source.stem().string());
  put_u32("general.alignment", 32);
  put_u32("llama.context_length", c.max_position_embeddings);
  put_u32("llama.embedding_length", c.hidden_size);
  put_u32("llama.block_count", c.num_hidden_layers);
  put_u32("llama.feed_forward_length", c.intermediate_size);
  put_u32("llama.attention.head_count", c.num_attention_heads);
  put_u32("llama.attention.head_count_kv", c.num_key_value_heads);
  put_u32("llama.attention.key_length", c.head_dim);
  put_u32("llama.attention.value_length", c.head_dim);
  put_u32("llama.rope.dimension_count", c.head_dim);
  put_u32("llama.vocab_size", c.vocab_size);
  put_f32("llama.rope.freq_base", c.rope_theta);
  put_f32("llama.attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  if (c.rope_scaling)
    fail(file.string(), ": writing llama3 rope scaling to GGUF (rope_freqs) is not supported");
  if (m.tokenizer) add_gguf_vocab_metadata(m.tokenizer->to_gguf_vocab(), kv);
  std::vector<torch::Tensor> keep;
  std::vector<io::GgufTensorToWrite> tensors;
  for (const auto& [name, t0] : m.model->hf_state()) {
    auto t = t0;
    if (name.ends_with("self_attn.q_proj.weight"))
      t = permute_gguf_rope_rows(t, c.num_attention_heads);
    if (name.ends_with("self_attn.k_proj.weight"))
      t = permute_gguf_rope_rows(t, c.num_key_value_heads);
    // Norm weights stay F32, as llama.cpp keeps 1-D tensors.
    io::DType dt = t.dim() == 1 ? io::DType::F32 : dtype;
    auto [data, nbytes] = tensor_bytes(t, dt, keep);
    io::GgmlType gt = dt == io::DType::F32   ? io::GgmlType::F32
                      : dt == io::DType::F16 ? io::GgmlType::F16
                                             : io::GgmlType::BF16;
    tensors.push_back({gguf_tensor_name(name), gt, t.sizes().vec(), data, nbytes});
  }
  io::write_gguf(file, kv, tensors);
}

}  // namespace drafteu
