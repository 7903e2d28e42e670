// Trains a small SentencePiece-style BPE vocabulary on a corpus: "▁" for spaces, <unk>, <s>,
// </s>, byte fallback <0x00>..<0xFF>, every corpus character, then merged pieces scored by
// -(merge rank) so that llama.cpp's score-ordered merging replays the training merges.
#pragma once
#include <string>
#include <vector>

#include "model/tokenizer/tokenizer.h"

namespace drafteu::eval {

struct BpeOptions {
  int vocab_size = 768;   // total, including the 3 control and 256 byte tokens
  int min_frequency = 2;  // a pair seen fewer times is never merged
  // Digits stay single tokens (as Llama's split_digits): arithmetic reads digit by digit.
  bool split_digits = true;
};

// Ids: 0 <unk>, 1 <s>, 2 </s>, 3..258 bytes, then characters, then merges. model "llama".
GgufVocab train_bpe_vocab(const std::vector<std::string>& corpus, const BpeOptions& options = {});

}  // namespace drafteu::eval
