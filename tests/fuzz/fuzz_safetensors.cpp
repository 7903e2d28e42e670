// Fuzz target: one .safetensors file through SafetensorsFile, then every tensor read back.
#include "fuzz_support.h"
#include "model/io/dtype.h"
#include "model/io/safetensors.h"
#include "util/error.h"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu;
  try {
    io::SafetensorsFile f(fuzz::input_file(data, size, "model.safetensors"));
    for (const auto& t : f.tensors()) {
      const int64_t n = t.numel();
      if (n > 0 && n <= (1 << 16)) {  // non-float dtypes throw drafteu::Error
        std::vector<float> out(static_cast<size_t>(n));
        io::convert_to_f32(t.dtype, t.data, out.data(), out.size());
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
