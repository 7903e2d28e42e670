#include "model/tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "model/tokenizer/utf8.h"
#include "util/error.h"

namespace drafteu::tok {

namespace {
pcre2_code* code_of(void* p) {
  return static_cast<pcre2_code*>(p);
}

struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* code)
      : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!md) fail("pcre2: out of memory");
  }
  ~MatchData() { pcre2_match_data_free(md); }
};

// Bounds PCRE2's backtracking, so a hostile Split pattern in tokenizer.json ends in an error
// rather than a hang. Real pre-tokenizer patterns need a few dozen steps per piece.
struct MatchLimits {
  pcre2_match_context* ctx;
  MatchLimits() : ctx(pcre2_match_context_create(nullptr)) {
    if (!ctx) fail("pcre2: out of memory");
    pcre2_set_match_limit(ctx, 10'000'000);
    pcre2_set_depth_limit(ctx, 100'000);
  }
  ~MatchLimits() { pcre2_match_context_free(ctx); }
};
}  // namespace

RegexSplitter::RegexSplitter(std::string pattern) : pattern_(std::move(pattern)) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern_.data()), pattern_.size(),
                                   PCRE2_UTF | PCRE2_UCP, &err, &off, nullptr);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("invalid regex at offset ", off, ": ", reinterpret_cast<const char*>(msg));
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back to the interpreter
  code_ = code;
}

RegexSplitter::~RegexSplitter() {
  pcre2_code_free(code_of(code_));
}

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& out) const {
  size_t run = 0, i = 0;
  while (i < text.size()) {
    const size_t n = utf8_seq_len(text, i);
    if (n) {
      i += n;
      continue;
    }
    if (i > run) split_valid(text.substr(run, i - run), out);
    out.push_back(text.substr(i, 1));
    run = ++i;
  }
  if (i > run) split_valid(text.substr(run, i - run), out);
}

void RegexSplitter::split_valid(std::string_view text, std::vector<std::string_view>& out) const {
  const pcre2_code* code = code_of(code_);
  MatchData m(code);
  MatchLimits limits;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t last = 0, offset = 0;
  while (offset < text.size()) {
    const int rc =
        pcre2_match(code, subject, text.size(), offset, PCRE2_NO_UTF_CHECK, m.md, limits.ctx);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT)
      fail("pre-tokenizer regex '", pattern_, "' exceeds its backtracking limit on this text");
    if (rc < 0) fail("pcre2_match failed with code ", rc);
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    const size_t s = ov[0], e = ov[1];
    if (e == s) {                   // an empty match splits nothing; step one character past it
      if (s >= text.size()) break;  // e.g. "$" matches at the very end
      offset = s + std::max<size_t>(1, utf8_seq_len(text, s));
      continue;
    }
    if (s > last) out.push_back(text.substr(last, s - last));
    out.push_back(text.substr(s, e - s));
    last = offset = e;
  }
  if (last < text.size()) out.push_back(text.substr(last));
}

}  // namespace drafteu::tok
