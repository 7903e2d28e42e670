// Tokenizers: the real Llama 3 tokenizer.json (known ids, chat template, GSM8K round trips), the
// stories260K SentencePiece vocabulary (checked against an independent Python implementation of
// llama.cpp's SPM merge), HF/GGUF conversions, streaming and malformed-input errors.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "model/io/gguf.h"
#include "model/tokenizer/gguf_vocab.h"
#include "model/tokenizer/pretokenizer.h"
#include "model/tokenizer/tokenizer.h"
#include "test_errors.h"
#include "test_support.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Ids = std::vector<int32_t>;

const Tokenizer& llama3() {
  static const std::unique_ptr<Tokenizer> tok = load_tokenizer_json(test::llama3_tokenizer_json());
  return *tok;
}

const Tokenizer& stories() {
  static const std::unique_ptr<Tokenizer> tok =
      tokenizer_from_gguf_vocab(gguf_vocab_from_file(io::GgufFile(test::stories260k_gguf())));
  return *tok;
}

// Every question and answer of GSM8K train + test.
const std::vector<std::string>& gsm8k() {
  static const std::vector<std::string> texts = [] {
    std::vector<std::string> out;
    for (const char* name : {"train.jsonl", "test.jsonl"}) {
      std::ifstream in(test::require_file(test::shared_dir() / "data/gsm8k" / name));
      std::string line;
      while (std::getline(in, line)) {
        if (line.empty()) continue;
        const json j = json::parse(line);
        out.push_back(j.at("question").get<std::string>());
        out.push_back(j.at("answer").get<std::string>());
      }
    }
    return out;
  }();
  return texts;
}

// The text of each token, to check where the pre-tokenizer and merges cut.
std::vector<std::string> pieces(const Tokenizer& tok, std::string_view text) {
  std::vector<std::string> out;
  for (int32_t id : tok.encode(text, false, false)) out.push_back(tok.token_bytes(id));
  return out;
}

void write(const fs::path& p, const std::string& text) {
  write_file_atomic(p, text);
}

// ---------------------------------------------------------------- Llama 3 (byte-level BPE)

TEST(Llama3Tokenizer, KnownIds) {
  const Tokenizer& t = llama3();
  EXPECT_EQ(t.vocab_size(), 128256);
  EXPECT_EQ(t.encode("Hello world!", false), (Ids{9906, 1917, 0}));
  EXPECT_EQ(t.encode("Hello world!", true), (Ids{128000, 9906, 1917, 0}));
  EXPECT_EQ(t.encode(" world", false), (Ids{1917}));
  EXPECT_EQ(t.encode("<|begin_of_text|>", false), (Ids{128000}));
  EXPECT_EQ(t.encode("<|eot_id|>", false), (Ids{128009}));
  EXPECT_EQ(t.encode("system", false), (Ids{9125}));
  EXPECT_EQ(t.encode("\n\n", false), (Ids{271}));
  EXPECT_EQ(t.encode("user", false), (Ids{882}));
  EXPECT_EQ(t.encode("assistant", false), (Ids{78191}));
  EXPECT_EQ(t.token_id("Ġworld"), 1917);
  EXPECT_EQ(t.token_id("<|eot_id|>"), 128009);
  EXPECT_EQ(t.token_bytes(1917), " world");
  EXPECT_EQ(t.bos_id(), 128000);
  // <|end_of_text|>, <|eot_id|>; 128008 is <|eom_id|> only from Llama 3.1 on (reserved here).
  EXPECT_EQ(t.eos_ids(), (Ids{128001, 128009}));
  EXPECT_EQ(t.token_id("<|eom_id|>"), std::nullopt);
  EXPECT_TRUE(t.is_special(128009));
  EXPECT_FALSE(t.is_special(1917));
  EXPECT_FALSE(t.add_bos_by_default());  // this file's post-processor is ByteLevel only
  EXPECT_FALSE(t.add_space_prefix());
}

TEST(Llama3Tokenizer, SpecialTokensRespectParseSpecial) {
  const Tokenizer& t = llama3();
  const std::string text = "a<|eot_id|>b<|start_header_id|>";
  EXPECT_EQ(t.encode(text, false, true), (Ids{64, 128009, 65, 128006}));
  const Ids plain = t.encode(text, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 128009), 0);
  EXPECT_EQ(t.decode(plain), text);
  EXPECT_EQ(t.decode(t.encode(text, true, true)), "<|begin_of_text|>" + text);
  EXPECT_EQ(t.decode(t.encode(text, true, true), true), "ab");
}

TEST(Llama3Tokenizer, TrickyStrings) {
  const Tokenizer& t = llama3();
  using P = std::vector<std::string>;
  EXPECT_EQ(pieces(t, "don't"), (P{"don", "'t"}));
  EXPECT_EQ(pieces(t, "I'LL"), (P{"I", "'", "LL"}));
  EXPECT_EQ(pieces(t, "1234567"), (P{"123", "456", "7"}));  // digits in groups of 1-3
  EXPECT_EQ(pieces(t, "a   b"), (P{"a", "  ", " b"}));      // \s+(?!\S) leaves the last space
  EXPECT_EQ(pieces(t, "a\n\nb"), (P{"a", "\n\n", "b"}));
  EXPECT_EQ(pieces(t, "x = 42;\n"), (P{"x", " =", " ", "42", ";\n"}));
  for (std::string s : {"don't I'LL we've", "1234567 89", "tabs\t\tand   spaces  ",
                        "\n\n\nnew\r\nlines\n", "emoji 😀👍🏽 and CJK 日本語の文章",
                        "ünïcödé Ωμέγα", "", " ", "<|not_special|>"}) {
    EXPECT_EQ(t.decode(t.encode(s, false)), s) << s;
  }
}

// The Split regex itself, as compiled from the file's pattern (PCRE2, UTF + UCP).
TEST(Llama3Tokenizer, PreTokenizerRegex) {
  tok::RegexSplitter re{std::string(tok::kLlama3Regex)};
  auto split = [&](std::string_view s) {
    std::vector<std::string_view> v;
    re.split(s, v);
    return std::vector<std::string>(v.begin(), v.end());
  };
  using P = std::vector<std::string>;
  EXPECT_EQ(split("I'LL don't it'Sam 'S"),
            (P{"I", "'LL", " don", "'t", " it", "'S", "am", " '", "S"}));
  EXPECT_EQ(split("12345 x1"), (P{"123", "45", " x", "1"}));
  EXPECT_EQ(split("a  \n\n  b\t"), (P{"a", "  \n\n", " ", " b", "\t"}));
  EXPECT_EQ(split("日本語 ünï😀!!"), (P{"日本語", " ünï", "😀!!"}));
  EXPECT_EQ(split("ok\xff\xfeok"), (P{"ok", "\xff", "\xfe", "ok"}));  // malformed bytes stand alone
  EXPECT_THROW(tok::RegexSplitter("(unclosed"), Error);
}

// Documented behaviour: malformed UTF-8 bytes are encoded one byte token each, so even such
// input round-trips exactly; decode returns the raw bytes.
TEST(Llama3Tokenizer, InvalidUtf8RoundTrips) {
  const Tokenizer& t = llama3();
  for (std::string s : {std::string("\xff\xfe abc"), std::string("ok \xc3"),
                        std::string("\xe6\x97 x \x80\x80"), std::string("a\0b", 3)}) {
    const Ids ids = t.encode(s, false);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(t.decode(ids), s);
  }
  EXPECT_EQ(t.encode("\xff", false), (Ids{*t.token_id("ÿ")}));
}

TEST(Llama3Tokenizer, ChatTemplate) {
  const Tokenizer& t = llama3();
  ASSERT_TRUE(t.has_chat_template());
  const std::vector<ChatMessage> msgs = {{"system", "You are a helpful assistant."},
                                         {"user", "What is 2+2?"}};
  const std::string text = t.apply_chat_template(msgs, true);
  EXPECT_EQ(text,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
            "assistant.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  Ids want = {128000, 128006, 9125, 128007, 271};
  for (int32_t id : t.encode("You are a helpful assistant.", false)) want.push_back(id);
  for (int32_t id : {128009, 128006, 882, 128007, 271}) want.push_back(id);
  for (int32_t id : t.encode("What is 2+2?", false)) want.push_back(id);
  for (int32_t id : {128009, 128006, 78191, 128007, 271}) want.push_back(id);
  EXPECT_EQ(t.encode(text, false, true), want);
  EXPECT_EQ(t.encode("You are a helpful assistant.", false),
            (Ids{2675, 527, 264, 11190, 18328, 13}));
}

TEST(Llama3Tokenizer, Gsm8kRoundTrip) {
  const Tokenizer& t = llama3();
  const auto t0 = std::chrono::steady_clock::now();
  size_t n = 0, tokens = 0;
  for (const std::string& s : gsm8k()) {
    const Ids ids = t.encode(s, false, false);
    tokens += ids.size();
    ASSERT_EQ(t.decode(ids), s) << "text " << n;
    ++n;
  }
  EXPECT_EQ(n, 2 * (7473 + 1319));
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("llama3: %zu texts, %zu tokens in %.2f s\n", n, tokens, sec);
}

TEST(Llama3Tokenizer, SaveHfRoundTrip) {
  const Tokenizer& t = llama3();
  const fs::path dir = test::scratch_dir("tok_llama3_hf");
  t.save_hf(dir);
  ASSERT_TRUE(fs::exists(dir / "tokenizer_config.json"));
  const json cfg = json::parse(read_text_file(dir / "tokenizer_config.json"));
  EXPECT_EQ(cfg.at("bos_token"), "<|begin_of_text|>");
  EXPECT_EQ(cfg.at("eos_token"), "<|end_of_text|>");
  EXPECT_NE(cfg.at("chat_template").get<std::string>().find("<|start_header_id|>"),
            std::string::npos);
  const auto back = load_tokenizer_json(dir);
  EXPECT_EQ(back->vocab_size(), t.vocab_size());
  EXPECT_EQ(back->bos_id(), t.bos_id());
  EXPECT_EQ(back->eos_ids(), t.eos_ids());
  EXPECT_EQ(back->add_bos_by_default(), t.add_bos_by_default());
  for (int32_t id = 0; id < t.vocab_size(); ++id)
    ASSERT_EQ(back->token_bytes(id), t.token_bytes(id)) << id;
  const std::vector<ChatMessage> msgs = {{"user", "hi"}};
  EXPECT_EQ(back->apply_chat_template(msgs, true), t.apply_chat_template(msgs, true));
  size_t n = 0;
  for (const std::string& s : gsm8k())
    ASSERT_EQ(back->encode(s, true), t.encode(s, true)) << "text " << n++;
}

TEST(Llama3Tokenizer, GenerationConfigEosWins) {
  const fs::path dir = test::scratch_dir("tok_llama3_gen");
  fs::copy_file(test::llama3_tokenizer_json(), dir / "tokenizer.json");
  write(dir / "generation_config.json",
        R"({"bos_token_id": 128000, "eos_token_id": [128001, 128009]})");
  const auto t = load_tokenizer_json(dir);
  EXPECT_EQ(t->eos_ids(), (Ids{128001, 128009}));
  t->set_eos_ids({128009});
  EXPECT_EQ(t->eos_ids(), (Ids{128009}));
  EXPECT_THROW(t->set_eos_ids({999999}), Error);
}

TEST(StoriesTokenizer, GenerationConfigEos) {
  const fs::path dir = test::scratch_dir("tok_stories_gen");
  stories().save_hf(dir);
  EXPECT_EQ(load_tokenizer_json(dir)->eos_ids(), (Ids{2}));
  write(dir / "generation_config.json", R"({"eos_token_id": 1})");
  EXPECT_EQ(load_tokenizer_json(dir / "tokenizer.json")->eos_ids(), (Ids{1}));
  write(dir / "generation_config.json", R"({"eos_token_id": [2, 9999]})");
  const std::string err = test::error_of([&] { load_tokenizer_json(dir); });
  EXPECT_NE(err.find("generation_config.json: eos_token_id"), std::string::npos) << err;
}

TEST(Llama3Tokenizer, GgufVocabRoundTrip) {
  const Tokenizer& t = llama3();
  const GgufVocab v = t.to_gguf_vocab();
  EXPECT_EQ(v.model, "gpt2");
  EXPECT_EQ(v.pre, "llama-bpe");
  EXPECT_EQ(v.tokens.size(), 128256u);
  EXPECT_EQ(v.tokens[1917], "Ġworld");
  EXPECT_EQ(v.token_types[128009], 3);
  EXPECT_EQ(v.merges.front(), "Ġ Ġ");
  // Through a real GGUF file and back.
  std::map<std::string, io::GgufValue> md;
  add_gguf_vocab_metadata(v, md);
  const fs::path file = test::scratch_dir("tok_llama3_gguf") / "vocab.gguf";
  io::write_gguf(file, md, {});
  const auto back = tokenizer_from_gguf_vocab(gguf_vocab_from_file(io::GgufFile(file)));
  EXPECT_EQ(back->eos_ids(), (Ids{128001, 128009}));
  EXPECT_TRUE(back->has_chat_template());
  for (size_t i = 0; i < gsm8k().size(); i += 7)
    ASSERT_EQ(back->encode(gsm8k()[i], true), t.encode(gsm8k()[i], true));
}

TEST(Llama3Tokenizer, StreamDecoderEmitsWholeCharacters) {
  const Tokenizer& t = llama3();
  const std::string text = "Streaming 😀 日本語 ünï — done.";
  const Ids ids = t.encode(text, true);
  StreamDecoder sd(t);
  std::string out;
  bool split_char = false;
  for (int32_t id : ids) {
    const std::string chunk = sd.push(id);
    EXPECT_EQ(chunk, std::string(chunk.c_str(), chunk.size()));
    // A chunk never ends inside a character: its last lead byte has all its continuation bytes.
    for (size_t i = 0; i < chunk.size(); ++i) {
      const auto c = static_cast<unsigned char>(chunk[i]);
      const size_t len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
      EXPECT_LE(i + len, chunk.size());
    }
    if (t.token_bytes(id) != "" && chunk.empty()) split_char = true;
    out += chunk;
  }
  out += sd.flush();
  EXPECT_EQ(out, text);
  EXPECT_TRUE(split_char);  // the emoji spans tokens, so some push had to hold bytes back
  StreamDecoder bad(t);
  EXPECT_EQ(bad.push(*t.token_id("Ã")), "");  // 0xC3: a lead byte, held
  EXPECT_EQ(bad.flush(), "\xEF\xBF\xBD");
}

// ---------------------------------------------------------------- stories260K (SentencePiece)

// An independent SPM reference: parses the GGUF with struct and merges by repeated scans for the
// best-scoring adjacent pair (leftmost on ties), i.e. llama.cpp's llm_tokenizer_spm result.
constexpr const char* kSpmReference = R"PY(
import json, struct, sys
data = open(sys.argv[1], 'rb').read()
pos = 4
def rd(fmt):
    global pos
    v = struct.unpack_from('<' + fmt, data, pos); pos += struct.calcsize('<' + fmt); return v[0]
def rs():
    global pos
    n = rd('Q'); s = data[pos:pos + n].decode('utf-8'); pos += n; return s
FMT = {0:'B', 1:'b', 2:'H', 3:'h', 4:'I', 5:'i', 6:'f', 7:'?', 10:'Q', 11:'q', 12:'d'}
def rv(t):
    if t == 8: return rs()
    if t == 9:
        et = rd('I'); n = rd('Q'); return [rv(et) for _ in range(n)]
    return rd(FMT[t])
assert data[:4] == b'GGUF'
rd('I'); rd('Q'); nkv = rd('Q')
kv = {}
for _ in range(nkv):
    k = rs(); kv[k] = rv(rd('I'))
toks, scores, types = kv['tokenizer.ggml.tokens'], kv['tokenizer.ggml.scores'], kv['tokenizer.ggml.token_type']
piece = {t: i for i, t in enumerate(toks) if types[i] in (1, 4)}
byte = {int(t[3:5], 16): i for i, t in enumerate(toks) if types[i] == 6}
def encode(text):
    out = [kv['tokenizer.ggml.bos_token_id']]
    if not text: return out
    syms = list('\u2581' + text.replace(' ', '\u2581'))
    while True:
        best = None
        for i in range(len(syms) - 1):
            j = piece.get(syms[i] + syms[i + 1])
            if j is not None and (best is None or scores[j] > best[0]): best = (scores[j], i)
        if best is None: break
        i = best[1]; syms[i:i + 2] = [syms[i] + syms[i + 1]]
    for s in syms:
        if s in piece: out.append(piece[s])
        else: out.extend(byte[b] for b in s.encode('utf-8'))
    return out
print(json.dumps([encode(s) for s in json.load(open(sys.argv[2]))]))
)PY";

TEST(StoriesTokenizer, Vocabulary) {
  const Tokenizer& t = stories();
  EXPECT_EQ(t.vocab_size(), 512);
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_ids(), (Ids{2}));
  EXPECT_TRUE(t.is_special(0) && t.is_special(1) && t.is_special(2));
  EXPECT_FALSE(t.has_chat_template());
  EXPECT_TRUE(t.add_space_prefix());
  EXPECT_TRUE(t.add_bos_by_default());
  EXPECT_EQ(t.token_id("<0x0A>"), 13);
  EXPECT_EQ(t.token_bytes(13), "\n");
  const GgufVocab v = t.to_gguf_vocab();
  EXPECT_EQ(v.model, "llama");
  EXPECT_EQ(v.scores.size(), 512u);
  EXPECT_EQ(v.unk_id, 0);
}

TEST(StoriesTokenizer, MatchesPythonReference) {
  const Tokenizer& t = stories();
  std::vector<std::string> texts = {"Once upon a time, there was a little girl.",
                                    "Lily and Ben went to the park. They saw a big dog!",
                                    "The cat sat on the mat.\nIt was happy.",
                                    "  two leading spaces and  double  gaps ",
                                    "café é 日本 😀",
                                    ""};
  for (size_t i = 0; i < 40; ++i) texts.push_back(gsm8k()[i * 97]);
  const fs::path dir = test::scratch_dir("tok_spm_reference");
  write(dir / "ref.py", kSpmReference);
  write(dir / "texts.json", json(texts).dump());
  const auto r = test::run_command(
      std::string(test::reference_python()) + " '" + (dir / "ref.py").string() + "' '" +
      test::stories260k_gguf().string() + "' '" + (dir / "texts.json").string() + "'");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const json want = json::parse(r.out);
  ASSERT_EQ(want.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    const Ids ids = t.encode(texts[i], true);
    EXPECT_EQ(ids, want[i].get<Ids>()) << texts[i];
    EXPECT_EQ(t.decode(ids, true), texts[i]);
  }
  EXPECT_EQ(t.encode("Once upon a time", true).front(), 1);
}

TEST(StoriesTokenizer, ByteFallback) {
  const Tokenizer& t = stories();
  // <0xNN> is id NN + 3 in this vocabulary; "é" is a piece of its own, "ö" is not.
  EXPECT_EQ(t.encode("é", false), (Ids{410, 485}));
  EXPECT_EQ(t.encode("ö", false), (Ids{410, 0xC3 + 3, 0xB6 + 3}));
  const Ids jp = t.encode("日本", false);
  ASSERT_GE(jp.size(), 6u);
  EXPECT_EQ(Ids(jp.end() - 6, jp.end()),
            (Ids{0xE6 + 3, 0x97 + 3, 0xA5 + 3, 0xE6 + 3, 0x9C + 3, 0xAC + 3}));
  for (std::string s : {"é", "ö", "日本", "a日本b ö", "\xff\xfe broken", "tab\tnew\nline"})
    EXPECT_EQ(t.decode(t.encode(s, true), true), s) << s;
}

TEST(StoriesTokenizer, DecodeSpaceRules) {
  const Tokenizer& t = stories();
  const Ids ids = t.encode("Once upon", true);
  EXPECT_EQ(t.decode(ids, true), "Once upon");
  EXPECT_EQ(t.decode(ids, false), "<s>Once upon");
  EXPECT_EQ(t.decode(Ids(ids.begin() + 1, ids.end()), true), "Once upon");
  // Special tokens in text: the space prefix restarts after each (as llama.cpp does).
  const Ids two = t.encode("Hi</s><s>Bye", false, true);
  EXPECT_EQ(t.decode(two), "Hi</s><s>Bye");
  StreamDecoder sd(t);
  std::string out;
  for (int32_t id : ids) out += sd.push(id);
  EXPECT_EQ(out + sd.flush(), "Once upon");
}

TEST(StoriesTokenizer, Gsm8kRoundTripAndSaveHf) {
  const Tokenizer& t = stories();
  const fs::path dir = test::scratch_dir("tok_stories_hf");
  t.save_hf(dir);
  const json j = json::parse(read_text_file(dir / "tokenizer.json"));
  EXPECT_EQ(j.at("model").at("byte_fallback"), true);
  EXPECT_EQ(j.at("normalizer").at("normalizers").at(0).at("type"), "Prepend");
  EXPECT_EQ(j.at("decoder").at("decoders").size(), 4u);
  const auto back = load_tokenizer_json(dir);
  EXPECT_EQ(back->vocab_size(), 512);
  EXPECT_EQ(back->bos_id(), 1);
  EXPECT_EQ(back->eos_ids(), (Ids{2}));
  EXPECT_TRUE(back->add_bos_by_default());
  EXPECT_TRUE(back->add_space_prefix());
  size_t n = 0;
  for (const std::string& s : gsm8k()) {
    const Ids ids = t.encode(s, true);
    ASSERT_EQ(t.decode(ids, true), s) << "text " << n;
    ASSERT_EQ(back->encode(s, true), ids) << "text " << n;
    ++n;
  }
  // HF form -> GGUF vocab (scores from merge ranks) -> tokenizer: still the same ids.
  const auto again = tokenizer_from_gguf_vocab(back->to_gguf_vocab());
  for (size_t i = 0; i < gsm8k().size(); i += 5)
    ASSERT_EQ(again->encode(gsm8k()[i], true), t.encode(gsm8k()[i], true));
}

// The older HF Llama 2 layout: no normalizer, a Metaspace pre-tokenizer that prepends "▁".
TEST(StoriesTokenizer, MetaspaceLayoutLoads) {
  const fs::path dir = test::scratch_dir("tok_stories_metaspace");
  stories().save_hf(dir);
  json j = json::parse(read_text_file(dir / "tokenizer.json"));
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\u2581"},
                        {"prepend_scheme", "first"},
                        {"split", false}};
  write(dir / "tokenizer.json", j.dump());
  const auto t = load_tokenizer_json(dir);
  EXPECT_TRUE(t->add_space_prefix());
  for (size_t i = 0; i < 200; ++i)
    ASSERT_EQ(t->encode(gsm8k()[i], true), stories().encode(gsm8k()[i], true));
}

TEST(StoriesTokenizer, Llama2ChatTemplateFromConfig) {
  const fs::path dir = test::scratch_dir("tok_stories_chat");
  stories().save_hf(dir);
  json cfg = json::parse(read_text_file(dir / "tokenizer_config.json"));
  cfg["chat_template"] = "{% for m in messages %}[INST] {{ m['content'] }} [/INST]{% endfor %}";
  write(dir / "tokenizer_config.json", cfg.dump());
  const auto t = load_tokenizer_json(dir);
  ASSERT_TRUE(t->has_chat_template());
  const std::vector<ChatMessage> msgs = {{"system", "Be kind."},
                                         {"user", " Hi there "},
                                         {"assistant", "Hello!"},
                                         {"user", "Tell a story."}};
  EXPECT_EQ(t->apply_chat_template(msgs, true),
            "<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\n Hi there [/INST] Hello! </s><s>[INST] Tell "
            "a story. [/INST]");
  EXPECT_THROW(t->apply_chat_template({{"assistant", "x"}}, false), Error);
}

// ---------------------------------------------------------------- malformed input

TEST(TokenizerErrors, MalformedTokenizerJson) {
  const fs::path dir = test::scratch_dir("tok_malformed");
  const std::string byte_level_pre =
      R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";
  struct Case {
    const char* name;
    std::string text;
    std::string field;
  };
  const std::vector<Case> cases = {
      {"not_json", "{ this is not json", "not valid JSON"},
      {"no_model", R"({"version": "1.0"})", "model"},
      {"no_vocab", R"({"model": {"type": "BPE", "merges": []}})", "model.vocab"},
      {"bad_type", R"({"model": {"type": "WordPiece", "vocab": {}}, )" + byte_level_pre + "}",
       "model.type"},
      {"bad_id",
       R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}, )" + byte_level_pre + "}",
       "model.vocab[\"a\"]"},
      {"no_merges", R"({"model": {"type": "BPE", "vocab": {"a": 0}}, )" + byte_level_pre + "}",
       "model.merges"},
      {"unknown_merge",
       R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", "a c"]}, )" +
           byte_level_pre + "}",
       "model.merges[1]"},
      {"bad_merge",
       R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["abc"]}, )" + byte_level_pre +
           "}",
       "model.merges[0]"},
      {"bad_regex",
       R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "use_regex": false}]}})",
       "pre_tokenizer.pretokenizers[0].pattern.Regex"},
      {"bad_added",
       R"({"added_tokens": [{"id": -1, "content": "x"}], "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, )" +
           byte_level_pre + "}",
       "added_tokens[0].id"},
      {"unknown_kind", R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}})",
       "pre_tokenizer"},
  };
  for (const Case& c : cases) {
    const fs::path file = dir / (std::string(c.name) + ".json");
    write(file, c.text);
    const std::string err = test::error_of([&] { load_tokenizer_json(file); });
    EXPECT_NE(err.find(file.string()), std::string::npos) << c.name << ": " << err;
    EXPECT_NE(err.find(c.field), std::string::npos) << c.name << ": " << err;
  }
  const std::string missing = test::error_of([&] { load_tokenizer_json(dir / "absent.json"); });
  EXPECT_NE(missing.find("absent.json"), std::string::npos) << missing;
  // A broken sidecar is named too.
  const fs::path side = test::scratch_dir("tok_malformed_side");
  write(side / "tokenizer.json",
        R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, )" + byte_level_pre + "}");
  write(side / "tokenizer_config.json", R"({"bos_token": "<nope>"})");
  const std::string err = test::error_of([&] { load_tokenizer_json(side); });
  EXPECT_NE(err.find("tokenizer_config.json: bos_token"), std::string::npos) << err;
}

// Hostile tokenizer.json files (issue 14): each used to crash, hang or allocate gigabytes.
TEST(TokenizerErrors, HostileTokenizerJson) {
  const fs::path dir = test::scratch_dir("tok_hostile");
  const std::string vocab = R"("model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []})";
  auto error_for = [&](const std::string& name, const std::string& text) {
    const fs::path file = dir / (name + ".json");
    write(file, text);
    const auto t0 = std::chrono::steady_clock::now();
    const std::string err = test::error_of([&] { load_tokenizer_json(file); });
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0)
        << name;
    EXPECT_NE(err.find(file.string()), std::string::npos) << name << ": " << err;
    return err;
  };
  // 200k levels in decoder / pre_tokenizer: the recursive type search overflowed the stack.
  const std::string deep = std::string(200000, '[') + std::string(200000, ']');
  EXPECT_NE(
      error_for("deep_decoder", "{" + vocab + R"(, "decoder": )" + deep + "}").find("nests deeper"),
      std::string::npos);
  EXPECT_NE(error_for("deep_pre", "{" + vocab + R"(, "pre_tokenizer": {"type": "Sequence", "x": )" +
                                      deep + "}}")
                .find("nests deeper"),
            std::string::npos);
  // One id of 2^24 in a tiny file once sized every table (3.7 GB).
  for (int64_t id : {int64_t{1} << 20, int64_t{1} << 24, int64_t{1} << 27}) {
    const std::string err = error_for(
        "huge_id", R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": )" + std::to_string(id) +
                       R"(}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}})");
    EXPECT_NE(err.find("model.vocab"), std::string::npos) << err;
  }
  // A ByteLevel decoder without a pre_tokenizer: a missing key read through const operator[].
  EXPECT_NE(error_for("no_pre", "{" + vocab + R"(, "decoder": {"type": "ByteLevel"}})")
                .find("pre_tokenizer"),
            std::string::npos);
  // A post-processor whose SpecialToken is not an object.
  error_for("bad_post", "{" + vocab +
                            R"(, "pre_tokenizer": {"type": "ByteLevel"}, "post_processor":
                            {"type": "TemplateProcessing", "single": [{"SpecialToken": 5}]}})");
}

TEST(TokenizerErrors, SplitRegexEdgeCases) {
  // "$" matches empty at the very end: the step past it read one byte beyond the text.
  std::vector<std::string_view> parts;
  const std::string text = "ab";
  tok::RegexSplitter("$").split(std::string_view(text).substr(0, 2), parts);
  ASSERT_EQ(parts.size(), 1u);
  EXPECT_EQ(parts[0], "ab");
  // Catastrophic backtracking ends in an error, not a hang.
  tok::RegexSplitter bad("(a|a)*$");
  parts.clear();
  const auto t0 = std::chrono::steady_clock::now();
  const std::string err = test::error_of([&] { bad.split(std::string(40, 'a') + "!", parts); });
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0);
  EXPECT_NE(err.find("backtracking limit"), std::string::npos) << err;
}

TEST(TokenizerErrors, GgufVocabKeys) {
  const fs::path file = test::scratch_dir("tok_gguf_bad") / "bad.gguf";
  std::map<std::string, io::GgufValue> md;
  md["tokenizer.ggml.model"] = {io::GgufType::STRING, std::string("llama"), {}, {}};
  io::write_gguf(file, md, {});
  const std::string err = test::error_of([&] { gguf_vocab_from_file(io::GgufFile(file)); });
  EXPECT_NE(err.find(file.string()), std::string::npos) << err;
  EXPECT_NE(err.find("tokenizer.ggml.tokens"), std::string::npos) << err;
  GgufVocab v;
  v.model = "bert";
  v.tokens = {"a"};
  EXPECT_NE(test::error_of([&] { tokenizer_from_gguf_vocab(v); }).find("tokenizer.ggml.model"),
            std::string::npos);
  v.model = "gpt2";
  v.pre = "mystery";
  EXPECT_NE(test::error_of([&] { tokenizer_from_gguf_vocab(v); }).find("mystery"),
            std::string::npos);
}

}  // namespace
}  // namespace drafteu
