// GGUF <-> GgufVocab: the tokenizer.ggml.* metadata keys of a GGUF file.
#pragma once
#include <map>
#include <string>

#include "model/io/gguf.h"
#include "model/tokenizer/tokenizer.h"

namespace drafteu {

// Reads tokenizer.ggml.{model, pre, tokens, scores, token_type, merges, bos_token_id,
// eos_token_id, unknown_token_id, padding_token_id, add_bos_token, add_eos_token,
// add_space_prefix} and tokenizer.chat_template. Throws drafteu::Error naming the file and key
// when one is missing, mistyped or inconsistent (e.g. scores not matching tokens). Ids stored
// as -1 / UINT32_MAX mean "none".
GgufVocab gguf_vocab_from_file(const io::GgufFile& file);

// The same keys, ready for io::write_gguf (existing entries are replaced).
void add_gguf_vocab_metadata(const GgufVocab& vocab,
                             std::map<std::string, io::GgufValue>& metadata);

}  // namespace drafteu
