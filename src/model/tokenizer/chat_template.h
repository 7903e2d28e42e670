// Chat formats without a Jinja engine: the two templates Llama models use, recognised by their
// special tokens (Llama 3) or by the template text (Llama 2 "[INST]").
#pragma once
#include <string>
#include <vector>

#include "model/tokenizer/tokenizer.h"

namespace drafteu::tok {

enum class ChatFormat { None, Llama3, Llama2 };

// Llama 3 when its header tokens exist; Llama 2 for SentencePiece vocabularies whose template
// mentions [INST].
ChatFormat detect_chat_format(const Tokenizer& tok, bool sentencepiece, const std::string& jinja);

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, const std::string& bos_text,
                        const std::string& eos_text);

// The published Jinja source of a format (written to tokenizer_config.json / GGUF).
std::string standard_chat_template(ChatFormat format);

}  // namespace drafteu::tok
