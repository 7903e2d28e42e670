// The CLI as a user runs it: the real stories260K, the real Llama 3 tokenizer, bad flags.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_support.h"

namespace drafteu::test {
namespace {

std::string cli(const std::string& args) {
  return drafteu_bin() + " " + args;
}
std::string quote(const std::string& s) {
  return "'" + s + "'";
}

TEST(Cli, GenerateGreedyStoryFromBos) {
  auto r = run_command(cli("generate --model " + quote(stories260k_gguf()) +
                           " --max-tokens 40 --temperature 0 --threads 1"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("Once upon a time", 0), 0u) << r.out;
}

TEST(Cli, GenerateJsonTokensAndSeededSampling) {
  std::string base =
      cli("generate --model " + quote(stories260k_gguf()) +
          " --prompt 'The cat' --max-tokens 12 --temperature 0.8 --top-k 40 --top-p 0.9 --json");
  auto a = run_command(base + " --seed 5");
  auto b = run_command(base + " --seed 5");
  auto c = run_command(base + " --seed 6");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);  // same seed, same tokens
  EXPECT_NE(a.out, c.out);
  std::istringstream lines(a.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j["id"].is_number_integer());
    EXPECT_TRUE(j["text"].is_string());
    EXPECT_LE(j["logprob"].get<double>(), 0.0);
    ++n;
  }
  EXPECT_GT(n, 0);
  EXPECT_LE(n, 12);
}

TEST(Cli, TokenizeDetokenizeLlama3) {
  auto tok = quote(llama3_tokenizer_json());
  auto r = run_command(cli("tokenize --tokenizer " + tok + " --text 'Hello world!'"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[9906,1917,0]\n");
  r = run_command(cli("detokenize --tokenizer " + tok + " --ids '[9906, 1917, 0]'"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Hello world!\n");
  r = run_command(cli("tokenize --tokenizer " + quote(stories260k_gguf()) +
                      " --text 'Once upon a time' --bos"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)[0], 1);
}

TEST(Cli, ConvertGgufToHfAndBackGeneratesTheSameText) {
  auto dir = scratch_dir("cli_convert");
  auto r = run_command(
      cli("convert --input " + quote(stories260k_gguf()) + " --output " + quote(dir / "hf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_command(
      cli("convert --input " + quote(dir / "hf") + " --output " + quote(dir / "back.gguf")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto gen = [&](const std::string& model) {
    return run_command(cli("generate --model " + quote(model) + " --max-tokens 30 --temperature 0"))
        .out;
  };
  std::string a = gen(stories260k_gguf());
  EXPECT_EQ(a, gen(dir / "hf"));
  EXPECT_EQ(a, gen(dir / "back.gguf"));
}

TEST(Cli, BadInputGivesOneClearErrorAndNonZeroExit) {
  struct Case {
    std::string args, expect;
  };
  auto dir = scratch_dir("cli_bad");
  std::string missing = (dir / "nope.gguf").string();
  std::string not_model = (dir / "notes.txt").string();
  run_command("echo hello > " + quote(not_model));
  std::string trunc = (dir / "trunc.gguf").string();
  run_command("head -c 1000 " + quote(stories260k_gguf()) + " > " + quote(trunc));
  // The CLI configs' own top-level keys are typed like the field tables' (2.5 is no count).
  const std::string gen = (dir / "gen.json").string(), drafts = (dir / "drafts.json").string();
  run_command(
      "echo '{\"prompts\": \"p.jsonl\", \"target\": \"preset:tiny\", "
      "\"responses\": 2.5}' > " +
      quote(gen));
  run_command("echo '{\"target\": \"preset:tiny\", \"splits\": \"3\"}' > " + quote(drafts));
  std::vector<Case> cases = {
      {"gen-data --config " + quote(gen) + " --out " + quote((dir / "g").string()),
       "gen.json: field 'responses' must be an integer"},
      {"train-drafts --config " + quote(drafts) + " --out " + quote((dir / "d").string()),
       "drafts.json: field 'splits' must be an integer"},
      {"generate --model x --bogus", "--bogus"},
      {"frobnicate", "frobnicate"},
      {"generate --model " + quote(missing), "nope.gguf"},
      {"generate --model " + quote(not_model), "notes.txt"},
      {"generate --model " + quote(trunc), "trunc.gguf"},
      {"generate --model " + quote(stories260k_gguf()) + " --temperature -1", "--temperature"},
      {"generate --model " + quote(stories260k_gguf()) + " --max-tokens abc", "--max-tokens"},
      {"detokenize --tokenizer " + quote(stories260k_gguf()) + " --ids '[1, 2'", "--ids"},
      {"detokenize --tokenizer " + quote(stories260k_gguf()) + " --ids '[99999]'", "99999"},
      {"convert --input " + quote(stories260k_gguf()) + " --output x --dtype f64", "--dtype"},
  };
  for (const auto& c : cases) {
    auto r = run_command(cli(c.args));
    EXPECT_NE(r.exit_code, 0) << c.args;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(r.err.find("terminate called"), std::string::npos) << r.err;
  }
}

// Hostile score input (issue 14): each record fails with the file, line and reason, at once.
TEST(Cli, ScoreRejectsHostileRecords) {
  auto dir = scratch_dir("cli_score_hostile");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return (dir / name).string();
  };
  std::string long_prompt = "{\"prompt_ids\": [1";
  for (int i = 0; i < 3000; ++i) long_prompt += ", 5";
  long_prompt += "], \"response_ids\": [7]}\n";
  struct Case {
    std::string file, expect;
  };
  const std::vector<Case> cases = {
      {write("missing.jsonl", "{\"prompt_ids\": [1]}\n"), "'response_ids' is missing"},
      {write("long.jsonl", long_prompt), "longer than the models' context of 2048"},
      {write("huge.jsonl", "{\"prompt\": \"" + std::string(17 << 20, 'a') + "\"}\n"),
       "exceeds the limit"},
      {write("deep.jsonl", std::string(100000, '[') + std::string(100000, ']') + "\n"),
       "nests deeper"},
  };
  for (const auto& c : cases) {
    auto r = run_command(cli("score --threads 1 --target " + quote(stories260k_gguf()) +
                             " --family-size 2 --input " + quote(c.file) + " --output " +
                             quote((dir / "out.jsonl").string())));
    EXPECT_NE(r.exit_code, 0) << c.file;
    EXPECT_NE(r.err.find(c.file + ":1"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.expect), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir / "out.jsonl"));
  }
}

TEST(Cli, HelpAndDoctor) {
  auto r = run_command(cli("--help"));
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"generate", "tokenize", "detokenize", "convert", "doctor"})
    EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  r = run_command(cli("generate --help"));
  EXPECT_NE(r.out.find("--temperature"), std::string::npos);
  r = run_command(cli("doctor"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("libtorch"), std::string::npos);
  EXPECT_NE(r.out.find("BLAS loaded"), std::string::npos);
  EXPECT_NE(r.out.find("openblas"), std::string::npos)
      << "setup must make libtorch load OpenBLAS:\n"
      << r.out;

  // BLAS kernels without any user setting: on an AVX2 CPU never OpenBLAS's SSE3 fallback, and
  // doctor says why. An explicit OPENBLAS_CORETYPE wins.
  r = run_command("env -u OPENBLAS_CORETYPE -u DRAFTEU_BLAS_AUTO " + cli("doctor"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("BLAS kernels"), std::string::npos) << r.out;
  if (r.out.find("CPU SIMD       AVX") != std::string::npos) {
    EXPECT_EQ(r.out.find("BLAS kernels   Prescott"), std::string::npos) << r.out;
  }
  r = run_command("env -u DRAFTEU_BLAS_AUTO OPENBLAS_CORETYPE=Haswell " + cli("doctor"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("BLAS kernels   Haswell (OPENBLAS_CORETYPE=Haswell set by the user)"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace drafteu::test
