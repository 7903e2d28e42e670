// load_tokenizer_json: reads a Hugging Face tokenizer.json (BPE model) into a byte-level BPE
// tokenizer (Llama 3) or a SentencePiece-style one (Llama 2: byte_fallback, "▁" normalizer).
#include <algorithm>
#include <cctype>

#include <nlohmann/json.hpp>

#include "model/tokenizer/bpe_tokenizer.h"
#include "model/tokenizer/hf_sidecar.h"
#include "model/tokenizer/pretokenizer.h"
#include "model/tokenizer/spm_tokenizer.h"
#include "util/error.h"
#include "util/file.h"
#include "util/json.h"

namespace drafteu {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {
const std::string kSpace = "\xE2\x96\x81";  // "▁"
constexpr int64_t kMaxVocab = int64_t{1} << 24;

// Parsing context: every error names the file and the field.
struct Reader {
  fs::path file;
  json j;
  tok::HfSidecar side;

  template <typename... Args>
  [[noreturn]] void bad(const std::string& field, const Args&... msg) const {
    fail(file.string(), ": ", field, ": ", msg...);
  }
};

std::string type_of(const json& node) {
  return node.is_object() && node.contains("type") && node["type"].is_string()
             ? node["type"].get<std::string>()
             : "";
}

// The first node of `type` in a component tree (Sequence members included), depth first with
// an explicit stack: the tree's depth is the file's to choose.
const json* find_type(const json& root, const std::string& type) {
  std::vector<const json*> stack{&root};
  while (!stack.empty()) {
    const json* node = stack.back();
    stack.pop_back();
    if (type_of(*node) == type) return node;
    if (!node->is_object() && !node->is_array()) continue;
    const size_t first = stack.size();
    for (const json& child : *node) stack.push_back(&child);
    std::reverse(stack.begin() + static_cast<std::ptrdiff_t>(first), stack.end());  // in order
  }
  return nullptr;
}

// A member of an object, or null when absent (const operator[] on a missing key is undefined).
const json& member(const json& node, const char* key) {
  static const json none;
  if (!node.is_object()) return none;
  auto it = node.find(key);
  return it == node.end() ? none : *it;
}

bool flag(const json& node, const char* key, bool fallback) {
  auto it = node.find(key);
  return it != node.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// Vocabulary + added tokens -> id-indexed names and types (holes become unused "[PADn]").
tok::CommonSpec read_vocab(const Reader& r, bool byte_fallback) {
  if (!r.j.contains("model") || !r.j["model"].is_object())
    r.bad("model", "missing or not an object");
  const json& model = r.j["model"];
  if (model.contains("type") && type_of(model) != "BPE")
    r.bad("model.type", "unsupported model type \"", type_of(model), "\" (only BPE)");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    r.bad("model.vocab", "missing or not an object");
  std::vector<std::pair<std::string, int64_t>> entries;
  for (const auto& [name, id] : model["vocab"].items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (int64_t{1} << 30))
      r.bad("model.vocab[\"" + name + "\"]", "id must be a non-negative integer");
    entries.emplace_back(name, id.get<int64_t>());
  }
  struct Added {
    std::string content;
    int64_t id;
    bool special;
  };
  std::vector<Added> added;
  if (r.j.contains("added_tokens") && !r.j["added_tokens"].is_null()) {
    if (!r.j["added_tokens"].is_array()) r.bad("added_tokens", "not an array");
    size_t i = 0;
    for (const json& a : r.j["added_tokens"]) {
      const std::string field = cat("added_tokens[", i++, "]");
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          a["id"].get<int64_t>() < 0 || a["id"].get<int64_t>() >= (int64_t{1} << 30))
        r.bad(field + ".id", "missing or not a non-negative integer");
      if (!a.contains("content") || !a["content"].is_string())
        r.bad(field + ".content", "missing or not a string");
      added.push_back(
          {a["content"].get<std::string>(), a["id"].get<int64_t>(), flag(a, "special", false)});
    }
  }
  int64_t size = 0;
  for (const auto& e : entries) size = std::max(size, e.second + 1);
  for (const auto& a : added) size = std::max(size, a.id + 1);
  // The largest id sizes every table: bound it by the tokens actually given (holes are padding,
  // a few per cent in real files), so a small file cannot claim a huge vocabulary.
  const auto given = static_cast<int64_t>(entries.size() + added.size());
  if (size > kMaxVocab)
    r.bad("model.vocab", "largest id ", size - 1, " exceeds the limit of ", kMaxVocab, " tokens");
  if (size - given > std::max<int64_t>(given, 1024))
    r.bad("model.vocab", "largest id ", size - 1, " leaves ", size - given, " of ", size,
          " ids unused (only ", given, " tokens are defined)");
  tok::CommonSpec c;
  c.tokens.assign(static_cast<size_t>(size), "");
  c.types.assign(static_cast<size_t>(size), tok::kUnused);
  std::vector<bool> seen(static_cast<size_t>(size), false);
  for (const auto& [name, id] : entries) {
    const auto i = static_cast<size_t>(id);
    if (seen[i])
      r.bad("model.vocab", "id ", id, " is used by both \"", c.tokens[i], "\" and \"", name, "\"");
    seen[i] = true;
    c.tokens[i] = name;
    const bool is_byte =
        byte_fallback && name.size() == 6 && name.rfind("<0x", 0) == 0 && name[5] == '>';
    c.types[i] = is_byte ? tok::kByte : tok::kNormal;
  }
  for (const auto& a : added) {  // an added token may also sit in the vocabulary under its name
    const auto i = static_cast<size_t>(a.id);
    if (seen[i] && c.tokens[i] != a.content)
      r.bad("added_tokens", "id ", a.id, " is \"", a.content, "\" but model.vocab has \"",
            c.tokens[i], "\"");
    seen[i] = true;
    c.tokens[i] = a.content;
    c.types[i] = a.special ? tok::kControl : tok::kUserDefined;
  }
  for (size_t i = 0; i < c.tokens.size(); ++i)
    if (!seen[i]) c.tokens[i] = cat("[PAD", i, "]");
  return c;
}

std::vector<std::pair<std::string, std::string>> read_merges(const Reader& r) {
  const json& model = r.j["model"];
  if (!model.contains("merges") || !model["merges"].is_array())
    r.bad("model.merges", "missing or not an array");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(model["merges"].size());
  size_t i = 0;
  for (const json& m : model["merges"]) {
    const std::string field = cat("model.merges[", i++, "]");
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() ||
          s.find(' ', sp + 1) != std::string::npos)
        r.bad(field, "expected \"a b\", got \"", s, "\"");
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      r.bad(field, "expected \"a b\" or [a, b]");
    }
  }
  return merges;
}

std::optional<int32_t> find_token(const tok::CommonSpec& c, const std::string& name) {
  for (size_t i = 0; i < c.tokens.size(); ++i)
    if (c.tokens[i] == name && c.types[i] != tok::kUnused) return static_cast<int32_t>(i);
  return std::nullopt;
}

// BOS/EOS/UNK/PAD, add_bos and the chat template from the post-processor and the sidecar files.
void read_specials(const Reader& r, tok::CommonSpec& c, std::vector<std::string> default_eos,
                   const std::string& default_bos) {
  auto lookup = [&](const std::optional<std::string>& name,
                    const char* key) -> std::optional<int32_t> {
    if (!name) return std::nullopt;
    auto id = find_token(c, *name);
    if (!id)
      fail(r.side.config_path.string(), ": ", key, ": token \"", *name, "\" is not in ",
           r.file.string());
    return id;
  };
  std::optional<std::string> post_bos;
  if (const json* tp = r.j.contains("post_processor")
                           ? find_type(r.j["post_processor"], "TemplateProcessing")
                           : nullptr) {
    const json& single = tp->value("single", json::array());
    if (single.is_array() && !single.empty() && single[0].contains("SpecialToken"))
      post_bos = single[0]["SpecialToken"].value("id", "");
  }
  c.bos = lookup(r.side.bos_token, "bos_token");
  if (!c.bos && post_bos) c.bos = find_token(c, *post_bos);
  if (!c.bos) c.bos = find_token(c, default_bos);
  c.add_bos = r.side.add_bos.value_or(post_bos.has_value());
  c.add_eos = r.side.add_eos.value_or(false);
  if (auto e = lookup(r.side.eos_token, "eos_token")) c.eos.push_back(*e);
  for (const std::string& name : default_eos)
    if (auto e = find_token(c, name); e && std::find(c.eos.begin(), c.eos.end(), *e) == c.eos.end())
      c.eos.push_back(*e);
  if (r.side.generation_eos) {
    for (int32_t id : *r.side.generation_eos)
      if (id >= static_cast<int32_t>(c.tokens.size()))
        fail(r.side.generation_path.string(), ": eos_token_id: ", id,
             " is outside the vocabulary of ", c.tokens.size());
    c.eos = *r.side.generation_eos;
  }
  if (auto u = lookup(r.side.unk_token, "unk_token")) c.unk = u;
  c.pad = lookup(r.side.pad_token, "pad_token");
  c.chat_template = r.side.chat_template;
}

std::unique_ptr<Tokenizer> load_byte_level(const Reader& r) {
  const json& pre = member(r.j, "pre_tokenizer");
  tok::BpeSpec spec;
  std::string field = "pre_tokenizer";
  const json* split = nullptr;
  const json* byte_level = nullptr;
  if (type_of(pre) == "ByteLevel") {
    byte_level = &pre;
  } else if (type_of(pre) == "Sequence" && pre.contains("pretokenizers") &&
             pre["pretokenizers"].is_array() && pre["pretokenizers"].size() == 2 &&
             type_of(pre["pretokenizers"][0]) == "Split" &&
             type_of(pre["pretokenizers"][1]) == "ByteLevel") {
    split = &pre["pretokenizers"][0];
    byte_level = &pre["pretokenizers"][1];
    field = "pre_tokenizer.pretokenizers[0]";
  } else {
    r.bad("pre_tokenizer",
          "unsupported for byte-level BPE (expected ByteLevel or Sequence[Split, ByteLevel])");
  }
  const bool use_regex = flag(*byte_level, "use_regex", true);
  spec.add_prefix_space = flag(*byte_level, "add_prefix_space", false);
  if (split) {
    if (use_regex)
      r.bad("pre_tokenizer.pretokenizers[1].use_regex",
            "a Split followed by a regex ByteLevel is unsupported");
    if (split->value("behavior", "") != "Isolated")
      r.bad(field + ".behavior", "unsupported (only Isolated)");
    if (flag(*split, "invert", false)) r.bad(field + ".invert", "unsupported (only false)");
    const json& pat = split->value("pattern", json());
    if (pat.contains("Regex") && pat["Regex"].is_string()) {
      spec.regex = pat["Regex"].get<std::string>();
      field += ".pattern.Regex";
    } else if (pat.contains("String") && pat["String"].is_string()) {
      for (char ch : pat["String"].get<std::string>()) {  // a literal: escape ASCII punctuation
        if (static_cast<unsigned char>(ch) < 0x80 && !std::isalnum(static_cast<unsigned char>(ch)))
          spec.regex += '\\';
        spec.regex += ch;
      }
      field += ".pattern.String";
    } else {
      r.bad(field + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    try {
      tok::RegexSplitter check(spec.regex);
    } catch (const Error& e) {
      r.bad(field, e.what());
    }
  } else if (use_regex) {
    spec.regex = std::string(tok::kGpt2Regex);
  }
  if (r.j.contains("normalizer") && !r.j["normalizer"].is_null())
    r.bad("normalizer", "unsupported for byte-level BPE (expected null)");
  tok::CommonSpec c = read_vocab(r, false);
  spec.merges = read_merges(r);
  spec.merges_field = r.file.string() + ": model.merges";
  spec.ignore_merges = flag(r.j["model"], "ignore_merges", false);
  read_specials(r, c, {"<|end_of_text|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>"},
                "<|begin_of_text|>");
  return std::make_unique<tok::BpeTokenizer>(std::move(c), std::move(spec));
}

// Whether a normalizer or Metaspace pre-tokenizer prepends "▁"; rejects other normalizers.
bool read_space_prefix(const Reader& r) {
  bool prefix = false;
  const json norm = r.j.value("normalizer", json());
  if (!norm.is_null()) {
    const json members = type_of(norm) == "Sequence" ? norm.value("normalizers", json::array())
                                                     : json::array({norm});
    for (const json& n : members) {
      const std::string t = type_of(n);
      if (t == "Prepend" && n.value("prepend", "") == kSpace)
        prefix = true;
      else if (t == "Replace" && n.value("content", "") == kSpace)
        continue;
      else
        r.bad("normalizer", "unsupported for SentencePiece-style BPE: \"", t,
              "\" (expected Prepend \"▁\" and Replace \" \" -> \"▁\")");
    }
  }
  const json pre = r.j.value("pre_tokenizer", json());
  if (const json* meta = find_type(pre, "Metaspace")) {
    const std::string scheme =
        meta->value("prepend_scheme", flag(*meta, "add_prefix_space", true) ? "always" : "never");
    prefix = prefix || scheme == "first" || scheme == "always";
  } else if (!pre.is_null()) {
    r.bad("pre_tokenizer", "unsupported for SentencePiece-style BPE: \"", type_of(pre),
          "\" (expected null or Metaspace)");
  }
  return prefix;
}

std::unique_ptr<Tokenizer> load_sentencepiece(const Reader& r) {
  tok::SpmSpec spec;
  spec.add_space_prefix = read_space_prefix(r);
  tok::CommonSpec c = read_vocab(r, flag(r.j["model"], "byte_fallback", false));
  spec.use_merges = true;
  spec.merges = read_merges(r);
  spec.merges_field = r.file.string() + ": model.merges";
  const json& unk = r.j["model"].value("unk_token", json());
  if (unk.is_string()) {
    c.unk = find_token(c, unk.get<std::string>());
    if (!c.unk)
      r.bad("model.unk_token", "\"", unk.get<std::string>(), "\" is not in the vocabulary");
    c.types[static_cast<size_t>(*c.unk)] = tok::kUnknown;
  }
  read_specials(r, c, {"</s>"}, "<s>");
  return std::make_unique<tok::SpmTokenizer>(std::move(c), std::move(spec));
}
}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer_json(const fs::path& path) {
  Reader r;
  r.file = fs::is_directory(path) ? path / "tokenizer.json" : path;
  if (!fs::is_regular_file(r.file)) fail(r.file.string(), ": no such file");
  r.j = parse_json(read_text_file(r.file), r.file.string());
  if (!r.j.is_object()) fail(r.file.string(), ": expected a JSON object");
  r.side = tok::read_hf_sidecar(r.file.parent_path());
  if (!r.j.contains("model") || !r.j["model"].is_object())
    r.bad("model", "missing or not an object");
  const json& model = r.j["model"];
  if (!model.contains("vocab") || !model["vocab"].is_object())
    r.bad("model.vocab", "missing or not an object");
  auto component = [&](const char* key) -> const json& { return member(r.j, key); };
  const bool spm = flag(model, "byte_fallback", false) ||
                   find_type(component("decoder"), "ByteFallback") ||
                   find_type(component("pre_tokenizer"), "Metaspace") ||
                   find_type(component("normalizer"), "Prepend");
  const bool byte_level = find_type(component("pre_tokenizer"), "ByteLevel") ||
                          find_type(component("decoder"), "ByteLevel");
  try {
    if (spm) return load_sentencepiece(r);
    if (byte_level) return load_byte_level(r);
  } catch (const nlohmann::json::exception& e) {
    fail(r.file.string(), ": unexpected structure: ", e.what());
  }
  fail(r.file.string(),
       ": pre_tokenizer/decoder: neither byte-level BPE (ByteLevel) nor SentencePiece-style "
       "(byte_fallback, \"▁\")");
}

}  // namespace drafteu
