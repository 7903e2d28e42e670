#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/utf8.h"

namespace drafteu {

std::string StreamDecoder::push(int32_t id) {
  if (tok_.is_special(id)) {
    first_ = true;  // decode() drops the SentencePiece space after a special token too
    return {};
  }
  std::string piece = tok_.token_bytes(id);
  if (first_ && tok_.add_space_prefix() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
  first_ = false;
  pending_ += piece;
  std::string tail;
  std::string out = tok::utf8_sanitize(pending_, true, &tail);
  pending_ = std::move(tail);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out = tok::utf8_sanitize(pending_, false, nullptr);
  pending_.clear();
  return out;
}

}  // namespace drafteu
