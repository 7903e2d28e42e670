#include "model/tokenizer/spm_tokenizer.h"

#include <algorithm>
#include <cstdio>

#include "model/tokenizer/merge.h"
#include "model/tokenizer/tokenizer_json_writer.h"
#include "model/tokenizer/utf8.h"
#include "util/error.h"

namespace drafteu::tok {

namespace {
constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581 "▁"

uint64_t spm_pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// "<0x4A>" -> 0x4A, or -1.
int byte_token_value(const std::string& t) {
  unsigned v = 0;
  char tail = 0;
  if (t.size() != 6 || std::sscanf(t.c_str(), "<0x%2X%c", &v, &tail) != 2 || tail != '>') return -1;
  return static_cast<int>(v);
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (s.substr(i, from.size()) == from) {
      out += to;
      i += from.size();
    } else {
      out += s[i++];
    }
  }
  return out;
}
}  // namespace

SpmTokenizer::SpmTokenizer(CommonSpec common, SpmSpec spec)
    : TokenizerBase(std::move(common)), spec_(std::move(spec)) {
  const size_t n = common_.tokens.size();
  if (!spec_.use_merges && spec_.scores.size() != n)
    fail("SentencePiece vocabulary: ", spec_.scores.size(), " scores for ", n, " tokens");
  std::fill(std::begin(byte_id_), std::end(byte_id_), -1);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    if (mergeable(id)) pieces_.emplace(common_.tokens[i], id);
    if (common_.types[i] == kByte) {
      const int b = byte_token_value(common_.tokens[i]);
      if (b < 0)
        fail("SentencePiece vocabulary: byte token ", i, " is \"", common_.tokens[i],
             "\", not <0xNN>");
      if (byte_id_[b] < 0) byte_id_[b] = id;
    }
  }
  if (spec_.use_merges) {
    merges_.reserve(spec_.merges.size());
    for (size_t r = 0; r < spec_.merges.size(); ++r) {
      const auto& [a, b] = spec_.merges[r];
      auto ia = token_id(a), ib = token_id(b), ic = token_id(a + b);
      const std::string where = cat(spec_.merges_field, "[", r, "] (\"", a, " ", b, "\")");
      if (!ia) fail(where, ": token \"", a, "\" is not in the vocabulary");
      if (!ib) fail(where, ": token \"", b, "\" is not in the vocabulary");
      if (!ic) fail(where, ": merged token \"", a + b, "\" is not in the vocabulary");
      merges_.emplace(spm_pair_key(*ia, *ib), Merge{static_cast<int32_t>(r), *ic});
    }
  }
  set_chat_format(detect_chat_format(*this, true, common_.chat_template));
}

bool SpmTokenizer::mergeable(int32_t id) const {
  const int32_t t = type_of(id);
  return t != kControl && t != kUnknown && t != kByte && t != kUnused;
}

std::string SpmTokenizer::token_bytes(int32_t id) const {
  check_id(id);
  const int32_t t = type_of(id);
  if (t == kByte) return std::string(1, static_cast<char>(byte_token_value(text_of(id))));
  if (t == kControl || t == kUnknown) return text_of(id);
  return replace_all(text_of(id), kSpace, " ");
}

void SpmTokenizer::encode_text(std::string_view text, bool after_added,
                               std::vector<int32_t>& out) const {
  if (text.empty()) return;
  const std::string s =
      (spec_.add_space_prefix && after_added ? std::string(kSpace) : std::string()) +
      replace_all(text, " ", kSpace);
  // One symbol per character; in rank mode an unknown character becomes byte symbols at once,
  // as HF's BPE does, since merges are keyed by ids.
  std::vector<std::pair<int32_t, uint32_t>> init;
  init.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t len = std::max<size_t>(1, utf8_seq_len(s, i));
    auto it = pieces_.find(std::string_view(s).substr(i, len));
    const int32_t id = it == pieces_.end() ? -1 : it->second;
    if (id < 0 && spec_.use_merges) {
      for (size_t k = 0; k < len; ++k)
        init.emplace_back(byte_id_[static_cast<unsigned char>(s[i + k])], 1);
    } else {
      init.emplace_back(id, static_cast<uint32_t>(len));
    }
    i += len;
  }
  std::vector<Symbol> syms = make_symbols(init);
  if (spec_.use_merges) {
    merge_symbols(syms, [this](const Symbol& l, const Symbol& r) -> std::optional<MergeCandidate> {
      if (l.id < 0 || r.id < 0) return std::nullopt;
      auto it = merges_.find(spm_pair_key(l.id, r.id));
      if (it == merges_.end()) return std::nullopt;
      return MergeCandidate{-static_cast<double>(it->second.rank), it->second.id};
    });
  } else {
    merge_symbols(
        syms, [this, &s](const Symbol& l, const Symbol& r) -> std::optional<MergeCandidate> {
          auto it = pieces_.find(std::string_view(s).substr(l.start, l.len + r.len));
          if (it == pieces_.end()) return std::nullopt;
          return MergeCandidate{spec_.scores[static_cast<size_t>(it->second)], it->second};
        });
  }
  for (int32_t i = 0; i >= 0; i = syms[static_cast<size_t>(i)].next) {
    const Symbol& sym = syms[static_cast<size_t>(i)];
    if (sym.id >= 0) {
      out.push_back(sym.id);
      continue;
    }
    // Byte fallback; without byte tokens the character becomes <unk> (or vanishes without one).
    bool all = true;
    for (uint32_t k = 0; k < sym.len; ++k)
      all = all && byte_id_[static_cast<unsigned char>(s[sym.start + k])] >= 0;
    if (all) {
      for (uint32_t k = 0; k < sym.len; ++k)
        out.push_back(byte_id_[static_cast<unsigned char>(s[sym.start + k])]);
    } else if (common_.unk) {
      out.push_back(*common_.unk);
    }
  }
}

std::vector<std::pair<std::string, std::string>> SpmTokenizer::hf_merges() const {
  if (spec_.use_merges) return spec_.merges;
  struct M {
    float score;
    int32_t piece, a, b;
  };
  std::vector<M> all;
  for (const auto& [piece, id] : pieces_) {
    for (size_t i = 1; i < piece.size(); ++i) {
      if ((static_cast<unsigned char>(piece[i]) & 0xC0) == 0x80) continue;  // split at characters
      auto a = pieces_.find(std::string_view(piece).substr(0, i));
      auto b = pieces_.find(std::string_view(piece).substr(i));
      if (a != pieces_.end() && b != pieces_.end())
        all.push_back({spec_.scores[static_cast<size_t>(id)], id, a->second, b->second});
    }
  }
  // Best score first; ties in vocabulary order, then by the parts' ids (the converter's order).
  std::sort(all.begin(), all.end(), [](const M& x, const M& y) {
    if (x.score != y.score) return x.score > y.score;
    if (x.piece != y.piece) return x.piece < y.piece;
    return x.a != y.a ? x.a < y.a : x.b < y.b;
  });
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(all.size());
  for (const M& m : all) out.emplace_back(text_of(m.a), text_of(m.b));
  return out;
}

std::vector<float> SpmTokenizer::gguf_scores() const {
  if (!spec_.use_merges) return spec_.scores;
  // Rank mode has no scores: rank r makes its piece score -r, so score order is merge order.
  const size_t n = common_.tokens.size();
  std::vector<float> scores(n, 0.0f);
  std::vector<bool> set(n, false);
  for (size_t r = 0; r < spec_.merges.size(); ++r) {
    const auto id = static_cast<size_t>(*token_id(spec_.merges[r].first + spec_.merges[r].second));
    if (!set[id]) {
      scores[id] = -static_cast<float>(r);
      set[id] = true;
    }
  }
  for (size_t i = 0; i < n; ++i)
    if (!set[i] && mergeable(static_cast<int32_t>(i)))
      scores[i] = -static_cast<float>(spec_.merges.size() + i);
  return scores;
}

GgufVocab SpmTokenizer::to_gguf_vocab() const {
  GgufVocab v;
  v.model = "llama";
  v.pre = "default";
  v.tokens = common_.tokens;
  v.scores = gguf_scores();
  v.token_types = common_.types;
  v.bos_id = common_.bos;
  if (!common_.eos.empty()) v.eos_id = common_.eos.front();
  v.unk_id = common_.unk;
  v.pad_id = common_.pad;
  v.add_bos = common_.add_bos;
  v.add_eos = common_.add_eos;
  v.add_space_prefix = spec_.add_space_prefix;
  v.chat_template = effective_chat_template();
  return v;
}

void SpmTokenizer::save_hf(const std::filesystem::path& dir) const {
  write_hf_spm(dir, *this);
}

}  // namespace drafteu::tok
