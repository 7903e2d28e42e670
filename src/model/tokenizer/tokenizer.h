// The tokenizer interface every model speaks through: encode/decode, special tokens, chat
// template. Implementations: byte-level BPE from a Hugging Face tokenizer.json (Llama 3),
// SentencePiece-style BPE with byte fallback (Llama 2, GGUF "llama" vocabularies).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace drafteu {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"
  std::string content;
};

// A vocabulary in GGUF's terms (tokenizer.ggml.*), the exchange form between GGUF files and
// tokenizers: filled from a GGUF file's metadata when loading, written back when converting.
struct GgufVocab {
  std::string model;  // "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;    // tokenizer.ggml.pre, e.g. "llama-bpe" (may be empty)
  std::vector<std::string> tokens;
  std::vector<float> scores;         // may be empty for gpt2
  std::vector<int32_t> token_types;  // 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte
  std::vector<std::string> merges;   // "a b" pairs, gpt2 only
  std::optional<int32_t> bos_id, eos_id, unk_id, pad_id;
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;  // tokenizer.ggml.add_space_prefix (SentencePiece only)
  std::string chat_template;     // tokenizer.chat_template (Jinja text, may be empty)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // parse_special: text like "<|eot_id|>" maps to its special token instead of plain bytes
  // (non-special added tokens always match). Malformed UTF-8 bytes in `text` do not throw: each
  // becomes a byte token (byte-level BPE) or <0xNN> (SentencePiece), so they round-trip.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_bos,
                                      bool parse_special = true) const = 0;
  // The exact bytes (not sanitised: ids that split a character give malformed UTF-8). Special
  // tokens render as their text unless skip_special. Throws for an id outside the vocabulary.
  virtual std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const = 0;
  // The raw bytes one token stands for (may be part of a UTF-8 character); for streaming.
  virtual std::string token_bytes(int32_t id) const = 0;
  virtual bool is_special(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;
  // By the vocabulary's own spelling: "Ġworld" (byte-level), "▁the" (SentencePiece), "<s>".
  virtual std::optional<int32_t> token_id(std::string_view token_text) const = 0;

  virtual std::optional<int32_t> bos_id() const = 0;
  virtual std::vector<int32_t> eos_ids() const = 0;  // every id that ends generation
  // Replaces the end-of-generation ids, e.g. with generation_config.json's eos_token_id list.
  virtual void set_eos_ids(std::vector<int32_t> ids);
  // Whether the file asks for BOS by default (HF post-processor, GGUF add_bos_token).
  virtual bool add_bos_by_default() const { return false; }
  // SentencePiece-style: encode prepends a space (as "▁"), decode drops a leading space at the
  // start and after special tokens. StreamDecoder follows the same rule.
  virtual bool add_space_prefix() const { return false; }

  // Renders messages in the model's chat format (Llama 3 headers, or Llama 2 [INST]).
  virtual bool has_chat_template() const = 0;
  virtual std::string apply_chat_template(const std::vector<ChatMessage>& messages,
                                          bool add_generation_prompt) const = 0;

  virtual GgufVocab to_gguf_vocab() const = 0;
  // Writes tokenizer.json (+ tokenizer_config.json) that Hugging Face and drafteu both load.
  virtual void save_hf(const std::filesystem::path& dir) const = 0;
};

// From a tokenizer.json file, an HF model directory holding one, or a GgufVocab.
// Beside tokenizer.json, tokenizer_config.json (bos/eos token, chat_template, add_bos_token) and
// generation_config.json (eos_token_id, int or list: it wins over the rest) are read if present.
// Throws drafteu::Error naming the file and field for malformed input.
std::unique_ptr<Tokenizer> load_tokenizer_json(const std::filesystem::path& path);
std::unique_ptr<Tokenizer> tokenizer_from_gguf_vocab(const GgufVocab& vocab);

// Turns token ids into text as they arrive, holding back bytes of an unfinished UTF-8 character.
// Special tokens produce no text; the concatenated output equals decode(ids, true) whenever that
// is valid UTF-8 (malformed bytes come out as U+FFFD).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);  // text now complete (possibly empty)
  std::string flush();           // whatever is left, invalid bytes replaced by U+FFFD

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool first_ = true;
};

}  // namespace drafteu
