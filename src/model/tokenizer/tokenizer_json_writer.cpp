#include "model/tokenizer/tokenizer_json_writer.h"

#include <nlohmann/json.hpp>

#include "model/tokenizer/bpe_tokenizer.h"
#include "model/tokenizer/spm_tokenizer.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::tok {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {
std::string quote(const std::string& s) {
  return nlohmann::json(s).dump();
}

bool is_added(int32_t type) {
  return type == kControl || type == kUnknown || type == kUserDefined;
}

ojson added_tokens(const CommonSpec& c) {
  ojson list = ojson::array();
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    if (!is_added(c.types[i])) continue;
    list.push_back({{"id", i},
                    {"content", c.tokens[i]},
                    {"single_word", false},
                    {"lstrip", false},
                    {"rstrip", false},
                    {"normalized", false},
                    {"special", c.types[i] != kUserDefined}});
  }
  return list;
}

ojson template_processing(const CommonSpec& c) {
  auto seq = [](const char* id, int type) {
    return ojson{{"Sequence", {{"id", id}, {"type_id", type}}}};
  };
  ojson single = ojson::array(), pair = ojson::array(), special = ojson::object();
  if (c.add_bos && c.bos) {
    const std::string& bos = c.tokens[static_cast<size_t>(*c.bos)];
    const ojson tok = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
    const ojson tok1 = {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}};
    single = {tok, seq("A", 0)};
    pair = {tok, seq("A", 0), tok1, seq("B", 1)};
    special[bos] = {{"id", bos}, {"ids", {*c.bos}}, {"tokens", {bos}}};
  } else {
    single = {seq("A", 0)};
    pair = {seq("A", 0), seq("B", 1)};
  }
  return {{"type", "TemplateProcessing"},
          {"single", single},
          {"pair", pair},
          {"special_tokens", special}};
}

// The model object, with vocab and merges written by hand: they hold ~10^5 entries and
// ordered_json's linear key lookup would make building them quadratic.
std::string model_json(const ojson& head, const CommonSpec& c, bool include_added, bool skip_unused,
                       const std::vector<std::pair<std::string, std::string>>& merges) {
  std::string out = head.dump(-1);
  out.pop_back();  // reopen the object
  out += ",\n    \"vocab\": {";
  bool first = true;
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    if ((!include_added && is_added(c.types[i])) || (skip_unused && c.types[i] == kUnused))
      continue;
    out += first ? "\n      " : ",\n      ";
    out += quote(c.tokens[i]) + ": " + std::to_string(i);
    first = false;
  }
  out += "\n    },\n    \"merges\": [";
  // "a b" strings read everywhere; a token holding a space needs the newer [a, b] form.
  for (size_t i = 0; i < merges.size(); ++i) {
    const auto& [a, b] = merges[i];
    out += i ? ",\n      " : "\n      ";
    if (a.find(' ') == std::string::npos && b.find(' ') == std::string::npos) {
      out += quote(a + ' ' + b);
    } else {
      out += '[';
      out += quote(a);
      out += ", ";
      out += quote(b);
      out += ']';
    }
  }
  out += "\n    ]\n  }";
  return out;
}

std::string tokenizer_json(const CommonSpec& c, const ojson& rest, const std::string& model) {
  ojson top = {{"version", "1.0"},
               {"truncation", nullptr},
               {"padding", nullptr},
               {"added_tokens", added_tokens(c)}};
  top.update(rest);
  std::string out = top.dump(2);
  out.pop_back();  // the closing brace
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out + ",\n  \"model\": " + model + "\n}\n";
}

void write_config(const fs::path& dir, const CommonSpec& c, const std::string& chat_template,
                  const char* cls) {
  ojson cfg = {{"add_bos_token", c.add_bos}, {"add_eos_token", c.add_eos}};
  auto name = [&](const std::optional<int32_t>& id) -> ojson {
    return id ? ojson(c.tokens[static_cast<size_t>(*id)]) : ojson(nullptr);
  };
  cfg["bos_token"] = name(c.bos);
  cfg["eos_token"] = c.eos.empty() ? ojson(nullptr) : name(c.eos.front());
  if (c.unk) cfg["unk_token"] = name(c.unk);
  if (c.pad) cfg["pad_token"] = name(c.pad);
  if (!chat_template.empty()) cfg["chat_template"] = chat_template;
  cfg["clean_up_tokenization_spaces"] = false;
  cfg["tokenizer_class"] = cls;
  write_file_atomic(dir / "tokenizer_config.json", cfg.dump(2) + "\n");
}

void write_files(const fs::path& dir, const std::string& json, const CommonSpec& c,
                 const std::string& tmpl, const char* cls) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("save_hf: cannot create directory ", dir.string(), ": ", ec.message());
  write_file_atomic(dir / "tokenizer.json", json);
  write_config(dir, c, tmpl, cls);
}
}  // namespace

void write_hf_byte_level(const fs::path& dir, const BpeTokenizer& tok) {
  const CommonSpec& c = tok.common();
  const BpeSpec& s = tok.spec();
  const ojson byte_level = {{"type", "ByteLevel"},
                            {"add_prefix_space", s.add_prefix_space},
                            {"trim_offsets", true},
                            {"use_regex", false}};
  ojson pre = byte_level;
  if (!s.regex.empty()) {
    const ojson split = {{"type", "Split"},
                         {"pattern", {{"Regex", s.regex}}},
                         {"behavior", "Isolated"},
                         {"invert", false}};
    pre = {{"type", "Sequence"}, {"pretokenizers", {split, byte_level}}};
  }
  const ojson post = c.add_bos ? template_processing(c)
                               : ojson{{"type", "ByteLevel"},
                                       {"add_prefix_space", true},
                                       {"trim_offsets", false},
                                       {"use_regex", true}};
  const ojson rest = {{"normalizer", nullptr},
                      {"pre_tokenizer", pre},
                      {"post_processor", post},
                      {"decoder",
                       {{"type", "ByteLevel"},
                        {"add_prefix_space", true},
                        {"trim_offsets", true},
                        {"use_regex", true}}}};
  const ojson head = {
      {"type", "BPE"},
      {"dropout", nullptr},
      {"unk_token", c.unk ? ojson(c.tokens[static_cast<size_t>(*c.unk)]) : ojson(nullptr)},
      {"continuing_subword_prefix", nullptr},
      {"end_of_word_suffix", nullptr},
      {"fuse_unk", false},
      {"byte_fallback", false},
      {"ignore_merges", s.ignore_merges}};
  const std::string model = model_json(head, c, false, true, s.merges);
  write_files(dir, tokenizer_json(c, rest, model), c, tok.effective_chat_template(),
              "PreTrainedTokenizerFast");
}

void write_hf_spm(const fs::path& dir, const SpmTokenizer& tok) {
  const CommonSpec& c = tok.common();
  const SpmSpec& s = tok.spec();
  const std::string space = "\xE2\x96\x81";
  const ojson replace = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", space}};
  const ojson normalizer =
      s.add_space_prefix
          ? ojson{{"type", "Sequence"},
                  {"normalizers", {{{"type", "Prepend"}, {"prepend", space}}, replace}}}
          : replace;
  ojson decoders = {{{"type", "Replace"}, {"pattern", {{"String", space}}}, {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}}};
  if (s.add_space_prefix)
    decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  const ojson rest = {{"normalizer", normalizer},
                      {"pre_tokenizer", nullptr},
                      {"post_processor", template_processing(c)},
                      {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}}};
  const ojson head = {
      {"type", "BPE"},
      {"dropout", nullptr},
      {"unk_token", c.unk ? ojson(c.tokens[static_cast<size_t>(*c.unk)]) : ojson(nullptr)},
      {"continuing_subword_prefix", nullptr},
      {"end_of_word_suffix", nullptr},
      {"fuse_unk", true},
      {"byte_fallback", true},
      {"ignore_merges", false}};
  const std::string model = model_json(head, c, true, false, tok.hf_merges());
  write_files(dir, tokenizer_json(c, rest, model), c, tok.effective_chat_template(),
              "LlamaTokenizerFast");
}

}  // namespace drafteu::tok
