// What both tokenizer kinds share: the id-indexed vocabulary with GGUF token types, added-token
// matching, BOS/EOS, the chat format and the encode/decode skeleton around the BPE core.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/tokenizer/added_tokens.h"
#include "model/tokenizer/chat_template.h"
#include "model/tokenizer/tokenizer.h"

namespace drafteu::tok {

// GGUF token types (llama_token_type).
enum TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

struct CommonSpec {
  std::vector<std::string> tokens;  // the vocabulary's own spelling ("Ġworld", "▁the", "<s>")
  std::vector<int32_t> types;       // TokenType per id
  std::optional<int32_t> bos, unk, pad;
  std::vector<int32_t> eos;  // every end-of-generation id, the primary one first
  bool add_bos = false;      // the file's default; encode() takes an explicit flag
  bool add_eos = false;
  std::string chat_template;  // Jinja text from the file (may be empty)
};

class TokenizerBase : public Tokenizer {
 public:
  std::vector<int32_t> encode(std::string_view text, bool add_bos,
                              bool parse_special) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special) const override;
  bool is_special(int32_t id) const override;
  int32_t vocab_size() const override { return static_cast<int32_t>(common_.tokens.size()); }
  std::optional<int32_t> token_id(std::string_view token_text) const override;
  std::optional<int32_t> bos_id() const override { return common_.bos; }
  std::vector<int32_t> eos_ids() const override { return common_.eos; }
  void set_eos_ids(std::vector<int32_t> ids) override;
  bool add_bos_by_default() const override { return common_.add_bos; }
  bool has_chat_template() const override { return chat_format_ != ChatFormat::None; }
  std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                  bool add_generation_prompt) const override;

  const CommonSpec& common() const { return common_; }
  // The Jinja template to write out: the file's own, else the standard one of the detected format.
  std::string effective_chat_template() const;

 protected:
  explicit TokenizerBase(CommonSpec common);
  // Encodes text between added tokens; `after_added` is true at the start and after an added token.
  virtual void encode_text(std::string_view text, bool after_added,
                           std::vector<int32_t>& out) const = 0;
  void check_id(int32_t id) const;
  const std::string& text_of(int32_t id) const { return common_.tokens[static_cast<size_t>(id)]; }
  int32_t type_of(int32_t id) const { return common_.types[static_cast<size_t>(id)]; }
  void set_chat_format(ChatFormat f) { chat_format_ = f; }

  CommonSpec common_;
  TokenMap token_to_id_;
  AddedTokenMatcher added_;
  ChatFormat chat_format_ = ChatFormat::None;
};

}  // namespace drafteu::tok
