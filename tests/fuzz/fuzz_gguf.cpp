// Fuzz target: one GGUF file through GgufFile, its typed getters, and the GGUF vocabulary into a
// tokenizer that then encodes and decodes a little text.
#include "fuzz_support.h"
#include "model/io/gguf.h"
#include "model/tokenizer/gguf_vocab.h"
#include "model/tokenizer/tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu;
  try {
    io::GgufFile g(fuzz::input_file(data, size, "model.gguf"));
    for (const auto& [key, value] : g.metadata()) {
      (void)g.find_int(key).has_value();
    }
    auto tok = tokenizer_from_gguf_vocab(gguf_vocab_from_file(g));
    auto ids = tok->encode("Once upon a time, \xE2\x96\x81 x\xFF!", true);
    (void)tok->decode(ids);
  } catch (const Error&) {
  }
  return 0;
}
