// LoRA adapters in Hugging Face PEFT's on-disk format, so adapters move between this runtime and
// PEFT both ways: adapter_config.json (LoraConfig.to_dict()) and adapter_model.safetensors with
// PEFT's tensor names, "base_model.model.<module>.lora_A.weight" / ".lora_B.weight".
#pragma once
#include <filesystem>
#include <string>

#include "family/lora.h"
#include "family/peft_format.h"
#include "model/llama.h"

namespace drafteu {

// Writes dir/adapter_config.json and dir/adapter_model.safetensors (each atomically; creates dir).
void save_peft_adapter(const LoraAdapterImpl& adapter, const std::filesystem::path& dir);

// Reads an adapter saved by PEFT's save_pretrained (or save_peft_adapter) for `model`; not
// attached. The tensors present decide which modules are adapted; each must be a linear of the
// model matched by target_modules, with both factors of the configured rank and right shapes.
// Returned in eval mode (no dropout).
LoraAdapter load_peft_adapter(const std::filesystem::path& dir, LlamaForCausalLMImpl& model);

}  // namespace drafteu
