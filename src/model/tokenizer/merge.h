// The one BPE merge loop both tokenizers share: symbols in a linked list, candidate pairs in a
// heap, best priority first and leftmost on ties (HF's BPE ranks and llama.cpp's SPM scores both
// reduce to this). Stale heap entries are skipped by checking that both symbols are unchanged.
#pragma once
#include <cstdint>
#include <optional>
#include <queue>
#include <vector>

namespace drafteu::tok {

struct Symbol {
  int32_t id = -1;              // vocabulary id, or -1 for text not (yet) in the vocabulary
  uint32_t start = 0, len = 0;  // bytes of the input this symbol covers; len 0 once merged away
  int32_t prev = -1, next = -1;
};

struct MergeCandidate {
  double priority;  // higher merges first (a score, or minus a merge rank)
  int32_t id;       // the merged symbol's id
};

// Builds linked symbols from (id, byte length) of consecutive pieces of the input.
inline std::vector<Symbol> make_symbols(const std::vector<std::pair<int32_t, uint32_t>>& id_len) {
  std::vector<Symbol> s(id_len.size());
  uint32_t pos = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    s[i] = {id_len[i].first, pos, id_len[i].second, static_cast<int32_t>(i) - 1,
            i + 1 < s.size() ? static_cast<int32_t>(i + 1) : -1};
    pos += id_len[i].second;
  }
  return s;
}

// `candidate(left, right)` returns the merge of two adjacent symbols, if any.
template <typename Candidate>
void merge_symbols(std::vector<Symbol>& s, Candidate&& candidate) {
  struct Entry {
    double priority;
    int32_t left, right;
    uint32_t left_len, right_len;
    int32_t id;
    bool operator<(const Entry& o) const {  // std::priority_queue pops the largest
      if (priority != o.priority) return priority < o.priority;
      return left > o.left;
    }
  };
  std::priority_queue<Entry> heap;
  auto push = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    if (std::optional<MergeCandidate> c = candidate(s[l], s[r]))
      heap.push({c->priority, l, r, s[l].len, s[r].len, c->id});
  };
  for (size_t i = 0; i + 1 < s.size(); ++i)
    push(static_cast<int32_t>(i), static_cast<int32_t>(i + 1));
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    Symbol& l = s[e.left];
    Symbol& r = s[e.right];
    if (l.len != e.left_len || l.next != e.right || r.len != e.right_len) continue;
    l.len += r.len;
    l.id = e.id;
    l.next = r.next;
    if (r.next >= 0) s[r.next].prev = e.left;
    r.len = 0;
    push(l.prev, e.left);
    push(e.left, l.next);
  }
}

}  // namespace drafteu::tok
