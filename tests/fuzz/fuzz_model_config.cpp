// Fuzz target: config.json (LlamaConfig::from_hf_json) and, with it, generation_config.json.
// The input is one JSON text; its "generation" member, when present, is the generation config.
#include "fuzz_support.h"
#include "model/config.h"
#include "util/error.h"
#include "util/json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu;
  try {
    const auto j = parse_json(fuzz::as_text(data, size), "config.json");
    const LlamaConfig c = LlamaConfig::from_hf_json(j, "config.json");
    (void)c.num_parameters();
    (void)c.to_hf_json();
    if (j.is_object() && j.contains("generation"))
      (void)GenerationConfig::from_hf_json(j["generation"], c, "generation_config.json");
  } catch (const Error&) {
  }
  return 0;
}
