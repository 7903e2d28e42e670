// Fuzz target: the experiment config (`drafteu experiment --config FILE`): the file read as
// load_experiment_config does, overlaid on each preset, then validated (paths are checked only
// when the config names real models; missing ones are errors).
#include "eval/experiment_config.h"
#include "fuzz_support.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu;
  const auto path = fuzz::input_file(data, size, "experiment.json");
  for (const char* preset : {"", "tiny", "full"}) {
    try {
      const auto c = eval::load_experiment_config(preset, path);
      (void)c.json.dump();
      (void)c.testbed.options().key();
      eval::validate_experiment_config(c, path.string());
    } catch (const Error&) {
    }
  }
  return 0;
}
