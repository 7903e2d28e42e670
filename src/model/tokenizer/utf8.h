// UTF-8 helpers shared by the tokenizers and the stream decoder.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace drafteu::tok {

// Length of the well-formed UTF-8 sequence at s[i] (1-4), or 0 if the bytes there are not one
// (overlong forms, surrogates and code points above U+10FFFF count as malformed).
size_t utf8_seq_len(std::string_view s, size_t i);

// True when s[i..] is a well-formed but truncated prefix of a sequence (more bytes may complete
// it).
bool utf8_incomplete_prefix(std::string_view s, size_t i);

void append_utf8(std::string& out, uint32_t cp);

// Copies complete characters of `in` to the result; malformed bytes become U+FFFD. When
// `keep_tail` is set, a truncated final sequence is left in `*tail` instead of being replaced.
std::string utf8_sanitize(std::string_view in, bool keep_tail, std::string* tail);

}  // namespace drafteu::tok
