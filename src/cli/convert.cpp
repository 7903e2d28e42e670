#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "model/checkpoint.h"
#include "util/error.h"

namespace drafteu::cli {

void add_convert_command(CLI::App& app, GlobalOptions&) {
  struct Flags {
    std::string input, output, dtype = "f32";
  };
  auto f = std::make_shared<Flags>();
  auto* cmd =
      app.add_subcommand("convert", "Convert between a GGUF file and an HF model directory");
  cmd->add_option("--input", f->input, "a .gguf file or an HF model directory")->required();
  cmd->add_option("--output", f->output, "a .gguf file or a directory to write")->required();
  cmd->add_option("--dtype", f->dtype, "weight type to write")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}));
  cmd->callback([f] {
    io::DType dt = f->dtype == "bf16"  ? io::DType::BF16
                   : f->dtype == "f16" ? io::DType::F16
                                       : io::DType::F32;
    LoadedModel m = load_model(f->input);
    std::filesystem::path out(f->output);
    if (out.extension() == ".gguf") {
      if (dt == io::DType::BF16) fail("--dtype bf16: write GGUF as f32 or f16");
      save_gguf_model(m, out, dt);
    } else {
      if (dt == io::DType::F16) fail("--dtype f16: write HF safetensors as f32 or bf16");
      save_hf_model(m, out, dt);
    }
    std::cerr << "wrote " << out.string() << " (" << m.config().num_parameters()
              << " parameters)\n";
  });
}

}  // namespace drafteu::cli
