#include "eval/testbed_models.h"

#include <malloc.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <iomanip>
#include <numeric>
#include <ostream>
#include <random>

#include "eval/answers.h"
#include "model/checkpoint.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::eval {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

double cpu_now() {
  return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

nlohmann::json shape_json(const ModelShape& s) {
  return {{"hidden", s.hidden},
          {"intermediate", s.intermediate},
          {"layers", s.layers},
          {"heads", s.heads},
          {"kv_heads", s.kv_heads}};
}

nlohmann::json train_json(const PretrainOptions& o) {
  return {{"steps", o.steps},
          {"batch_size", o.batch_size},
          {"lr", o.lr},
          {"min_lr_ratio", o.min_lr_ratio},
          {"warmup", o.warmup},
          {"weight_decay", o.weight_decay},
          {"clip_norm", o.clip_norm},
          {"seed", o.seed}};
}

std::vector<int64_t> encode_sequence(const Tokenizer& tok, const std::string& text, bool eos) {
  const auto ids = tok.encode(text, /*add_bos=*/true, /*parse_special=*/false);
  std::vector<int64_t> out(ids.begin(), ids.end());
  if (eos) out.push_back(tok.eos_ids().at(0));
  return out;
}

}  // namespace

std::string prompt_text(const Problem& p) {
  return "Question: " + p.question + "\nAnswer:";
}
std::string training_text(const Problem& p) {
  return prompt_text(p) + " " + p.solution;
}

LlamaConfig testbed_config(const ModelShape& s, int64_t vocab, int64_t max_positions) {
  LlamaConfig c;
  c.vocab_size = vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.intermediate;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = s.kv_heads;
  c.head_dim = s.hidden / s.heads;
  c.max_position_embeddings = max_positions;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  c.validate("testbed model");
  return c;
}

LlamaForCausalLM init_model(const LlamaConfig& c, uint64_t seed) {
  torch::manual_seed(seed);
  LlamaForCausalLM m(c);
  torch::NoGradGuard ng;
  for (auto& p : m->parameters()) {
    if (p.dim() >= 2) {
      p.normal_(0.0, 0.02);
    } else {
      p.fill_(1.0);  // RMSNorm weights
    }
  }
  return m;
}

PretrainStats pretrain(LlamaForCausalLMImpl& model, const std::vector<std::vector<int64_t>>& seqs,
                       const PretrainOptions& o, std::ostream* log, const std::string& label) {
  if (seqs.empty()) fail("pretrain: no training sequences");
  if (o.steps <= 0 || o.batch_size <= 0) fail("pretrain: steps and batch_size must be positive");
  // Keep freed memory: with glibc's defaults, page faults on fresh activations dominate a step.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 1 << 28);
  const auto t0 = Clock::now();
  const double c0 = cpu_now();
  model.train();
  std::vector<torch::Tensor> params;
  for (auto& p : model.parameters()) params.push_back(p);
  torch::optim::AdamW opt(
      params, torch::optim::AdamWOptions(o.lr).betas({0.9, 0.95}).weight_decay(o.weight_decay));
  std::mt19937_64 rng(o.seed ^ 0x9E3779B97F4A7C15ull);
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  size_t cursor = order.size();
  const int64_t vocab = model.config().vocab_size;
  PretrainStats stats;
  double smooth = 0;
  for (int64_t step = 0; step < o.steps; ++step) {
    // Epoch-wise shuffle (Fisher-Yates with our own draws).
    std::vector<size_t> batch;
    while (static_cast<int64_t>(batch.size()) < o.batch_size) {
      if (cursor == order.size()) {
        for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
        cursor = 0;
      }
      batch.push_back(order[cursor++]);
    }
    size_t len = 0;
    for (size_t i : batch) len = std::max(len, seqs[i].size());
    const auto b = static_cast<int64_t>(batch.size()), t = static_cast<int64_t>(len);
    auto ids = torch::zeros({b, t}, torch::kInt64);
    auto targets = torch::full({b, t}, -100, torch::kInt64);
    auto ia = ids.accessor<int64_t, 2>();
    auto ta = targets.accessor<int64_t, 2>();
    for (int64_t r = 0; r < b; ++r) {
      const auto& s = seqs[batch[static_cast<size_t>(r)]];
      for (size_t k = 0; k < s.size(); ++k) {
        ia[r][static_cast<int64_t>(k)] = s[k];
        if (k > 0) ta[r][static_cast<int64_t>(k) - 1] = s[k];
        stats.tokens += k > 0;
      }
    }
    // Right padding needs no mask: causal attention never looks ahead at it.
    const double progress = static_cast<double>(step) / static_cast<double>(o.steps);
    double lr =
        o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + std::cos(M_PI * progress)));
    if (step < o.warmup) lr = o.lr * static_cast<double>(step + 1) / static_cast<double>(o.warmup);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);

    auto logits = model.forward(ids);
    auto loss = torch::nn::functional::cross_entropy(
        logits.reshape({b * t, vocab}), targets.reshape({b * t}),
        torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
    opt.zero_grad();
    loss.backward();
    if (o.clip_norm > 0) torch::nn::utils::clip_grad_norm_(params, o.clip_norm);
    opt.step();
    const double l = loss.item<double>();
    stats.losses.push_back(l);
    smooth = step == 0 ? l : 0.95 * smooth + 0.05 * l;
    if (log && o.log_every > 0 && ((step + 1) % o.log_every == 0 || step + 1 == o.steps))
      *log << "[" << label << "] step " << step + 1 << "/" << o.steps << " loss " << std::fixed
           << std::setprecision(4) << smooth << " lr " << std::setprecision(5) << lr << " "
           << std::setprecision(1) << seconds_since(t0) << "s (cpu " << cpu_now() - c0 << "s)"
           << std::endl;
  }
  model.eval();
  stats.seconds = seconds_since(t0);
  stats.cpu_seconds = cpu_now() - c0;
  return stats;
}

std::vector<std::string> greedy_complete(LlamaForCausalLMImpl& model, const Tokenizer& tok,
                                         const std::vector<std::string>& prompts,
                                         int64_t max_new_tokens, int64_t batch_size) {
  torch::NoGradGuard ng;
  model.eval();
  const int64_t eos = tok.eos_ids().at(0);
  std::vector<std::string> out(prompts.size());
  for (size_t start = 0; start < prompts.size(); start += static_cast<size_t>(batch_size)) {
    const size_t end = std::min(prompts.size(), start + static_cast<size_t>(batch_size));
    const auto b = static_cast<int64_t>(end - start);
    std::vector<std::vector<int64_t>> enc;
    size_t len = 0;
    for (size_t i = start; i < end; ++i) {
      enc.push_back(encode_sequence(tok, prompts[i], false));
      len = std::max(len, enc.back().size());
    }
    const auto t = static_cast<int64_t>(len);
    auto ids = torch::full({b, t}, eos, torch::kInt64);
    auto mask = torch::zeros({b, t}, torch::kInt64);
    auto ia = ids.accessor<int64_t, 2>();
    auto ma = mask.accessor<int64_t, 2>();
    for (int64_t r = 0; r < b; ++r) {  // left padding: every row's last token is at t - 1
      const auto& e = enc[static_cast<size_t>(r)];
      const int64_t off = t - static_cast<int64_t>(e.size());
      for (size_t k = 0; k < e.size(); ++k) {
        ia[r][off + static_cast<int64_t>(k)] = e[k];
        ma[r][off + static_cast<int64_t>(k)] = 1;
      }
    }
    auto cache = model.new_cache(t + max_new_tokens);
    auto logits = model.forward(ids, &cache, mask, /*last_only=*/true);
    std::vector<std::vector<int32_t>> gen(static_cast<size_t>(b));
    std::vector<char> done(static_cast<size_t>(b), 0);
    const auto ones = torch::ones({b, 1}, torch::kInt64);
    for (int64_t step = 0; step < max_new_tokens; ++step) {
      auto next = logits.reshape({b, -1}).argmax(-1);
      auto acc = next.accessor<int64_t, 1>();
      bool all = true;
      for (int64_t r = 0; r < b; ++r) {
        auto& d = done[static_cast<size_t>(r)];
        if (!d && acc[r] == eos) d = 1;
        if (!d) gen[static_cast<size_t>(r)].push_back(static_cast<int32_t>(acc[r]));
        all = all && d;
      }
      if (all || step + 1 == max_new_tokens) break;
      logits = model.forward(next.unsqueeze(1), &cache, ones, /*last_only=*/true);
    }
    for (int64_t r = 0; r < b; ++r)
      out[start + static_cast<size_t>(r)] = tok.decode(gen[static_cast<size_t>(r)], true);
  }
  return out;
}

AccuracyReport evaluate_accuracy(LlamaForCausalLMImpl& model, const Tokenizer& tok,
                                 const std::vector<Problem>& problems, int64_t batch_size) {
  std::vector<std::string> prompts;
  for (const auto& p : problems) prompts.push_back(prompt_text(p));
  const int64_t room = model.config().max_position_embeddings;
  AccuracyReport r;
  r.responses = greedy_complete(model, tok, prompts, std::min<int64_t>(160, room / 2), batch_size);
  double right = 0;
  for (size_t i = 0; i < problems.size(); ++i) {
    r.correct.push_back(is_correct(r.responses[i], static_cast<double>(problems[i].answer)));
    right += r.correct.back();
  }
  r.accuracy = problems.empty() ? 0 : right / static_cast<double>(problems.size());
  return r;
}

TestbedOptions::TestbedOptions() {
  // Sized for ~2-3 CPU minutes at 2 threads on an idle machine (see the report in testbed.json).
  task.difficulty = 0.3;
  target_shape = {128, 352, 4, 4, 4};
  target_train.steps = 600;
  target_train.batch_size = 16;
  target_train.lr = 6e-3;
  target_train.seed = 11;
  DraftSpec d;
  d.shape = {64, 176, 2, 4, 4};
  d.train.steps = 300;
  d.train.batch_size = 16;
  d.train.lr = 6e-3;
  d.train.seed = 21;
  drafts = {d};
}

nlohmann::json TestbedOptions::to_json() const {
  nlohmann::json dj = nlohmann::json::array();
  for (const auto& d : drafts)
    dj.push_back(
        {{"name", d.name}, {"shape", shape_json(d.shape)}, {"train", train_json(d.train)}});
  return {{"version", 1},
          {"task",
           {{"seed", task.seed},
            {"difficulty", task.difficulty},
            {"min_steps", task.min_steps},
            {"max_steps", task.max_steps},
            {"test_percent", task.test_percent}}},
          {"n_train", n_train},
          {"n_test", n_test},
          {"bpe",
           {{"vocab_size", bpe.vocab_size},
            {"min_frequency", bpe.min_frequency},
            {"split_digits", bpe.split_digits}}},
          {"target", {{"shape", shape_json(target_shape)}, {"train", train_json(target_train)}}},
          {"drafts", dj},
          {"max_positions", max_positions},
          {"eval_problems", eval_problems}};
}

std::string TestbedOptions::key() const {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx",
                static_cast<unsigned long long>(stable_hash(to_json().dump())));
  return buf;
}

namespace {

// Pretrains one model, measures its accuracy, saves it under dir.
nlohmann::json train_one(const std::string& name, const ModelShape& shape,
                         const PretrainOptions& train, const TestbedOptions& o,
                         const std::shared_ptr<Tokenizer>& tok,
                         const std::vector<std::vector<int64_t>>& seqs,
                         const std::vector<Problem>& eval_set, const fs::path& dir,
                         std::ostream* log) {
  const auto config = testbed_config(shape, tok->vocab_size(), o.max_positions);
  LoadedModel m;
  m.model = init_model(config, train.seed);
  m.tokenizer = tok;
  m.generation.eos_token_ids = {2};
  m.generation.bos_token_id = 1;
  if (log)
    *log << "[" << name << "] " << config.num_parameters() << " parameters, " << train.steps
         << " steps of " << train.batch_size << " sequences" << std::endl;
  const auto stats = pretrain(*m.model, seqs, train, log, name);
  const auto t0 = Clock::now();
  const auto acc = evaluate_accuracy(*m.model, *tok, eval_set);
  const double eval_s = seconds_since(t0);
  if (log)
    *log << "[" << name << "] accuracy " << std::fixed << std::setprecision(3) << acc.accuracy
         << " on " << eval_set.size() << " test problems (train " << std::setprecision(1)
         << stats.seconds << "s, eval " << eval_s << "s)" << std::endl;
  save_hf_model(m, dir);
  return {{"name", name},
          {"parameters", config.num_parameters()},
          {"accuracy", acc.accuracy},
          {"final_loss", stats.losses.back()},
          {"train_tokens", stats.tokens},
          {"train_seconds", stats.seconds},
          {"train_cpu_seconds", stats.cpu_seconds},
          {"eval_seconds", eval_s},
          {"threads", torch::get_num_threads()}};
}

Testbed describe(const fs::path& dir, const TestbedOptions& o) {
  Testbed t;
  t.dir = dir;
  t.target_dir = dir / "target";
  for (const auto& d : o.drafts) t.draft_dirs.push_back(dir / d.name);
  t.train_jsonl = dir / "train.jsonl";
  t.test_jsonl = dir / "test.jsonl";
  return t;
}

}  // namespace

Testbed build_testbed(const TestbedOptions& o, const fs::path& cache_dir, std::ostream* log) {
  const fs::path final_dir = cache_dir / ("testbed-" + o.key());
  if (fs::exists(final_dir / "testbed.json")) {
    Testbed t = describe(final_dir, o);
    t.info = nlohmann::json::parse(read_text_file(final_dir / "testbed.json"));
    t.from_cache = true;
    if (log) *log << "testbed: reusing " << final_dir.string() << std::endl;
    return t;
  }
  const auto t0 = Clock::now();
  fs::create_directories(cache_dir);
  const fs::path tmp = cache_dir / (".tmp-testbed-" + o.key() + "-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    if (log)
      *log << "testbed: generating " << o.n_train << "+" << o.n_test << " problems" << std::endl;
    const TaskSplits data = generate_task(o.task, o.n_train, o.n_test);
    write_gsm8k_jsonl(tmp / "train.jsonl", data.train);
    write_gsm8k_jsonl(tmp / "test.jsonl", data.test);

    std::vector<std::string> texts;
    for (const auto& p : data.train) texts.push_back(training_text(p));
    auto tb = Clock::now();
    std::shared_ptr<Tokenizer> tok = tokenizer_from_gguf_vocab(train_bpe_vocab(texts, o.bpe));
    tok->save_hf(tmp / "tokenizer");
    std::vector<std::vector<int64_t>> seqs;
    size_t total = 0, longest = 0;
    for (const auto& s : texts) {
      seqs.push_back(encode_sequence(*tok, s, true));
      total += seqs.back().size();
      longest = std::max(longest, seqs.back().size());
    }
    if (static_cast<int64_t>(longest) > o.max_positions)
      fail("testbed: a training sequence has ", longest, " tokens, over max_positions ",
           o.max_positions);
    if (log)
      *log << "testbed: tokenizer of " << tok->vocab_size() << " pieces in " << std::fixed
           << std::setprecision(1) << seconds_since(tb) << "s; " << std::setprecision(1)
           << static_cast<double>(total) / static_cast<double>(seqs.size())
           << " tokens per problem, longest " << longest << std::endl;

    const std::vector<Problem> eval_set(
        data.test.begin(), data.test.begin() + static_cast<std::ptrdiff_t>(
                                                   std::min(o.eval_problems, data.test.size())));
    nlohmann::json info;
    info["options"] = o.to_json();
    info["key"] = o.key();
    info["vocab_size"] = tok->vocab_size();
    info["tokens_per_problem"] = static_cast<double>(total) / static_cast<double>(seqs.size());
    info["target"] = train_one("target", o.target_shape, o.target_train, o, tok, seqs, eval_set,
                               tmp / "target", log);
    info["drafts"] = nlohmann::json::array();
    for (const auto& d : o.drafts)
      info["drafts"].push_back(
          train_one(d.name, d.shape, d.train, o, tok, seqs, eval_set, tmp / d.name, log));
    info["build_seconds"] = seconds_since(t0);
    write_file_atomic(tmp / "testbed.json", info.dump(2) + "\n");
    std::error_code ec;
    fs::rename(tmp, final_dir, ec);
    if (ec) {  // another process finished first: keep theirs
      fs::remove_all(tmp);
      if (!fs::exists(final_dir / "testbed.json"))
        fail("testbed: cannot move ", tmp.string(), " to ", final_dir.string(), ": ", ec.message());
    }
    Testbed t = describe(final_dir, o);
    t.info = nlohmann::json::parse(read_text_file(final_dir / "testbed.json"));
    return t;
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace drafteu::eval
