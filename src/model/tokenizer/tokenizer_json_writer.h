// Writes a tokenizer as Hugging Face files (tokenizer.json + tokenizer_config.json) that both HF
// and load_tokenizer_json read back: byte-level BPE as Llama 3 ships it, SentencePiece-style
// vocabularies in HF's Llama 2 form (BPE with byte_fallback).
#pragma once
#include <filesystem>

namespace drafteu::tok {

class BpeTokenizer;
class SpmTokenizer;

void write_hf_byte_level(const std::filesystem::path& dir, const BpeTokenizer& tok);
void write_hf_spm(const std::filesystem::path& dir, const SpmTokenizer& tok);

}  // namespace drafteu::tok
