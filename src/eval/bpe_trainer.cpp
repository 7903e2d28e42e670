#include "eval/bpe_trainer.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <unordered_map>

#include "util/error.h"

namespace drafteu::eval {

namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // "▁"

size_t char_len(unsigned char c) {
  if (c < 0x80) return 1;
  if ((c >> 5) == 0x6) return 2;
  if ((c >> 4) == 0xE) return 3;
  if ((c >> 3) == 0x1E) return 4;
  return 1;
}

enum class Kind { kSpace, kLetter, kDigit, kOther };

Kind kind_of(const std::string& ch, bool split_digits) {
  if (ch == kSpace) return Kind::kSpace;
  const auto c = static_cast<unsigned char>(ch[0]);
  if (c >= '0' && c <= '9') return split_digits ? Kind::kDigit : Kind::kLetter;
  if (std::isalpha(c) || c >= 0x80 || c == '\'') return Kind::kLetter;
  return Kind::kOther;
}

// Words that merges never cross, as characters: "▁" + letters, one digit, "▁" + one other
// character, or a lone "▁".
std::vector<std::vector<std::string>> pre_split(const std::string& text, bool split_digits) {
  std::string s(kSpace);
  for (char c : text) s += c == ' ' ? std::string(kSpace) : std::string(1, c);
  std::vector<std::string> chars;
  for (size_t i = 0; i < s.size();) {
    const size_t len = std::min(char_len(static_cast<unsigned char>(s[i])), s.size() - i);
    chars.push_back(s.substr(i, len));
    i += len;
  }
  std::vector<std::vector<std::string>> words;
  for (size_t i = 0; i < chars.size();) {
    std::vector<std::string> w{chars[i]};
    Kind k = kind_of(chars[i], split_digits);
    size_t j = i + 1;
    if (k == Kind::kSpace && j < chars.size()) {
      const Kind next = kind_of(chars[j], split_digits);
      if (next == Kind::kLetter || next == Kind::kOther) {
        w.push_back(chars[j++]);
        k = next;
      }
    }
    if (k == Kind::kLetter)
      while (j < chars.size() && kind_of(chars[j], split_digits) == Kind::kLetter)
        w.push_back(chars[j++]);
    words.push_back(std::move(w));
    i = j;
  }
  return words;
}

}  // namespace

GgufVocab train_bpe_vocab(const std::vector<std::string>& corpus, const BpeOptions& o) {
  if (o.vocab_size < 259 + 1) fail("BPE trainer: vocab_size must exceed 259");
  // Word type -> count; map keeps the order deterministic.
  std::map<std::vector<std::string>, int64_t> word_counts;
  std::map<std::string, int64_t> char_counts;
  for (const auto& text : corpus)
    for (auto& w : pre_split(text, o.split_digits)) {
      for (const auto& c : w) ++char_counts[c];
      ++word_counts[std::move(w)];
    }

  GgufVocab v;
  v.model = "llama";
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.token_types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    v.tokens.push_back(name);
    v.token_types.push_back(6);
  }
  // Characters, most frequent first (ties by text).
  std::vector<std::pair<std::string, int64_t>> chars(char_counts.begin(), char_counts.end());
  std::stable_sort(chars.begin(), chars.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  for (const auto& [c, n] : chars) {
    if (static_cast<int>(v.tokens.size()) >= o.vocab_size) break;
    v.tokens.push_back(c);
    v.token_types.push_back(1);
  }
  const size_t first_merge = v.tokens.size();

  std::vector<std::pair<std::vector<std::string>, int64_t>> words(word_counts.begin(),
                                                                  word_counts.end());
  std::unordered_map<std::string, bool> known;  // every piece so far
  for (const auto& t : v.tokens) known[t] = true;
  while (static_cast<int>(v.tokens.size()) < o.vocab_size) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [w, n] : words)
      for (size_t i = 0; i + 1 < w.size(); ++i) pairs[{w[i], w[i + 1]}] += n;
    const std::pair<std::string, std::string>* best = nullptr;
    int64_t best_n = 0;
    for (const auto& [p, n] : pairs)
      if (n > best_n) best = &p, best_n = n;
    if (!best || best_n < o.min_frequency) break;
    const auto [a, b] = *best;
    const std::string merged = a + b;
    for (auto& [w, n] : words) {
      std::vector<std::string> out;
      out.reserve(w.size());
      for (size_t i = 0; i < w.size(); ++i) {
        if (i + 1 < w.size() && w[i] == a && w[i + 1] == b) {
          out.push_back(merged);
          ++i;
        } else {
          out.push_back(w[i]);
        }
      }
      w = std::move(out);
    }
    // A piece already made by another split is only re-applied, as the encoder would.
    if (known.emplace(merged, true).second) {
      v.tokens.push_back(merged);
      v.token_types.push_back(1);
    }
  }
  // Scores: merges by -rank; characters below every merge (never a merge result anyway).
  const auto merges = static_cast<float>(v.tokens.size() - first_merge);
  v.scores.assign(v.tokens.size(), 0.0f);
  for (size_t i = 259; i < first_merge; ++i) v.scores[i] = -merges - static_cast<float>(i - 259);
  for (size_t i = first_merge; i < v.tokens.size(); ++i)
    v.scores[i] = -static_cast<float>(i - first_merge);
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_eos = false;
  v.add_space_prefix = true;
  return v;
}

}  // namespace drafteu::eval
