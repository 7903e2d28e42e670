#include "model/tokenizer/byte_level.h"

#include <array>
#include <cstdint>
#include <unordered_map>

#include "model/tokenizer/utf8.h"

namespace drafteu::tok {

namespace {
struct Tables {
  std::array<std::string, 256> to_text;
  std::unordered_map<uint32_t, unsigned char> to_byte;

  Tables() {
    // Printable Latin-1 bytes map to themselves; the rest to U+0100 + n, in byte order.
    uint32_t n = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      const uint32_t cp = printable ? b : 256 + n++;
      append_utf8(to_text[b], cp);
      to_byte[cp] = static_cast<unsigned char>(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}
}  // namespace

std::string byte_level_encode(std::string_view bytes) {
  const Tables& t = tables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += t.to_text[static_cast<unsigned char>(c)];
  return out;
}

std::optional<std::string> byte_level_decode(std::string_view text) {
  const Tables& t = tables();
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const size_t n = utf8_seq_len(text, i);
    if (n == 0 || n > 2) return std::nullopt;  // the map only uses U+0021..U+0143
    uint32_t cp = static_cast<unsigned char>(text[i]);
    if (n == 2) cp = ((cp & 0x1F) << 6) | (static_cast<unsigned char>(text[i + 1]) & 0x3F);
    auto it = t.to_byte.find(cp);
    if (it == t.to_byte.end()) return std::nullopt;
    out += static_cast<char>(it->second);
    i += n;
  }
  return out;
}

}  // namespace drafteu::tok
