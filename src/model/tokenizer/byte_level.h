// GPT-2's reversible byte <-> Unicode map: every byte gets a printable character, so byte-level
// BPE vocabularies can be stored as text ("Ġworld" is " world").
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace drafteu::tok {

// Raw bytes -> their byte-level spelling (UTF-8 text of the mapped characters).
std::string byte_level_encode(std::string_view bytes);
// Byte-level spelling -> raw bytes; nullopt if a character is outside the 256-entry map.
std::optional<std::string> byte_level_decode(std::string_view text);

}  // namespace drafteu::tok
