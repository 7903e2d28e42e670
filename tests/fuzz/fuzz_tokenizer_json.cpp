// Fuzz target: a tokenizer.json through load_tokenizer_json, then encode/decode of fixed text.
#include "fuzz_support.h"
#include "model/tokenizer/tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu;
  try {
    auto tok = load_tokenizer_json(fuzz::input_file(data, size, "tokenizer.json"));
    auto ids = tok->encode("Hello world! 123 \xC3\xA9t\xC3\xA9 \n\n x\xFF", true);
    (void)tok->decode(ids);
    for (int32_t id = 0; id < tok->vocab_size() && id < 64; ++id) (void)tok->token_bytes(id);
  } catch (const Error&) {
  }
  return 0;
}
