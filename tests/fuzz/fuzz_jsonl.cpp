// Fuzz target: the JSONL readers. The input is one file, read as each of: gen-data samples
// (read_samples, and the resume scan existing_sample_keys, which may cut a torn last line), a
// GSM8K prompt file (read_gsm8k), and `drafteu score` input (read_score_records).
#include <nlohmann/json.hpp>

#include "distill/samples.h"
#include "fuzz_support.h"
#include "fuzz_tokenizer.h"
#include "uncertainty/scoring/score_records.h"
#include "util/error.h"

namespace {

template <typename Fn>
void run(Fn&& fn) {
  try {
    fn();
  } catch (const drafteu::Error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu;
  const auto path = fuzz::input_file(data, size, "samples.jsonl");
  run([&] {
    for (const auto& s : distill::read_samples(path)) (void)distill::sample_to_json(s).dump();
  });
  run([&] { (void)distill::read_gsm8k(path); });
  run([&] {
    const auto& tok = fuzz::byte_tokenizer();
    (void)read_score_records(path.string(), &tok, tok.vocab_size(), 64);
    (void)read_score_records(path.string(), nullptr, 512, 1 << 20);
  });
  run([&] {
    bool dropped = false;
    (void)distill::existing_sample_keys(path, &dropped);  // last: it may truncate the file
  });
  return 0;
}
