// Byte-level BPE (GPT-2 / Llama 3): regex pre-tokenization, bytes mapped to printable
// characters, merges applied by rank, and a cache for words seen before.
#pragma once
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "model/tokenizer/pretokenizer.h"
#include "model/tokenizer/tokenizer_base.h"

namespace drafteu::tok {

struct BpeSpec {
  std::vector<std::pair<std::string, std::string>> merges;  // by rank, in the vocabulary's spelling
  std::string merges_field;    // names the source in errors, e.g. "tokenizer.json: model.merges"
  std::string regex;           // the Split pattern; empty: the whole text is one word
  bool ignore_merges = false;  // a word that is itself a token is emitted whole (Llama 3)
  bool add_prefix_space = false;
};

class BpeTokenizer : public TokenizerBase {
 public:
  BpeTokenizer(CommonSpec common, BpeSpec spec);

  std::string token_bytes(int32_t id) const override;
  GgufVocab to_gguf_vocab() const override;
  void save_hf(const std::filesystem::path& dir) const override;

  const BpeSpec& spec() const { return spec_; }
  // tokenizer.ggml.pre for this tokenizer's regex; throws if no GGUF name exists for it.
  std::string gguf_pre() const;

 protected:
  void encode_text(std::string_view text, bool after_added,
                   std::vector<int32_t>& out) const override;

 private:
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;
  struct Merge {
    int32_t rank, id;
  };

  BpeSpec spec_;
  std::vector<std::string> bytes_;  // raw bytes of each id
  TokenMap bytes_to_id_;            // raw bytes -> id, vocabulary (not added) tokens
  int32_t byte_id_[256];
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> merge
  std::unique_ptr<RegexSplitter> splitter_;

  static constexpr size_t kCacheMax = 1 << 18;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>> cache_;
};

}  // namespace drafteu::tok
