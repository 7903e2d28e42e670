// Finds added tokens ("<|eot_id|>", "<s>", user-defined pieces) in raw text before BPE runs:
// leftmost-longest match over a byte trie, as HF tokenizers and llama.cpp do.
#pragma once
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

namespace drafteu::tok {

struct TextPiece {
  std::string_view text;  // when id < 0
  int32_t id = -1;        // an added token
};

class AddedTokenMatcher {
 public:
  // `special` tokens are matched only when the caller asks to parse special tokens.
  void add(std::string_view text, int32_t id, bool special);
  std::vector<TextPiece> split(std::string_view text, bool parse_special) const;
  bool empty() const { return nodes_.size() <= 1; }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;
    int32_t id = -1;
    bool special = false;
  };
  int32_t child(int32_t node, unsigned char c) const;
  std::vector<Node> nodes_{1};
  bool first_byte_[256] = {};
};

}  // namespace drafteu::tok
