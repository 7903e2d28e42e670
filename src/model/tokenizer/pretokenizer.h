// Regex pre-tokenization (HF "Split" with behavior Isolated) on PCRE2 in UTF + UCP mode.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace drafteu::tok {

// The split patterns of known GGUF pre-tokenizers (tokenizer.ggml.pre).
inline constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class RegexSplitter {
 public:
  // Throws drafteu::Error with PCRE2's message and offset; callers add the file and field.
  explicit RegexSplitter(std::string pattern);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // Appends matches and the gaps between them, in order, covering all of `text`. Malformed
  // UTF-8 bytes become one-byte pieces of their own (PCRE2 refuses them in UTF mode).
  void split(std::string_view text, std::vector<std::string_view>& out) const;
  const std::string& pattern() const { return pattern_; }

 private:
  void split_valid(std::string_view text, std::vector<std::string_view>& out) const;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*, kept opaque to spare includers pcre2.h
};

}  // namespace drafteu::tok
