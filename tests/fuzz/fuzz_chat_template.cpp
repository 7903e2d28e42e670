// Fuzz target: chat rendering. Input bytes are split at NUL into messages (role, content,
// role, content, ...); the first byte picks the format and the generation prompt.
#include <vector>

#include "fuzz_support.h"
#include "model/tokenizer/chat_template.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace drafteu;
  if (size == 0) return 0;
  const uint8_t mode = data[0];
  std::vector<std::string> parts(1);
  for (size_t i = 1; i < size; ++i) {
    if (data[i] == 0)
      parts.emplace_back();
    else
      parts.back() += static_cast<char>(data[i]);
  }
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i + 1 < parts.size(); i += 2) messages.push_back({parts[i], parts[i + 1]});
  const auto format = (mode & 1) ? tok::ChatFormat::Llama3 : tok::ChatFormat::Llama2;
  try {
    (void)tok::render_chat(format, messages, (mode & 2) != 0, "<s>", "</s>");
  } catch (const Error&) {
  }
  (void)tok::standard_chat_template(format);
  return 0;
}
