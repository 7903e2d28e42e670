// Training checkpoints: out/checkpoints/step-NNNNNNNN/ holds the adapter in PEFT format, the
// exact trainable tensors, the AdamW state and trainer_state.json (step, data cursor, seed,
// metrics, SHA-256 of the other files). A checkpoint is written under a temporary name and renamed
// into place, then "latest" is replaced atomically, so a kill at any moment leaves the previous
// one usable; "latest" may only name a step-NNNNNNNN directory beside it.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <optional>

#include <nlohmann/json.hpp>

#include "family/lora.h"

namespace drafteu::distill {

struct CheckpointState {
  int64_t step = 0;
  nlohmann::json info;  // trainer_state.json
};

void save_checkpoint(const std::filesystem::path& out, int64_t step, const LoraAdapterImpl& adapter,
                     torch::optim::Optimizer& optimizer, const nlohmann::json& info, int64_t keep);

// Reads dir/trainer_state.json and verifies the step (positive, matching the directory name) and
// the SHA-256 it records of every checkpoint file; errors name the file.
CheckpointState read_checkpoint_state(const std::filesystem::path& dir);

// Restores the newest checkpoint into `adapter` and `optimizer`; nullopt when there is none.
std::optional<CheckpointState> load_latest_checkpoint(const std::filesystem::path& out,
                                                      LoraAdapterImpl& adapter,
                                                      torch::optim::Optimizer& optimizer);

}  // namespace drafteu::distill
