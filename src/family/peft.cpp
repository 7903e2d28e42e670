#include "family/peft.h"

#include <map>

#include "model/io/dtype.h"
#include "model/io/safetensors.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu {
namespace fs = std::filesystem;

namespace {

io::DType file_dtype(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat32:
      return io::DType::F32;
    case torch::kBFloat16:
      return io::DType::BF16;
    case torch::kFloat16:
      return io::DType::F16;
    default:
      fail("save_peft_adapter: unsupported parameter dtype ", t);
  }
}

}  // namespace

void save_peft_adapter(const LoraAdapterImpl& adapter, const fs::path& dir) {
  fs::create_directories(dir);
  std::vector<torch::Tensor> keep;  // CPU copies the writer reads from
  std::vector<io::TensorToWrite> tensors;
  for (const auto& [name, layer] : adapter.layers()) {
    for (char which : {'A', 'B'}) {
      auto t = (which == 'A' ? layer->lora_A : layer->lora_B).detach().to(torch::kCPU).contiguous();
      keep.push_back(t);
      io::TensorToWrite w;
      w.name = peft_tensor_name(name, which);
      w.dtype = file_dtype(t.scalar_type());
      w.shape = t.sizes().vec();
      w.data = t.data_ptr();
      w.nbytes = static_cast<size_t>(t.numel()) * static_cast<size_t>(t.element_size());
      tensors.push_back(std::move(w));
    }
  }
  io::write_safetensors(dir / kPeftWeightsFile, tensors, {{"format", "pt"}});
  write_file_atomic(dir / kPeftConfigFile, peft_config_json(adapter.config()).dump(2) + "\n");
}

LoraAdapter load_peft_adapter(const fs::path& dir, LlamaForCausalLMImpl& model) {
  std::map<std::string, LinearShape> linears;
  for (const auto& name : model.linear_names()) {
    auto& lin = model.linear(name);
    linears[name] = {lin.in_features(), lin.out_features()};
  }
  PeftAdapterFiles files = read_peft_adapter(dir, linears);
  std::vector<std::string> modules;
  for (const auto& f : files.factors) modules.push_back(f.module);
  LoraAdapter adapter(model, files.config, modules);
  torch::NoGradGuard no_grad;
  for (auto& f : files.factors) {
    auto layer = adapter->layer(f.module);
    layer->lora_A.copy_(torch::from_blob(f.a.data(), layer->lora_A.sizes(), torch::kFloat32));
    layer->lora_B.copy_(torch::from_blob(f.b.data(), layer->lora_B.sizes(), torch::kFloat32));
  }
  adapter->eval();  // loaded for inference, as PEFT's from_pretrained; train() re-enables dropout
  return adapter;
}

}  // namespace drafteu
