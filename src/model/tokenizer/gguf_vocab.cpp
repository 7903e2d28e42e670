#include "model/tokenizer/gguf_vocab.h"

#include "util/error.h"

namespace drafteu {

namespace {
std::optional<int32_t> read_id(const io::GgufFile& f, const char* key, size_t n_tokens) {
  const std::optional<int64_t> v = f.find_int(key);
  if (!v || *v < 0 || *v == 0xFFFFFFFF) return std::nullopt;  // llama.cpp writes -1 as "none"
  if (static_cast<uint64_t>(*v) >= n_tokens)
    fail(f.path().string(), ": GGUF key '", key, "' is ", *v, ", outside the vocabulary of ",
         n_tokens);
  return static_cast<int32_t>(*v);
}

template <typename T>
void check_len(const io::GgufFile& f, const char* key, const std::vector<T>& v, size_t n) {
  if (!v.empty() && v.size() != n)
    fail(f.path().string(), ": GGUF key '", key, "' has ", v.size(), " entries for ", n, " tokens");
}

io::GgufValue str(std::string s) {
  return {io::GgufType::STRING, std::move(s), {}, {}};
}
io::GgufValue u32(int32_t v) {
  return {io::GgufType::U32, static_cast<uint64_t>(v), {}, {}};
}
io::GgufValue boolean(bool b) {
  return {io::GgufType::BOOL, b, {}, {}};
}
}  // namespace

GgufVocab gguf_vocab_from_file(const io::GgufFile& f) {
  GgufVocab v;
  v.model = f.get_string("tokenizer.ggml.model");
  if (f.has("tokenizer.ggml.pre")) v.pre = f.get_string("tokenizer.ggml.pre");
  v.tokens = f.get_string_array("tokenizer.ggml.tokens");
  const size_t n = v.tokens.size();
  if (n == 0) fail(f.path().string(), ": GGUF key 'tokenizer.ggml.tokens' is empty");
  if (f.has("tokenizer.ggml.scores")) {
    for (double s : f.get_float_array("tokenizer.ggml.scores"))
      v.scores.push_back(static_cast<float>(s));
    check_len(f, "tokenizer.ggml.scores", v.scores, n);
  }
  if (f.has("tokenizer.ggml.token_type")) {
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type"))
      v.token_types.push_back(static_cast<int32_t>(t));
    check_len(f, "tokenizer.ggml.token_type", v.token_types, n);
  }
  if (f.has("tokenizer.ggml.merges")) v.merges = f.get_string_array("tokenizer.ggml.merges");
  v.bos_id = read_id(f, "tokenizer.ggml.bos_token_id", n);
  v.eos_id = read_id(f, "tokenizer.ggml.eos_token_id", n);
  v.unk_id = read_id(f, "tokenizer.ggml.unknown_token_id", n);
  v.pad_id = read_id(f, "tokenizer.ggml.padding_token_id", n);
  if (f.has("tokenizer.ggml.add_bos_token"))
    v.add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  else
    v.add_bos = v.model == "llama";  // llama.cpp's default per vocabulary kind
  if (f.has("tokenizer.ggml.add_eos_token")) v.add_eos = f.get_bool("tokenizer.ggml.add_eos_token");
  if (f.has("tokenizer.ggml.add_space_prefix"))
    v.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix");
  if (f.has("tokenizer.chat_template")) v.chat_template = f.get_string("tokenizer.chat_template");
  if (v.model == "llama" && v.scores.empty())
    fail(f.path().string(),
         ": GGUF key 'tokenizer.ggml.scores' is required for a \"llama\" vocabulary");
  if (v.model == "gpt2" && !f.has("tokenizer.ggml.merges"))
    fail(f.path().string(),
         ": GGUF key 'tokenizer.ggml.merges' is required for a \"gpt2\" vocabulary");
  return v;
}

void add_gguf_vocab_metadata(const GgufVocab& v, std::map<std::string, io::GgufValue>& md) {
  md["tokenizer.ggml.model"] = str(v.model);
  if (!v.pre.empty()) md["tokenizer.ggml.pre"] = str(v.pre);
  auto array = [](io::GgufType elem) {
    io::GgufValue a;
    a.type = io::GgufType::ARRAY;
    a.elem_type = elem;
    return a;
  };
  io::GgufValue tokens = array(io::GgufType::STRING);
  for (const std::string& t : v.tokens) tokens.array.emplace_back(t);
  md["tokenizer.ggml.tokens"] = std::move(tokens);
  if (!v.scores.empty()) {
    io::GgufValue scores = array(io::GgufType::F32);
    for (float s : v.scores) scores.array.emplace_back(static_cast<double>(s));
    md["tokenizer.ggml.scores"] = std::move(scores);
  }
  if (!v.token_types.empty()) {
    io::GgufValue types = array(io::GgufType::I32);
    for (int32_t t : v.token_types) types.array.emplace_back(static_cast<int64_t>(t));
    md["tokenizer.ggml.token_type"] = std::move(types);
  }
  if (!v.merges.empty()) {
    io::GgufValue merges = array(io::GgufType::STRING);
    for (const std::string& m : v.merges) merges.array.emplace_back(m);
    md["tokenizer.ggml.merges"] = std::move(merges);
  }
  if (v.bos_id) md["tokenizer.ggml.bos_token_id"] = u32(*v.bos_id);
  if (v.eos_id) md["tokenizer.ggml.eos_token_id"] = u32(*v.eos_id);
  if (v.unk_id) md["tokenizer.ggml.unknown_token_id"] = u32(*v.unk_id);
  if (v.pad_id) md["tokenizer.ggml.padding_token_id"] = u32(*v.pad_id);
  md["tokenizer.ggml.add_bos_token"] = boolean(v.add_bos);
  md["tokenizer.ggml.add_eos_token"] = boolean(v.add_eos);
  if (v.model == "llama") md["tokenizer.ggml.add_space_prefix"] = boolean(v.add_space_prefix);
  if (!v.chat_template.empty()) md["tokenizer.chat_template"] = str(v.chat_template);
}

}  // namespace drafteu
