// The files next to tokenizer.json that complete it: tokenizer_config.json (special token names,
// add_bos_token, chat_template) and generation_config.json (eos_token_id, int or list).
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace drafteu::tok {

struct HfSidecar {
  std::optional<std::string> bos_token, eos_token, unk_token, pad_token;
  std::optional<bool> add_bos, add_eos;
  std::string chat_template;
  std::optional<std::vector<int32_t>> generation_eos;  // from generation_config.json
  std::filesystem::path config_path, generation_path;  // for error messages
};

// Reads whichever of the two files exist in `dir`; throws drafteu::Error naming file and field.
HfSidecar read_hf_sidecar(const std::filesystem::path& dir);

}  // namespace drafteu::tok
