#include "eval/testbed_models.h"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <exception>
#include <functional>
#include <iomanip>
#include <mutex>
#include <numeric>
#include <optional>
#include <ostream>
#include <random>
#include <sstream>
#include <thread>

#include "distill/schedule.h"
#include "distill/trainer.h"
#include "eval/answers.h"
#include "eval/experiment_cache.h"
#include "model/checkpoint.h"
#include "util/error.h"
#include "util/file.h"

namespace drafteu::eval {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// CPU time of the calling thread: pretraining runs single-threaded, possibly beside another.
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// An ostream whose lines reach `out` whole, for logs written from two threads.
class LineLog : public std::ostream {
 public:
  LineLog(std::ostream* out, std::mutex& mu) : std::ostream(&buf_), buf_(out, mu) {}

 private:
  struct Buf : std::stringbuf {
    Buf(std::ostream* out, std::mutex& mu) : out_(out), mu_(mu) {}
    int sync() override {
      if (out_) {
        std::lock_guard<std::mutex> lock(mu_);
        *out_ << str() << std::flush;
      }
      str("");
      return 0;
    }
    std::ostream* out_;
    std::mutex& mu_;
  } buf_;
};

// Items 0..n-1 of `make(i)`, in order. Threaded, a second thread (one libtorch thread) makes
// them at most two ahead of the consumer, and its CPU time is counted; otherwise each is made
// on demand. The producer's exception reaches the consumer at that item.
template <class T>
class Prefetch {
 public:
  Prefetch(int64_t n, std::function<T(int64_t)> make, bool threaded)
      : n_(n), make_(std::move(make)) {
    if (!threaded) return;
    worker_ = std::thread([this] {
      torch::set_num_threads(1);  // OpenMP's thread count is per thread
      const double c0 = cpu_now();
      for (int64_t i = 0; i < n_; ++i) {
        std::optional<T> item;
        std::exception_ptr error;
        try {
          item.emplace(make_(i));
        } catch (...) {
          error = std::current_exception();
        }
        std::unique_lock<std::mutex> lock(mu_);
        room_.wait(lock, [this] { return stop_ || ready_.size() < 2; });
        if (stop_) return;
        if (error) {
          error_ = error;
          filled_.notify_all();
          return;
        }
        ready_.push_back(std::move(*item));
        cpu_seconds_ = cpu_now() - c0;
        filled_.notify_all();
      }
    });
  }
  ~Prefetch() {
    if (!worker_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    room_.notify_all();
    worker_.join();
  }
  Prefetch(const Prefetch&) = delete;
  Prefetch& operator=(const Prefetch&) = delete;

  T next() {
    if (!worker_.joinable()) return make_(next_++);
    std::unique_lock<std::mutex> lock(mu_);
    filled_.wait(lock, [this] { return !ready_.empty() || error_; });
    if (ready_.empty()) std::rethrow_exception(error_);
    T item = std::move(ready_.front());
    ready_.pop_front();
    room_.notify_all();
    return item;
  }
  // CPU seconds the second thread spent making the items handed over so far.
  double cpu_seconds() {
    std::lock_guard<std::mutex> lock(mu_);
    return cpu_seconds_;
  }

 private:
  int64_t n_, next_ = 0;
  std::function<T(int64_t)> make_;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable room_, filled_;
  std::deque<T> ready_;
  std::exception_ptr error_;
  double cpu_seconds_ = 0;
  bool stop_ = false;
};

// One pretraining step's inputs: flat targets (-100 where no loss), and with a teacher its
// float32 log-probabilities at the loss positions `keep`.
struct PretrainBatch {
  torch::Tensor ids, targets, keep, teacher_logp;
  int64_t tokens = 0;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
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

// The draft's layer i is the target's layer round(i (L_t - 1) / (L_d - 1)).
void init_from_pruned_target(LlamaForCausalLMImpl& draft, const LlamaForCausalLMImpl& target,
                             const std::string& name) {
  const auto& d = draft.config();
  const auto& t = target.config();
  if (d.hidden_size != t.hidden_size || d.intermediate_size != t.intermediate_size ||
      d.num_attention_heads != t.num_attention_heads ||
      d.num_key_value_heads != t.num_key_value_heads)
    fail(name, " starts from the pruned target, so it needs the target's width (hidden ",
         t.hidden_size, ", intermediate ", t.intermediate_size, "); it has hidden ", d.hidden_size,
         ", intermediate ", d.intermediate_size);
  if (d.num_hidden_layers > t.num_hidden_layers)
    fail(name, " has ", d.num_hidden_layers, " layers, more than the target it is pruned from (",
         t.num_hidden_layers, ")");
  const int64_t ld = d.num_hidden_layers, lt = t.num_hidden_layers;
  auto source_layer = [&](int64_t i) {
    return ld == 1 ? int64_t{0}
                   : static_cast<int64_t>(std::lround(static_cast<double>(i * (lt - 1)) /
                                                      static_cast<double>(ld - 1)));
  };
  const auto from = target.hf_state();
  torch::NoGradGuard ng;
  for (auto& [key, param] : draft.hf_state()) {
    std::string src = key;
    const std::string prefix = "model.layers.";
    if (key.rfind(prefix, 0) == 0) {
      const auto dot = key.find('.', prefix.size());
      const int64_t i = std::stoll(key.substr(prefix.size(), dot - prefix.size()));
      src = prefix + std::to_string(source_layer(i)) + key.substr(dot);
    }
    const auto it = from.find(src);
    if (it == from.end() || !it->second.sizes().equals(param.sizes()))
      fail(name, ": no target tensor of shape ", param.sizes(), " for ", key);
    param.copy_(it->second);
  }
}

LlamaForCausalLM widen_llama(const LlamaForCausalLMImpl& source, int64_t hidden, uint64_t seed,
                             const std::string& name) {
  const auto& c = source.config();
  const int64_t h = c.hidden_size, hd = c.head_dim;
  if (hidden < h || hidden % hd != 0)
    fail(name, ": cannot widen hidden size ", h, " to ", hidden,
         "; the new hidden size must be a multiple of head_dim ", hd, " and at least ", h);
  // Heads grow with the width; whole heads and whole key/value groups only.
  if ((c.num_attention_heads * hidden) % h != 0 || (c.num_key_value_heads * hidden) % h != 0)
    fail(name, ": cannot widen hidden size ", h, " to ", hidden, ": ", c.num_attention_heads,
         " heads and ", c.num_key_value_heads, " key/value heads do not scale to whole heads");
  LlamaConfig w = c;
  w.hidden_size = hidden;
  w.num_attention_heads = c.num_attention_heads * hidden / h;
  w.num_key_value_heads = c.num_key_value_heads * hidden / h;
  w.intermediate_size = (c.intermediate_size * hidden + h / 2) / h;  // rounded
  const double shrink = static_cast<double>(h) / static_cast<double>(hidden);
  w.rms_norm_eps = c.rms_norm_eps * shrink;
  w.validate(name + " widened");
  LlamaForCausalLM wide(w);
  auto gen = at::detail::createCPUGenerator(seed);
  const auto from = source.hf_state();
  torch::NoGradGuard ng;
  for (auto& [key, param] : wide->hf_state()) {
    const auto it = from.find(key);
    if (it == from.end() || it->second.dim() != param.dim())
      fail(name, ": no source tensor for ", key);
    const auto old = it->second.to(torch::kFloat32);
    auto block = param;
    for (int64_t d = 0; d < param.dim(); ++d) block = block.narrow(d, 0, old.size(d));
    auto ends = [&](const std::string& suffix) {
      return key.size() >= suffix.size() &&
             key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    if (param.dim() == 1) {  // RMSNorm: the new dims read a residual that stays zero
      param.fill_(old.mean().item<double>() * std::sqrt(shrink));
      block.copy_(old * std::sqrt(shrink));
    } else if (ends("embed_tokens.weight") || ends("o_proj.weight") || ends("down_proj.weight")) {
      param.zero_();  // writes into the residual stream
      block.copy_(old);
    } else {
      param.normal_(0.0, old.pow(2).mean().sqrt().item<double>(), gen);
      block.copy_(old);
    }
  }
  wide->to(source.dtype());
  return wide;
}

PretrainStats pretrain(LlamaForCausalLMImpl& model, const std::vector<std::vector<int64_t>>& seqs,
                       const PretrainOptions& o, std::ostream* log, const std::string& label,
                       const std::vector<size_t>& loss_from, const PretrainTeacher& teacher) {
  if (seqs.empty()) fail("pretrain: no training sequences");
  if (!loss_from.empty() && loss_from.size() != seqs.size())
    fail("pretrain: ", loss_from.size(), " loss_from entries for ", seqs.size(), " sequences");
  if (o.steps <= 0 || o.batch_size <= 0) fail("pretrain: steps and batch_size must be positive");
  if (teacher.model && teacher.model->config().vocab_size != model.config().vocab_size)
    fail("pretrain: the teacher's vocabulary (", teacher.model->config().vocab_size,
         ") is not the student's (", model.config().vocab_size, ")");
  distill::tune_malloc_for_training();
  const auto t0 = Clock::now();
  const double c0 = cpu_now();
  model.train();
  std::vector<torch::Tensor> params;
  for (auto& p : model.parameters()) params.push_back(p);
  // distill's optimizer and schedule with the pretraining settings (β2 0.95, cosine to a floor).
  distill::TrainConfig tc;
  tc.lr = o.lr;
  tc.adam_beta2 = 0.95;
  tc.weight_decay = o.weight_decay;
  tc.schedule = {.kind = "cosine_floor", .warmup_steps = o.warmup, .min_lr_ratio = o.min_lr_ratio};
  torch::optim::AdamW opt(params, distill::adamw_options(tc));
  std::mt19937_64 rng(o.seed ^ 0x9E3779B97F4A7C15ull);
  std::vector<size_t> order(seqs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  size_t cursor = order.size();
  const int64_t vocab = model.config().vocab_size;
  PretrainStats stats;
  double smooth = 0;
  // Batches are drawn in step order; with a teacher, its log-probabilities are computed on a
  // second thread one step ahead (the teacher is frozen), which takes its forward off the
  // critical path: the same numbers, a third less wall time on two cores.
  auto make_batch = [&](int64_t) {
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
    PretrainBatch out;
    out.ids = torch::zeros({b, t}, torch::kInt64);
    auto targets = torch::full({b, t}, -100, torch::kInt64);
    auto ia = out.ids.accessor<int64_t, 2>();
    auto ta = targets.accessor<int64_t, 2>();
    for (int64_t r = 0; r < b; ++r) {
      const size_t i = batch[static_cast<size_t>(r)];
      const auto& s = seqs[i];
      const size_t first = loss_from.empty() ? 1 : std::max<size_t>(1, loss_from[i]);
      for (size_t k = 0; k < s.size(); ++k) {
        ia[r][static_cast<int64_t>(k)] = s[k];
        if (k >= first) ta[r][static_cast<int64_t>(k) - 1] = s[k];
        out.tokens += k >= first;
      }
    }
    out.targets = targets.reshape({b * t});
    if (teacher.model) {
      torch::NoGradGuard ng;
      torch::Tensor logits;
      {
        Autocast autocast(o.dtype);
        logits = teacher.model->forward(out.ids);
      }
      out.keep = out.targets.ne(-100).nonzero().squeeze(1);
      out.teacher_logp = torch::log_softmax(
          logits.reshape({b * t, vocab}).index_select(0, out.keep).to(torch::kFloat32), -1);
    }
    return out;
  };
  Prefetch<PretrainBatch> batches(o.steps, make_batch, /*threaded=*/teacher.model != nullptr);
  for (int64_t step = 0; step < o.steps; ++step) {
    const auto bt = batches.next();
    stats.tokens += bt.tokens;
    const int64_t rows = bt.targets.size(0);
    // Right padding needs no mask: causal attention never looks ahead at it.
    const double lr = o.lr * distill::lr_multiplier(tc.schedule, step, o.steps);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);

    torch::Tensor logits;
    {
      Autocast autocast(o.dtype);
      logits = model.forward(bt.ids).reshape({rows, vocab});
    }
    auto loss = torch::nn::functional::cross_entropy(
        logits, bt.targets, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100));
    if (teacher.model) {
      // Forward KL at the loss positions: Σ p_T (log p_T − log q), averaged over loss tokens.
      const auto s = torch::log_softmax(logits.index_select(0, bt.keep).to(torch::kFloat32), -1);
      const auto& lt = bt.teacher_logp;
      const auto kl = (lt.exp() * (lt - s)).sum(-1).mean();
      loss = teacher.ce_weight * loss + (1.0 - teacher.ce_weight) * kl;
    }
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
           << std::setprecision(1) << seconds_since(t0) << "s (cpu "
           << cpu_now() - c0 + batches.cpu_seconds() << "s)" << std::endl;
  }
  model.eval();
  stats.seconds = seconds_since(t0);
  stats.cpu_seconds = cpu_now() - c0 + batches.cpu_seconds();
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

namespace {

// One testbed model: initialised up front (the global generator is not thread-safe), then
// pretrained, evaluated and saved, possibly on another thread.
struct ModelJob {
  std::string name;
  PretrainOptions train;
  LoadedModel model;
  fs::path dir;
  nlohmann::json report;
};

ModelJob make_job(const std::string& name, const ModelShape& shape, const PretrainOptions& train,
                  const TestbedOptions& o, const std::shared_ptr<Tokenizer>& tok,
                  const fs::path& dir) {
  ModelJob j{name, train, {}, dir, {}};
  const auto config = testbed_config(shape, tok->vocab_size(), o.max_positions);
  j.model.model = init_model(config, train.seed);
  j.model.tokenizer = tok;
  j.model.generation.eos_token_ids = {2};
  j.model.generation.bos_token_id = 1;
  return j;
}

// Pretrains the job's model, measures its accuracy, saves it under its dir.
void run_job(ModelJob& j, const std::vector<std::vector<int64_t>>& seqs,
             const std::vector<size_t>& answer_starts, const std::vector<Problem>& eval_set,
             std::ostream* log, const PretrainTeacher& teacher = {}) {
  auto& model = *j.model.model;
  const auto& config = model.config();
  if (log)
    *log << "[" << j.name << "] " << config.num_parameters() << " parameters, " << j.train.steps
         << " steps of " << j.train.batch_size << " sequences"
         << (teacher.model ? ", distilled from the target" : "") << std::endl;
  const auto stats = pretrain(model, seqs, j.train, log, j.name,
                              j.train.answer_only ? answer_starts : std::vector<size_t>{}, teacher);
  const auto t0 = Clock::now();
  const auto acc = evaluate_accuracy(model, *j.model.tokenizer, eval_set);
  const double eval_s = seconds_since(t0);
  if (log)
    *log << "[" << j.name << "] accuracy " << std::fixed << std::setprecision(3) << acc.accuracy
         << " on " << eval_set.size() << " test problems (train " << std::setprecision(1)
         << stats.seconds << "s, eval " << eval_s << "s)" << std::endl;
  save_hf_model(j.model, j.dir);
  j.report = {{"name", j.name},
              {"parameters", config.num_parameters()},
              {"accuracy", acc.accuracy},
              {"final_loss", stats.losses.back()},
              {"train_tokens", stats.tokens},
              {"train_seconds", stats.seconds},
              {"train_cpu_seconds", stats.cpu_seconds},
              {"eval_seconds", eval_s},
              {"distilled_from_target", teacher.model != nullptr},
              {"threads", torch::get_num_threads()}};
}

// Measured on 2 cores: these models train faster on one thread each than on two (OpenMP's
// per-op synchronisation outweighs the small GEMMs), so the target trains on this thread and
// the drafts on a second one, each with one libtorch thread.
// Drafts distilled from the target wait for it: the target trains first, then each such draft
// learns from its logits.
void run_jobs(ModelJob& target, std::vector<ModelJob>& drafts, const std::vector<DraftSpec>& specs,
              const std::vector<std::vector<int64_t>>& seqs,
              const std::vector<size_t>& answer_starts, const std::vector<Problem>& eval_set,
              std::ostream* log) {
  bool distilled = false;  // some draft needs the trained target: train it first
  for (const auto& d : specs) distilled = distilled || d.distill_from_target || d.init_from_target;
  if (distilled) {
    const int saved = torch::get_num_threads();
    torch::set_num_threads(1);
    run_job(target, seqs, answer_starts, eval_set, log);
    for (size_t i = 0; i < drafts.size(); ++i) {
      PretrainTeacher teacher;
      if (specs[i].distill_from_target) teacher.model = target.model.model.get();
      if (specs[i].init_from_target)
        init_from_pruned_target(*drafts[i].model.model, *target.model.model,
                                "testbed: draft '" + specs[i].name + "'");
      run_job(drafts[i], seqs, answer_starts, eval_set, log, teacher);
    }
    torch::set_num_threads(saved);
    return;
  }
  const int saved_threads = torch::get_num_threads();
  torch::set_num_threads(1);
  std::mutex mu;
  LineLog target_log(log, mu), draft_log(log, mu);
  std::exception_ptr draft_error;
  std::thread worker([&] {
    // OpenMP's thread count is per thread: a new thread starts from the default (every core).
    torch::set_num_threads(1);
    try {
      for (auto& d : drafts) run_job(d, seqs, answer_starts, eval_set, log ? &draft_log : nullptr);
    } catch (...) {
      draft_error = std::current_exception();
    }
  });
  std::exception_ptr target_error;
  try {
    run_job(target, seqs, answer_starts, eval_set, log ? &target_log : nullptr);
  } catch (...) {
    target_error = std::current_exception();
  }
  worker.join();
  torch::set_num_threads(saved_threads);
  if (target_error) std::rethrow_exception(target_error);
  if (draft_error) std::rethrow_exception(draft_error);
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
  fs::create_directories(cache_dir);
  remove_stale_temp_dirs(cache_dir);  // of killed builds
  const bool reused = build_directory_once(final_dir, "testbed.json", [&](const fs::path& tmp) {
    const auto t0 = Clock::now();
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
    std::vector<size_t> answer_starts;  // first answer token: where the prompt's tokens end
    size_t total = 0, longest = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      seqs.push_back(encode_sequence(*tok, texts[i], true));
      const auto prompt = encode_sequence(*tok, prompt_text(data.train[i]), false);
      const bool prefix = prompt.size() < seqs.back().size() &&
                          std::equal(prompt.begin(), prompt.end(), seqs.back().begin());
      answer_starts.push_back(prefix ? prompt.size() : 1);  // no clean boundary: every token
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
    ModelJob target = make_job("target", o.target_shape, o.target_train, o, tok, tmp / "target");
    std::vector<ModelJob> drafts;
    for (const auto& d : o.drafts)
      drafts.push_back(make_job(d.name, d.shape, d.train, o, tok, tmp / d.name));
    run_jobs(target, drafts, o.drafts, seqs, answer_starts, eval_set, log);
    info["target"] = target.report;
    info["drafts"] = nlohmann::json::array();
    for (size_t i = 0; i < drafts.size(); ++i) {
      info["drafts"].push_back(drafts[i].report);
      info["drafts"].back()["pruned_from_target"] = o.drafts[i].init_from_target;
    }
    info["build_seconds"] = seconds_since(t0);
    write_file_atomic(tmp / "testbed.json", info.dump(2) + "\n");
  });
  if (reused && log) *log << "testbed: reusing " << final_dir.string() << std::endl;
  Testbed t = describe(final_dir, o);
  t.info = nlohmann::json::parse(read_text_file(final_dir / "testbed.json"));
  t.from_cache = reused;
  return t;
}

}  // namespace drafteu::eval
