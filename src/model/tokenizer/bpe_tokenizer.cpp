#include "model/tokenizer/bpe_tokenizer.h"

#include "model/tokenizer/byte_level.h"
#include "model/tokenizer/merge.h"
#include "model/tokenizer/tokenizer_json_writer.h"
#include "util/error.h"

namespace drafteu::tok {

namespace {
uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}
}  // namespace

BpeTokenizer::BpeTokenizer(CommonSpec common, BpeSpec spec)
    : TokenizerBase(std::move(common)), spec_(std::move(spec)) {
  const size_t n = common_.tokens.size();
  bytes_.resize(n);
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  for (size_t i = 0; i < n; ++i) {
    const std::string& t = common_.tokens[i];
    const int32_t type = common_.types[i];
    if (type == kControl || type == kUserDefined || type == kUnknown) {
      bytes_[i] = t;  // added tokens are stored as plain text
      continue;
    }
    // A token outside the byte-level alphabet stands for its own UTF-8 text.
    bytes_[i] = byte_level_decode(t).value_or(t);
    const auto id = static_cast<int32_t>(i);
    bytes_to_id_.emplace(bytes_[i], id);
    if (bytes_[i].size() == 1 && byte_id_[static_cast<unsigned char>(bytes_[i][0])] < 0)
      byte_id_[static_cast<unsigned char>(bytes_[i][0])] = id;
  }
  merges_.reserve(spec_.merges.size());
  for (size_t r = 0; r < spec_.merges.size(); ++r) {
    const auto& [a, b] = spec_.merges[r];
    auto ia = token_id(a), ib = token_id(b), ic = token_id(a + b);
    const std::string where = cat(spec_.merges_field, "[", r, "] (\"", a, " ", b, "\")");
    if (!ia) fail(where, ": token \"", a, "\" is not in the vocabulary");
    if (!ib) fail(where, ": token \"", b, "\" is not in the vocabulary");
    if (!ic) fail(where, ": merged token \"", a + b, "\" is not in the vocabulary");
    merges_.emplace(pair_key(*ia, *ib), Merge{static_cast<int32_t>(r), *ic});  // first rank wins
  }
  if (!spec_.regex.empty()) splitter_ = std::make_unique<RegexSplitter>(spec_.regex);
  set_chat_format(detect_chat_format(*this, false, common_.chat_template));
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  check_id(id);
  return bytes_[static_cast<size_t>(id)];
}

void BpeTokenizer::encode_text(std::string_view text, bool, std::vector<int32_t>& out) const {
  std::string prefixed;
  if (spec_.add_prefix_space && !text.empty() && text[0] != ' ') {
    prefixed.reserve(text.size() + 1);
    prefixed += ' ';
    prefixed += text;
    text = prefixed;
  }
  if (!splitter_) return encode_word(text, out);
  std::vector<std::string_view> words;
  splitter_->split(text, words);
  for (std::string_view w : words) encode_word(w, out);
}

void BpeTokenizer::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return;
  if (spec_.ignore_merges) {
    if (auto it = bytes_to_id_.find(word); it != bytes_to_id_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (auto it = cache_.find(word); it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<std::pair<int32_t, uint32_t>> init;
  init.reserve(word.size());
  for (char c : word) init.emplace_back(byte_id_[static_cast<unsigned char>(c)], 1);
  std::vector<Symbol> syms = make_symbols(init);
  merge_symbols(syms, [this](const Symbol& l, const Symbol& r) -> std::optional<MergeCandidate> {
    if (l.id < 0 || r.id < 0) return std::nullopt;
    auto it = merges_.find(pair_key(l.id, r.id));
    if (it == merges_.end()) return std::nullopt;
    return MergeCandidate{-static_cast<double>(it->second.rank), it->second.id};
  });
  std::vector<int32_t> ids;
  // A byte missing from the vocabulary is dropped, as HF's BPE does without an unk token.
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next)
    if (syms[static_cast<size_t>(i)].id >= 0) ids.push_back(syms[static_cast<size_t>(i)].id);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_.size() >= kCacheMax) cache_.clear();
  cache_.emplace(std::string(word), std::move(ids));
}

std::string BpeTokenizer::gguf_pre() const {
  if (spec_.regex == kLlama3Regex) return "llama-bpe";
  if (spec_.regex == kGpt2Regex) return "gpt-2";
  fail("to_gguf_vocab: the pre-tokenizer regex has no tokenizer.ggml.pre name: ", spec_.regex);
}

GgufVocab BpeTokenizer::to_gguf_vocab() const {
  GgufVocab v;
  v.model = "gpt2";
  v.pre = gguf_pre();
  v.tokens = common_.tokens;
  v.token_types = common_.types;
  v.merges.reserve(spec_.merges.size());
  for (const auto& [a, b] : spec_.merges) v.merges.push_back(a + " " + b);
  v.bos_id = common_.bos;
  if (!common_.eos.empty()) v.eos_id = common_.eos.front();
  v.unk_id = common_.unk;
  v.pad_id = common_.pad;
  v.add_bos = common_.add_bos;
  v.add_eos = common_.add_eos;
  v.add_space_prefix = false;
  v.chat_template = effective_chat_template();
  return v;
}

void BpeTokenizer::save_hf(const std::filesystem::path& dir) const {
  write_hf_byte_level(dir, *this);
}

}  // namespace drafteu::tok
