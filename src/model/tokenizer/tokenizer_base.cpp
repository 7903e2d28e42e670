#include "model/tokenizer/tokenizer_base.h"

#include "util/error.h"

namespace drafteu {

void Tokenizer::set_eos_ids(std::vector<int32_t>) {
  fail("this tokenizer does not support set_eos_ids");
}

namespace tok {

TokenizerBase::TokenizerBase(CommonSpec common) : common_(std::move(common)) {
  const size_t n = common_.tokens.size();
  if (common_.types.empty()) common_.types.assign(n, kNormal);
  if (common_.types.size() != n)
    fail("tokenizer: ", common_.types.size(), " token types for ", n, " tokens");
  token_to_id_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const auto id = static_cast<int32_t>(i);
    token_to_id_.emplace(common_.tokens[i], id);  // duplicates: the lowest id keeps the name
    const int32_t t = common_.types[i];
    if (t == kControl || t == kUnknown || t == kUserDefined)
      added_.add(common_.tokens[i], id, t != kUserDefined);
  }
  auto check = [&](const std::optional<int32_t>& id, const char* what) {
    if (id && (*id < 0 || *id >= static_cast<int32_t>(n)))
      fail("tokenizer: ", what, " id ", *id, " is outside the vocabulary of ", n);
  };
  check(common_.bos, "BOS");
  check(common_.unk, "UNK");
  check(common_.pad, "PAD");
  for (int32_t e : common_.eos) check(e, "EOS");
}

void TokenizerBase::check_id(int32_t id) const {
  if (id < 0 || id >= vocab_size())
    fail("token id ", id, " is outside the vocabulary of ", vocab_size());
}

std::vector<int32_t> TokenizerBase::encode(std::string_view text, bool add_bos,
                                           bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) {
    if (!common_.bos) fail("encode: add_bos requested but the tokenizer has no BOS token");
    out.push_back(*common_.bos);
  }
  bool after_added = true;
  for (const TextPiece& p : added_.split(text, parse_special)) {
    if (p.id >= 0) {
      out.push_back(p.id);
      after_added = true;
    } else {
      encode_text(p.text, after_added, out);
      after_added = false;
    }
  }
  return out;
}

std::string TokenizerBase::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string out;
  bool after_added = true;
  for (int32_t id : ids) {
    check_id(id);
    const int32_t t = type_of(id);
    if (t == kControl || t == kUnknown || t == kUserDefined) {  // added tokens, matched whole
      if (!(skip_special && is_special(id))) out += token_bytes(id);
      after_added = true;
      continue;
    }
    std::string piece = token_bytes(id);
    if (after_added && add_space_prefix() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    after_added = false;
    out += piece;
  }
  return out;
}

bool TokenizerBase::is_special(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  const int32_t t = type_of(id);
  return t == kControl || t == kUnknown;
}

std::optional<int32_t> TokenizerBase::token_id(std::string_view token_text) const {
  auto it = token_to_id_.find(token_text);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

void TokenizerBase::set_eos_ids(std::vector<int32_t> ids) {
  for (int32_t id : ids) check_id(id);
  common_.eos = std::move(ids);
}

std::string TokenizerBase::apply_chat_template(const std::vector<ChatMessage>& messages,
                                               bool add_generation_prompt) const {
  if (chat_format_ == ChatFormat::None)
    fail("apply_chat_template: this tokenizer has no chat template");
  const std::string bos = common_.bos ? text_of(*common_.bos) : std::string();
  const std::string eos = common_.eos.empty() ? std::string() : text_of(common_.eos.front());
  return render_chat(chat_format_, messages, add_generation_prompt, bos, eos);
}

std::string TokenizerBase::effective_chat_template() const {
  if (!common_.chat_template.empty()) return common_.chat_template;
  return standard_chat_template(chat_format_);
}

}  // namespace tok
}  // namespace drafteu
