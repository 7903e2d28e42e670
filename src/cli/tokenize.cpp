#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "model/checkpoint.h"
#include "util/error.h"

namespace drafteu::cli {

void add_tokenize_commands(CLI::App& app, GlobalOptions&) {
  struct Flags {
    std::string tokenizer, text, ids;
    bool bos = false, skip_special = false;
  };
  auto f = std::make_shared<Flags>();

  auto* enc = app.add_subcommand("tokenize", "Print the token ids of a text as a JSON array");
  enc->add_option("--tokenizer", f->tokenizer, "tokenizer.json, HF model directory or .gguf")
      ->required();
  enc->add_option("--text", f->text, "text to encode")->required();
  enc->add_flag("--bos", f->bos, "prepend the BOS token");
  enc->callback([f] {
    auto tok = load_tokenizer(f->tokenizer);
    std::cout << nlohmann::json(tok->encode(f->text, f->bos)).dump() << "\n";
  });

  auto* dec = app.add_subcommand("detokenize", "Print the text of a JSON array of token ids");
  dec->add_option("--tokenizer", f->tokenizer, "tokenizer.json, HF model directory or .gguf")
      ->required();
  dec->add_option("--ids", f->ids, "JSON array of token ids, e.g. [9906, 1917, 0]")->required();
  dec->add_flag("--skip-special", f->skip_special, "drop special tokens");
  dec->callback([f] {
    auto tok = load_tokenizer(f->tokenizer);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(f->ids);
    } catch (const nlohmann::json::parse_error&) {
      fail("--ids: not a JSON array of integers: ", f->ids);
    }
    if (!j.is_array()) fail("--ids: expected a JSON array of integers");
    std::vector<int32_t> ids;
    for (const auto& v : j) {
      if (!v.is_number_integer()) fail("--ids: element ", v.dump(), " is not an integer");
      auto id = v.get<int64_t>();
      if (id < 0 || id >= tok->vocab_size())
        fail("--ids: id ", id, " is outside the vocabulary (", tok->vocab_size(), " tokens)");
      ids.push_back(static_cast<int32_t>(id));
    }
    std::cout << tok->decode(ids, f->skip_special) << "\n";
  });
}

}  // namespace drafteu::cli
