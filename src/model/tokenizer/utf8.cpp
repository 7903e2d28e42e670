#include "model/tokenizer/utf8.h"

namespace drafteu::tok {

namespace {
// Valid range of the second byte for each lead byte (RFC 3629 table 3-7).
bool second_ok(unsigned char lead, unsigned char b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return b >= 0x80 && b <= 0xBF;
}

size_t expected_len(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

// Number of bytes from s[i] that are consistent with a sequence of length `need`.
size_t valid_bytes(std::string_view s, size_t i, size_t need) {
  const auto lead = static_cast<unsigned char>(s[i]);
  size_t k = 1;
  for (; k < need && i + k < s.size(); ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    const bool ok = k == 1 ? second_ok(lead, b) : (b & 0xC0) == 0x80;
    if (!ok) break;
  }
  return k;
}
}  // namespace

size_t utf8_seq_len(std::string_view s, size_t i) {
  const size_t need = expected_len(static_cast<unsigned char>(s[i]));
  if (need == 0) return 0;
  return valid_bytes(s, i, need) == need ? need : 0;
}

bool utf8_incomplete_prefix(std::string_view s, size_t i) {
  const size_t need = expected_len(static_cast<unsigned char>(s[i]));
  if (need <= 1) return false;
  const size_t k = valid_bytes(s, i, need);
  return k < need && i + k == s.size();
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string utf8_sanitize(std::string_view in, bool keep_tail, std::string* tail) {
  std::string out;
  out.reserve(in.size());
  size_t i = 0;
  while (i < in.size()) {
    if (const size_t n = utf8_seq_len(in, i)) {
      out.append(in.substr(i, n));
      i += n;
    } else if (keep_tail && utf8_incomplete_prefix(in, i)) {
      break;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  if (tail) *tail = std::string(in.substr(i));
  return out;
}

}  // namespace drafteu::tok
