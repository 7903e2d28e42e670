#include "model/tokenizer/chat_template.h"

#include "util/error.h"

namespace drafteu::tok {

namespace {
// Jinja's trim / Python's str.strip() on ASCII whitespace, as both published templates apply.
std::string trim(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string render_llama3(const std::vector<ChatMessage>& messages, bool gen,
                          const std::string& bos) {
  std::string out = bos.empty() ? "<|begin_of_text|>" : bos;
  for (const ChatMessage& m : messages)
    out +=
        "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Meta's Llama 2 chat template: the system prompt folds into the first user turn.
std::string render_llama2(const std::vector<ChatMessage>& messages, const std::string& bos,
                          const std::string& eos) {
  size_t first = 0;
  std::string system;
  bool has_system = false;
  if (!messages.empty() && messages[0].role == "system") {
    system = messages[0].content;
    has_system = true;
    first = 1;
  }
  std::string out;
  for (size_t i = first; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    const bool want_user = (i - first) % 2 == 0;
    if ((m.role == "user") != want_user || (m.role != "user" && m.role != "assistant"))
      fail(
          "apply_chat_template: Llama 2 chat roles must alternate user/assistant after an optional "
          "system "
          "message; message ",
          i, " has role \"", m.role, "\"");
    std::string content = m.content;
    if (i == first && has_system) content = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content;
    if (m.role == "user") {
      out += bos;
      out += "[INST] ";
      out += trim(content);
      out += " [/INST]";
    } else {
      out += ' ';
      out += trim(content);
      out += ' ';
      out += eos;
    }
  }
  return out;
}
}  // namespace

ChatFormat detect_chat_format(const Tokenizer& tok, bool sentencepiece, const std::string& jinja) {
  if (tok.token_id("<|start_header_id|>") && tok.token_id("<|end_header_id|>") &&
      tok.token_id("<|eot_id|>"))
    return ChatFormat::Llama3;
  if (sentencepiece && jinja.find("[INST]") != std::string::npos) return ChatFormat::Llama2;
  return ChatFormat::None;
}

std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                        bool add_generation_prompt, const std::string& bos_text,
                        const std::string& eos_text) {
  switch (format) {
    case ChatFormat::Llama3:
      return render_llama3(messages, add_generation_prompt, bos_text);
    case ChatFormat::Llama2:
      return render_llama2(messages, bos_text, eos_text);
    case ChatFormat::None:
      break;
  }
  fail("apply_chat_template: no chat format");
}

std::string standard_chat_template(ChatFormat format) {
  switch (format) {
    case ChatFormat::Llama3:
      return "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
             "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
             "message['content'] | "
             "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content "
             "%}{% "
             "endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
             "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
    case ChatFormat::Llama2:
      return "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
             "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages "
             "%}{% "
             "set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
             "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ "
             "raise_exception('Conversation "
             "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if "
             "loop.index0 == "
             "0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
             "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
             "message['content'] "
             "%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
             "content.strip() "
             "+ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + "
             "' ' + "
             "eos_token }}{% endif %}{% endfor %}";
    case ChatFormat::None:
      break;
  }
  return {};
}

}  // namespace drafteu::tok
