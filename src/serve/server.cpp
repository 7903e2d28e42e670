#include "serve/server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>

#include "serve/http_guard.h"
#include "util/error.h"
#include "util/json.h"

namespace drafteu::serve {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string sse(const json& j) {
  return "data: " + dump_json(j) + "\n\n";
}

ApiError invalid_api_key() {
  return {401, "Incorrect API key provided", "invalid_request_error", "", "invalid_api_key"};
}

void reply(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump_json(e.body()), "application/json");
}

}  // namespace

// One request between its HTTP thread and the worker: stream events or the final body.
struct Server::Job {
  CompletionRequest req;
  std::vector<int64_t> prompt;
  std::string id;
  int64_t created = 0;
  uint64_t number = 0;
  uint64_t sequence = 0;  // id in the worker's SpeculativeBatch
  Clock::time_point t0 = Clock::now();
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::string> events;  // server-sent events not yet written
  bool done = false;
  bool started = false;  // the worker took it (a completion joined the batch)
  int status = 200;
  std::string body;
  std::atomic<bool> cancelled{false};  // the client went away
  bool score = false;                  // a /v1/score request (run whole on the worker)
  ScoreRequest score_req;
  // Worker side, while decoding.
  std::optional<ResponseAssembler> out;
  std::vector<double> eu;
  std::vector<bool> flags;

  void push(std::string event) {
    std::lock_guard lock(mu);
    events.push_back(std::move(event));
    cv.notify_all();
  }
  void mark_started() {
    std::lock_guard lock(mu);
    started = true;
    cv.notify_all();
  }
  void finish(int s, std::string b) {
    std::lock_guard lock(mu);
    status = s;
    body = std::move(b);
    done = true;
    cv.notify_all();
  }
  void fail(const ApiError& e) {
    if (req.stream) {
      push(sse(e.body()));
      push("data: [DONE]\n\n");
    }
    finish(e.status, dump_json(e.body()));
  }
};

Server::Server(SpeculativeDecoder& decoder, std::shared_ptr<Tokenizer> tokenizer,
               ServerConfig config)
    : decoder_(decoder),
      tok_(std::move(tokenizer)),
      config_(std::move(config)),
      http_(std::make_unique<httplib::Server>()) {
  if (!tok_) fail("serve: the model has no tokenizer");
  if (config_.max_queue < 0) fail("serve: --max-queue must be >= 0");
  if (config_.max_batch < 1) fail("serve: --max-batch must be >= 1");
  seed_base_ = std::random_device{}();
  ScoringModels scoring;
  scoring.drafts = decoder_.drafts_ptr();
  scoring.reference = decoder_.reference_family();
  scorer_ = std::make_unique<TokenScorer>(std::move(scoring));
  routes();
}

Server::~Server() {
  stop();
}

bool Server::authorized(const std::string& header) const {
  if (config_.api_key.empty()) return true;
  return constant_time_equal(header, "Bearer " + config_.api_key);
}

void Server::configure_http() {
  auto& s = *http_;
  s.set_payload_max_length(config_.max_body_bytes);
  // One request per connection: after a body cut at the limit, or a request that failed to parse,
  // the rest of the stream is never read as the next request (httplib 0.11 buffers a header line
  // whole, so a long "line" would be held in memory).
  s.set_keep_alive_max_count(1);
  const auto threads = static_cast<size_t>(std::max(1, config_.http_threads));
  s.new_task_queue = [threads] { return new ConnectionThreads(threads); };
  // httplib's own errors (unknown route, body too large, unreadable request) get OpenAI's body.
  s.set_error_handler(httplib::Server::Handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e;
    e.status = res.status;
    e.message = res.status == 404   ? "unknown route"
                : res.status == 413 ? "request body too large"
                                    : "bad request";
    e.code = res.status == 404 ? "not_found" : res.status == 413 ? "payload_too_large" : "";
    reply(res, e);
  }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    reply(res, {500, "internal error", "server_error", "", ""});
  });
}

void Server::routes() {
  configure_http();
  auto& s = *http_;
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(dump_json({{"status", "ok"}}), "application/json");
    metrics_.count_request("/health", 200);
  });
  s.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req.get_header_value("Authorization"))) return reply(res, invalid_api_key());
    res.set_content(metrics_.prometheus(), "text/plain; version=0.0.4");
  });
  s.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req.get_header_value("Authorization")))
      return answer_error(res, "/v1/models", invalid_api_key());
    json model = {
        {"id", config_.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "drafteu"}};
    res.set_content(dump_json({{"object", "list"}, {"data", json::array({model})}}),
                    "application/json");
    metrics_.count_request("/v1/models", 200);
  });
  for (auto [endpoint, route] : {std::pair{Endpoint::Completions, "/v1/completions"},
                                 std::pair{Endpoint::Chat, "/v1/chat/completions"}})
    s.Post(route, [this, endpoint, route](const httplib::Request& req, httplib::Response& res,
                                          const httplib::ContentReader& reader) {
      post_completion(endpoint, route, req, res, reader);
    });
  s.Post("/v1/score",
         [this](const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader& reader) { post_score(req, res, reader); });
}

std::optional<ApiError> Server::read_authorized(const httplib::Request& req,
                                                const httplib::ContentReader& reader,
                                                std::string& body) const {
  if (auto e = read_body(req, reader, body)) return e;
  if (!authorized(req.get_header_value("Authorization"))) return invalid_api_key();
  return std::nullopt;
}

std::optional<ApiError> Server::check_lengths(Endpoint ep, const Job& job) const {
  const char* prompt = ep == Endpoint::Chat ? "messages" : "prompt";
  const auto n = static_cast<int64_t>(job.prompt.size());
  if (n > config_.limits.max_prompt_tokens)
    return ApiError{400,
                    cat("the prompt is ", n, " tokens, above this server's limit of ",
                        config_.limits.max_prompt_tokens),
                    "invalid_request_error", prompt, "context_length_exceeded"};
  const int64_t context = decoder_.target().config().max_position_embeddings;
  if (n + job.req.max_tokens > context)
    return ApiError{
        400,
        cat("This model's maximum context length is ", context, " tokens. However, you requested ",
            n + job.req.max_tokens, " tokens (", n, " in the ", prompt, ", ", job.req.max_tokens,
            " in the completion). Please reduce the length of the ", prompt, " or completion."),
        "invalid_request_error", "max_tokens", "context_length_exceeded"};
  return std::nullopt;
}

std::optional<ApiError> Server::enqueue(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_)
      return ApiError{503, "the server is shutting down", "server_error", "", "shutting_down"};
    if (static_cast<int64_t>(queue_.size()) >= config_.max_queue)
      return ApiError{429, "too many requests queued; retry later", "rate_limit_error", "",
                      "queue_full"};
    job->number = next_id_++;
    if (!job->score)
      job->id = (job->req.endpoint == Endpoint::Chat ? "chatcmpl-" : "cmpl-") +
                std::to_string(job->number);
    queue_.push_back(job);
    metrics_.set_queue_depth(static_cast<int64_t>(queue_.size()));
  }
  cv_.notify_one();
  return std::nullopt;
}

// An error in OpenAI's shape, counted under its route.
void Server::answer_error(httplib::Response& res, const std::string& route, const ApiError& e) {
  reply(res, e);
  metrics_.count_request(route, e.status);
}

void Server::post_completion(Endpoint ep, const std::string& route, const httplib::Request& req,
                             httplib::Response& res, const httplib::ContentReader& reader) {
  auto error = [&](const ApiError& e) { answer_error(res, route, e); };
  std::string body;
  if (auto e = read_authorized(req, reader, body)) return error(*e);
  auto job = std::make_shared<Job>();
  try {
    job->req = parse_request(ep, body, {config_.model_name}, config_.limits);
    job->prompt = prompt_token_ids(job->req, *tok_);
  } catch (const ApiException& e) {
    return error(e.error);
  } catch (const std::exception& e) {  // the tokenizer's own complaints
    return error({400, e.what(), "invalid_request_error", "", ""});
  }
  if (auto e = check_lengths(ep, *job)) return error(*e);
  job->created = std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count();
  if (auto e = enqueue(job)) return error(*e);
  if (!job->req.stream) return respond(job, res, route);
  metrics_.count_request(route, 200);
  stream_events(job, res);
}

// Server-sent events as the worker produces them; a client gone mid-stream cancels the job.
void Server::stream_events(const std::shared_ptr<Job>& job, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [this, job](size_t, httplib::DataSink& sink) {
        std::unique_lock lock(job->mu);
        job->cv.wait(lock, [&] { return !job->events.empty() || job->done; });
        while (!job->events.empty()) {
          std::string event = std::move(job->events.front());
          job->events.pop_front();
          lock.unlock();
          if (!sink.write(event.data(), event.size())) {
            job->cancelled = true;
            return false;
          }
          lock.lock();
        }
        if (job->done) {
          sink.done();
          metrics_.observe_latency(std::chrono::duration<double>(Clock::now() - job->t0).count());
        }
        return true;
      });
}

void Server::post_score(const httplib::Request& req, httplib::Response& res,
                        const httplib::ContentReader& reader) {
  const std::string route = "/v1/score";
  auto error = [&](const ApiError& e) { answer_error(res, route, e); };
  std::string body;
  if (auto e = read_authorized(req, reader, body)) return error(*e);
  auto job = std::make_shared<Job>();
  job->score = true;
  try {
    job->score_req =
        parse_score_request(body, {config_.model_name}, config_.limits, config_.score_limits,
                            decoder_.target().config().max_position_embeddings, *tok_);
  } catch (const ApiException& e) {
    return error(e.error);
  }
  if (auto e = enqueue(job)) return error(*e);
  respond(job, res, route);
}

std::optional<ApiError> Server::read_body(const httplib::Request& req,
                                          const httplib::ContentReader& reader,
                                          std::string& body) const {
  switch (read_limited_body(req, reader, config_.max_body_bytes, body)) {
    case BodyRead::Ok:
      return std::nullopt;
    case BodyRead::TooLarge:
      return ApiError{413, cat("request body too large (limit ", config_.max_body_bytes, " bytes)"),
                      "invalid_request_error", "", "payload_too_large"};
    case BodyRead::Broken:
      break;
  }
  return ApiError{400, "the request body could not be read", "invalid_request_error", "", ""};
}

// A non-streaming answer. While the request decodes, the response is already open and carries a
// space every heartbeat (JSON allows leading whitespace): a write that fails means the client
// went away, which cancels the request as it does for streams.
void Server::respond(const std::shared_ptr<Job>& job, httplib::Response& res,
                     const std::string& route) {
  {
    std::unique_lock lock(job->mu);
    job->cv.wait(lock, [&] { return job->done || job->started; });
    if (job->done) {
      res.status = job->status;
      res.set_content(job->body, "application/json");
      metrics_.count_request(route, job->status);
      metrics_.observe_latency(std::chrono::duration<double>(Clock::now() - job->t0).count());
      return;
    }
  }
  metrics_.count_request(route, 200);
  const auto beat = std::chrono::milliseconds(std::max<int64_t>(1, config_.heartbeat_ms));
  res.set_chunked_content_provider(
      "application/json", [this, job, beat](size_t, httplib::DataSink& sink) {
        std::unique_lock lock(job->mu);
        if (!job->cv.wait_for(lock, beat, [&] { return job->done; })) {
          lock.unlock();
          if (sink.write(" ", 1)) return true;
          job->cancelled = true;
          return false;
        }
        const std::string body = job->body;
        lock.unlock();
        if (!sink.write(body.data(), body.size())) return false;
        sink.done();
        metrics_.observe_latency(std::chrono::duration<double>(Clock::now() - job->t0).count());
        return true;
      });
}

void Server::start() {
  {
    std::lock_guard lock(mu_);
    if (started_) fail("serve: already started");
    started_ = true;
  }
  // httplib listens with a backlog of 5, so a burst of clients overflows the accept queue
  // (connections dropped or reset). Linux lets listen() on a listening socket set a new backlog.
  std::atomic<int> fd{-1};
  http_->set_socket_options([&fd](socket_t sock) {
    httplib::default_socket_options(sock);
    fd = static_cast<int>(sock);
  });
  if (config_.port == 0) {
    port_ = http_->bind_to_any_port(config_.host);
    if (port_ < 0) fail("serve: cannot bind ", config_.host, " on any port");
  } else {
    if (!http_->bind_to_port(config_.host, config_.port))
      fail("serve: cannot bind ", config_.host, ":", config_.port);
    port_ = config_.port;
  }
  if (fd >= 0) ::listen(fd, SOMAXCONN);
  http_->set_socket_options(httplib::default_socket_options);  // the lambda's `fd` is local
  worker_ = std::thread([this] { worker_loop(); });
  listener_ = std::thread([this] { http_->listen_after_bind(); });
}

void Server::stop() {
  {
    std::unique_lock lock(mu_);
    if (stopping_) {
      stopped_cv_.wait(lock, [&] { return stopped_; });
      return;
    }
    stopping_ = true;  // new requests get 503 from here on
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();  // drains: queued and running requests finish
  http_->stop();
  if (listener_.joinable()) listener_.join();
  std::lock_guard lock(mu_);
  stopped_ = true;
  stopped_cv_.notify_all();
}

void Server::wait() {
  std::unique_lock lock(mu_);
  stopped_cv_.wait(lock, [&] { return stopped_; });
}

void Server::worker_loop() {
  auto batch = std::make_unique<SpeculativeBatch>(decoder_);
  std::map<uint64_t, std::shared_ptr<Job>> running;  // batch sequence id -> job
  for (;;) {
    std::vector<std::shared_ptr<Job>> admitted, scoring;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || !running.empty(); });
      if (running.empty() && queue_.empty()) return;  // stopping, nothing left
      // Score requests run whole between rounds; completions join while the batch has room.
      while (!queue_.empty() &&
             (queue_.front()->score ||
              static_cast<int64_t>(running.size() + admitted.size()) < config_.max_batch)) {
        auto& job = queue_.front();
        metrics_.observe_queue_wait(std::chrono::duration<double>(Clock::now() - job->t0).count());
        (job->score ? scoring : admitted).push_back(std::move(job));
        queue_.pop_front();
      }
      metrics_.set_queue_depth(static_cast<int64_t>(queue_.size()));
    }
    for (auto& job : scoring) {
      job->mark_started();
      run_score_job(*job);
    }
    for (auto& job : admitted) {
      try {
        start_job(job, *batch);
      } catch (const ApiException& e) {
        job->fail(e.error);
      } catch (const std::exception& e) {
        job->fail({400, e.what(), "invalid_request_error", "", ""});
      }
    }
    for (auto& job : admitted)
      if (!job->done) {
        job->mark_started();
        running.emplace(job->sequence, job);
      }
    if (running.empty()) continue;
    metrics_.observe_batch(static_cast<int64_t>(running.size()));
    try {
      for (const auto& result : batch->step()) {
        auto it = running.find(result.id);
        finish_job(*it->second, result);
        running.erase(it);
      }
    } catch (const std::exception& e) {  // the batch is lost: every request in it fails
      for (auto& [id, job] : running)
        job->fail({500, cat("generation failed: ", e.what()), "server_error", "", ""});
      running.clear();
      batch = std::make_unique<SpeculativeBatch>(decoder_);
    }
  }
}

void Server::start_job(const std::shared_ptr<Job>& job, SpeculativeBatch& batch) {
  const auto& r = job->req;
  SpeculativeOptions o = config_.defaults;
  o.sampling = r.sampling;
  o.max_new_tokens = r.max_tokens;
  o.seed = r.seed.value_or(seed_base_ + job->number);
  o.top_logprobs = r.top_logprobs;
  job->out.emplace(r, *tok_, job->id, job->created, static_cast<int64_t>(job->prompt.size()),
                   o.gamma.name());
  Job* j = job.get();
  auto stop_ids = o.stop_ids;
  job->sequence = batch.add(job->prompt, std::move(o), [j, stop_ids](const SpecToken& t) {
    if (j->cancelled) return false;
    if (std::find(stop_ids.begin(), stop_ids.end(), t.id) != stop_ids.end()) {
      j->out->count_hidden_token();  // end of sequence: counted, not shown
      return true;
    }
    if (t.uncertainty) {
      j->eu.push_back(t.uncertainty->eu_hat);
      j->flags.push_back(t.uncertainty->flagged);
    }
    bool stop_hit = false;
    auto chunk = j->out->add(t, &stop_hit);
    if (j->req.stream) j->push(sse(chunk));
    return !stop_hit;
  });
  if (r.stream && r.endpoint == Endpoint::Chat) job->push(sse(job->out->first_chunk()));
}

void Server::finish_job(Job& job, const SpeculativeBatch::Finished& result) {
  auto summary = summarize(job.eu, job.flags, config_.calibration);
  const auto& st = result.stats;
  metrics_.add_generation(static_cast<int64_t>(result.tokens.size()), st.proposed, st.accepted,
                          st.proposed_per_position(), st.accepted_per_position(), job.eu,
                          result.finish == FinishReason::Uncertainty, !summary.flagged.empty());
  const std::string reason = to_string(result.finish);
  if (job.req.stream) {
    job.push(sse(job.out->final_chunk(reason, result.stats, summary)));
    job.push("data: [DONE]\n\n");
    job.finish(200, "");
  } else {
    job.finish(200, dump_json(job.out->response(reason, result.stats, summary)));
  }
}

}  // namespace drafteu::serve

namespace drafteu::serve {

void Server::run_score_job(Job& job) {
  try {
    json data = json::array();
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (size_t i = 0; i < job.score_req.inputs.size(); ++i) {
      if (job.cancelled) return job.finish(499, "");  // nobody is waiting for the answer
      const auto& in = job.score_req.inputs[i];
      SequenceSummary summary;
      data.push_back(score_entry(static_cast<int64_t>(i),
                                 scorer_->score(in.prompt, in.completion, tok_.get()),
                                 config_.defaults.policy, config_.calibration, &summary));
      prompt_tokens += static_cast<int64_t>(in.prompt.size());
      completion_tokens += static_cast<int64_t>(in.completion.size());
    }
    metrics_.add_scored(completion_tokens);
    json out = {{"object", "score"},
                {"model", job.score_req.model},
                {"data", std::move(data)},
                {"usage",
                 {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", completion_tokens},
                  {"total_tokens", prompt_tokens + completion_tokens}}}};
    job.finish(200, dump_json(out));
  } catch (const std::exception& e) {
    job.fail({500, cat("scoring failed: ", e.what()), "server_error", "", ""});
  }
}

}  // namespace drafteu::serve
