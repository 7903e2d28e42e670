#include "model/tokenizer/added_tokens.h"

namespace drafteu::tok {

int32_t AddedTokenMatcher::child(int32_t node, unsigned char c) const {
  for (const auto& [b, n] : nodes_[node].next)
    if (b == c) return n;
  return -1;
}

void AddedTokenMatcher::add(std::string_view text, int32_t id, bool special) {
  if (text.empty()) return;
  first_byte_[static_cast<unsigned char>(text[0])] = true;
  int32_t node = 0;
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    int32_t n = child(node, c);
    if (n < 0) {
      n = static_cast<int32_t>(nodes_.size());
      nodes_[node].next.emplace_back(c, n);
      nodes_.emplace_back();
    }
    node = n;
  }
  if (nodes_[node].id < 0) {  // the first id registered for a text wins
    nodes_[node].id = id;
    nodes_[node].special = special;
  }
}

std::vector<TextPiece> AddedTokenMatcher::split(std::string_view text, bool parse_special) const {
  std::vector<TextPiece> out;
  size_t last = 0, i = 0;
  while (i < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    int32_t node = 0, best_id = -1;
    size_t best_len = 0;
    for (size_t j = i; j < text.size(); ++j) {
      node = child(node, static_cast<unsigned char>(text[j]));
      if (node < 0) break;
      const Node& n = nodes_[node];
      if (n.id >= 0 && (parse_special || !n.special)) {
        best_id = n.id;
        best_len = j + 1 - i;
      }
    }
    if (best_id < 0) {
      ++i;
      continue;
    }
    if (i > last) out.push_back({text.substr(last, i - last), -1});
    out.push_back({{}, best_id});
    i += best_len;
    last = i;
  }
  if (last < text.size()) out.push_back({text.substr(last), -1});
  return out;
}

}  // namespace drafteu::tok
