// SentencePiece-style BPE with byte fallback (Llama 2, TinyLlama, GGUF "llama" vocabularies):
// spaces become "▁", a "▁" is prepended, adjacent symbols merge by the score of the merged piece
// (llama.cpp's llm_tokenizer_spm) or, for HF tokenizer.json files, by merge rank; characters
// outside the vocabulary fall back to <0xNN> byte tokens.
#pragma once
#include <filesystem>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/tokenizer/tokenizer_base.h"

namespace drafteu::tok {

struct SpmSpec {
  std::vector<float> scores;  // score mode: one per token
  bool use_merges = false;    // rank mode (HF tokenizer.json): merge by `merges` order instead
  std::vector<std::pair<std::string, std::string>> merges;
  std::string merges_field;  // names the source in errors
  bool add_space_prefix = true;
};

class SpmTokenizer : public TokenizerBase {
 public:
  SpmTokenizer(CommonSpec common, SpmSpec spec);

  std::string token_bytes(int32_t id) const override;
  bool add_space_prefix() const override { return spec_.add_space_prefix; }
  GgufVocab to_gguf_vocab() const override;
  void save_hf(const std::filesystem::path& dir) const override;

  const SpmSpec& spec() const { return spec_; }
  // Rank-ordered merges: the file's in rank mode, else derived from the scores as HF's
  // SentencePiece converter does (every split of a piece into two tokens, best score first).
  std::vector<std::pair<std::string, std::string>> hf_merges() const;

 protected:
  void encode_text(std::string_view text, bool after_added,
                   std::vector<int32_t>& out) const override;

 private:
  bool mergeable(int32_t id) const;
  std::vector<float> gguf_scores() const;
  struct Merge {
    int32_t rank, id;
  };

  SpmSpec spec_;
  TokenMap pieces_;  // mergeable pieces (normal and user-defined tokens) -> id
  int32_t byte_id_[256];
  std::unordered_map<uint64_t, Merge> merges_;  // rank mode
};

}  // namespace drafteu::tok
