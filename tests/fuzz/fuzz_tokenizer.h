// A small SentencePiece-style vocabulary (special tokens, the 256 byte tokens, a few words) for
// harnesses whose readers encode text: built in code, so no file has to be found at fuzz time.
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "model/tokenizer/tokenizer.h"

namespace drafteu::fuzz {

inline const Tokenizer& byte_tokenizer() {
  static const std::unique_ptr<Tokenizer> tok = [] {
    GgufVocab v;
    v.model = "llama";
    auto add = [&](std::string text, int32_t type, float score) {
      v.tokens.push_back(std::move(text));
      v.token_types.push_back(type);
      v.scores.push_back(score);
    };
    add("<unk>", 2, 0), add("<s>", 3, 0), add("</s>", 3, 0);
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      add(name, 6, 0);
    }
    float score = -1;
    for (const char* w : {"\xE2\x96\x81", "\xE2\x96\x81the", "e", "t", "\xE2\x96\x81t", "he"})
      add(w, 1, score--);
    v.unk_id = 0, v.bos_id = 1, v.eos_id = 2;
    return tokenizer_from_gguf_vocab(v);
  }();
  return *tok;
}

}  // namespace drafteu::fuzz
