// The OpenAI-compatible HTTP server (cpp-httplib):
//   POST /v1/completions, POST /v1/chat/completions   (openai.h; stream: server-sent events)
//   POST /v1/score                                     (score_api.h: teacher-forced scoring)
//   GET  /health, GET /v1/models, GET /metrics          (Prometheus text)
// Requests are validated on the HTTP threads, then queued (bounded: 429 when full) for ONE
// worker thread that owns the models and decodes up to max_batch requests together
// (SpeculativeBatch: one forward per model step for all of them; queued requests join between
// rounds, finished ones leave). Each request keeps its own sampler and options, so its tokens do
// not depend on what it was batched with. Optional API key (Authorization: Bearer) -> 401.
// stop() is graceful: new requests get 503; queued and running ones are answered (drained).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "model/tokenizer/tokenizer.h"
#include "serve/calibration.h"
#include "serve/metrics.h"
#include "serve/openai.h"
#include "serve/score_api.h"
#include "serve/speculative_batch.h"

namespace httplib {
class Server;
struct Response;
struct Request;
class ContentReader;
}  // namespace httplib

namespace drafteu::serve {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;      // 0 = any free port (see Server::port)
  std::string api_key;  // empty = no authentication
  std::string model_name = "drafteu";
  int64_t max_queue = 16;  // requests waiting beyond the running ones
  int64_t max_batch = 8;   // requests decoded together
  ApiLimits limits;
  ScoreLimits score_limits;
  size_t max_body_bytes = 1 << 20;  // chunked bodies included
  int http_threads = 256;           // connections served at once, a thread each
  int64_t heartbeat_ms = 1000;      // non-streaming responses: a space this often while decoding
  // Decoding settings every request shares (sampling, max tokens and seed come per request).
  SpeculativeOptions defaults;
  std::optional<Calibration> calibration;
};

class Server {
 public:
  Server(SpeculativeDecoder& decoder, std::shared_ptr<Tokenizer> tokenizer, ServerConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and starts listening and the worker on background threads. Throws if it cannot bind.
  void start();
  int port() const { return port_; }
  // Graceful shutdown; idempotent. wait() blocks until it has happened.
  void stop();
  void wait();
  Metrics& metrics() { return metrics_; }

 private:
  struct Job;
  void routes();
  void configure_http();  // limits, connection threads, OpenAI-shaped httplib errors
  void post_completion(Endpoint endpoint, const std::string& route, const httplib::Request& req,
                       httplib::Response& res, const httplib::ContentReader& reader);
  void post_score(const httplib::Request& req, httplib::Response& res,
                  const httplib::ContentReader& reader);
  // The body of an authorised request, or the error to answer.
  std::optional<ApiError> read_authorized(const httplib::Request& req,
                                          const httplib::ContentReader& reader,
                                          std::string& body) const;
  std::optional<ApiError> check_lengths(Endpoint endpoint, const Job& job) const;
  std::optional<ApiError> enqueue(const std::shared_ptr<Job>& job);  // 429/503, or queued
  void answer_error(httplib::Response& res, const std::string& route, const ApiError& e);
  void stream_events(const std::shared_ptr<Job>& job, httplib::Response& res);
  void worker_loop();
  void start_job(const std::shared_ptr<Job>& job, SpeculativeBatch& batch);
  void finish_job(Job& job, const SpeculativeBatch::Finished& result);
  void run_score_job(Job& job);
  bool authorized(const std::string& header) const;
  std::optional<ApiError> read_body(const httplib::Request& req,
                                    const httplib::ContentReader& reader, std::string& body) const;
  void respond(const std::shared_ptr<Job>& job, httplib::Response& res, const std::string& route);

  SpeculativeDecoder& decoder_;
  std::shared_ptr<Tokenizer> tok_;
  ServerConfig config_;
  std::unique_ptr<httplib::Server> http_;
  Metrics metrics_;
  std::unique_ptr<TokenScorer> scorer_;  // /v1/score, on the worker thread (it shares the models)
  int port_ = 0;
  std::thread listener_, worker_;
  std::mutex mu_;
  std::condition_variable cv_, stopped_cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false, stopped_ = false, started_ = false;
  uint64_t next_id_ = 0;
  uint64_t seed_base_ = 0;
};

}  // namespace drafteu::serve
