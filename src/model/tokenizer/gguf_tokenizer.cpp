// tokenizer_from_gguf_vocab: GGUF "llama" (SentencePiece-style) and "gpt2" (byte-level BPE).
#include <algorithm>

#include "model/tokenizer/bpe_tokenizer.h"
#include "model/tokenizer/pretokenizer.h"
#include "model/tokenizer/spm_tokenizer.h"
#include "util/error.h"

namespace drafteu {

namespace {
tok::CommonSpec common_from(const GgufVocab& v) {
  tok::CommonSpec c;
  c.tokens = v.tokens;
  c.types = v.token_types;
  if (c.types.empty()) {  // old files: infer what the ids tell
    c.types.assign(c.tokens.size(), tok::kNormal);
    for (auto id : {v.bos_id, v.eos_id})
      if (id) c.types[static_cast<size_t>(*id)] = tok::kControl;
    if (v.unk_id) c.types[static_cast<size_t>(*v.unk_id)] = tok::kUnknown;
    if (v.model == "llama")
      for (size_t i = 0; i < c.tokens.size(); ++i)
        if (c.tokens[i].size() == 6 && c.tokens[i].rfind("<0x", 0) == 0) c.types[i] = tok::kByte;
  }
  if (c.types.size() != c.tokens.size())
    fail("GGUF vocabulary: ", c.types.size(), " token types for ", c.tokens.size(), " tokens");
  c.bos = v.bos_id;
  c.unk = v.unk_id;
  c.pad = v.pad_id;
  if (v.eos_id) c.eos.push_back(*v.eos_id);
  c.add_bos = v.add_bos;
  c.add_eos = v.add_eos;
  c.chat_template = v.chat_template;
  return c;
}

std::string regex_for_pre(const std::string& pre) {
  if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3")
    return std::string(tok::kLlama3Regex);
  if (pre.empty() || pre == "default" || pre == "gpt-2" || pre == "gpt2")
    return std::string(tok::kGpt2Regex);
  fail("GGUF vocabulary: tokenizer.ggml.pre \"", pre,
       "\" is not supported (known: llama-bpe, gpt-2, default)");
}
}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_gguf_vocab(const GgufVocab& v) {
  tok::CommonSpec c = common_from(v);
  if (v.model == "llama") {
    tok::SpmSpec spec;
    spec.scores = v.scores;
    spec.add_space_prefix = v.add_space_prefix;
    return std::make_unique<tok::SpmTokenizer>(std::move(c), std::move(spec));
  }
  if (v.model == "gpt2") {
    tok::BpeSpec spec;
    spec.regex = regex_for_pre(v.pre);
    spec.ignore_merges = spec.regex == tok::kLlama3Regex;  // llama.cpp does so for llama-bpe
    spec.merges_field = "GGUF vocabulary: tokenizer.ggml.merges";
    spec.merges.reserve(v.merges.size());
    for (size_t i = 0; i < v.merges.size(); ++i) {
      const std::string& m = v.merges[i];
      const size_t sp = m.find(' ', 1);
      if (sp == std::string::npos || sp + 1 >= m.size())
        fail("GGUF vocabulary: tokenizer.ggml.merges[", i, "] is \"", m, "\", expected \"a b\"");
      spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
    }
    // llama.cpp also ends generation at these when present (Llama 3 base vs instruct).
    for (const char* name : {"<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"}) {
      auto it = std::find(c.tokens.begin(), c.tokens.end(), name);
      const auto id = static_cast<int32_t>(it - c.tokens.begin());
      if (it != c.tokens.end() && c.types[static_cast<size_t>(id)] == tok::kControl &&
          std::find(c.eos.begin(), c.eos.end(), id) == c.eos.end())
        c.eos.push_back(id);
    }
    return std::make_unique<tok::BpeTokenizer>(std::move(c), std::move(spec));
  }
  fail("GGUF vocabulary: tokenizer.ggml.model \"", v.model,
       "\" is not supported (known: llama, gpt2)");
}

}  // namespace drafteu
