// Loading and saving whole models: a Hugging Face directory (config.json,
// generation_config.json, model.safetensors or shards, tokenizer.json) or a GGUF v3 file.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "model/io/dtype.h"
#include "model/llama.h"
#include "model/tokenizer/tokenizer.h"

namespace drafteu {

struct LoadOptions {
  torch::Device device = torch::kCPU;
  torch::ScalarType dtype = torch::kFloat32;
  std::optional<std::filesystem::path> tokenizer;  // overrides the model's own
};

struct LoadedModel {
  LlamaForCausalLM model{nullptr};
  std::shared_ptr<Tokenizer> tokenizer;  // null when the model carries none
  GenerationConfig generation;
  std::filesystem::path source;
  const LlamaConfig& config() const { return model->config(); }
};

// `path` is an HF model directory or a .gguf file. Errors name the file and the tensor/field.
LoadedModel load_model(const std::filesystem::path& path, const LoadOptions& options = {});
// A tokenizer on its own: tokenizer.json, an HF directory, or a .gguf file.
std::shared_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);

// Writes an HF directory (weights as F32 or BF16); every file atomically.
void save_hf_model(const LoadedModel& m, const std::filesystem::path& dir,
                   io::DType dtype = io::DType::F32);
// Writes a GGUF v3 file as llama.cpp lays it out (q/k rows permuted to Meta's interleaved RoPE).
void save_gguf_model(const LoadedModel& m, const std::filesystem::path& file,
                     io::DType dtype = io::DType::F32);

// The HF tensor names a model of config `c` holds (as hf_state() names them) and their shapes;
// loaders check a file against these before building the model.
std::map<std::string, std::vector<int64_t>> expected_hf_shapes(const LlamaConfig& c);

// The GGUF tensor name for an HF parameter name, and back ("" when there is none).
std::string gguf_tensor_name(const std::string& hf_name);
std::string hf_tensor_name(const std::string& gguf_name);

// llama.cpp's converter permutes q_proj/k_proj rows into Meta's interleaved RoPE layout;
// these undo and redo it. w: [heads * head_dim, in].
torch::Tensor unpermute_gguf_rope_rows(const torch::Tensor& w, int64_t heads);
torch::Tensor permute_gguf_rope_rows(const torch::Tensor& w, int64_t heads);

}  // namespace drafteu
