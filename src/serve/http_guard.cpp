#include "serve/http_guard.h"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace drafteu::serve {

struct ConnectionThreads::State {
  std::mutex mu;
  std::condition_variable cv;
  size_t active = 0, max = 1;
};

ConnectionThreads::ConnectionThreads(size_t max_threads) : state_(std::make_shared<State>()) {
  state_->max = std::max<size_t>(1, max_threads);
}

void ConnectionThreads::enqueue(std::function<void()> fn) {
  auto st = state_;
  {
    std::unique_lock lock(st->mu);
    st->cv.wait(lock, [&] { return st->active < st->max; });
    ++st->active;
  }
  std::thread([st, fn = std::move(fn)] {
    fn();
    std::lock_guard lock(st->mu);
    --st->active;
    st->cv.notify_all();
  }).detach();
}

void ConnectionThreads::shutdown() {
  std::unique_lock lock(state_->mu);
  state_->cv.wait(lock, [&] { return state_->active == 0; });
}

BodyRead read_limited_body(const httplib::Request& req, const httplib::ContentReader& reader,
                           size_t limit, std::string& body) {
  // httplib itself answers a Content-Length above the server's payload limit by discarding the
  // body (reader() fails); a chunked body is cut here, and the connection is then closed.
  bool too_large = req.has_header("Content-Length") &&
                   req.get_header_value<uint64_t>("Content-Length") > static_cast<uint64_t>(limit);
  const bool ok = reader([&](const char* data, size_t n) {
    if (body.size() + n > limit) {
      too_large = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (too_large) return BodyRead::TooLarge;
  return ok ? BodyRead::Ok : BodyRead::Broken;
}

bool constant_time_equal(const std::string& given, const std::string& expected) {
  // Every byte of `expected` is visited whatever `given` holds; only its length shows in time.
  unsigned diff = given.size() != expected.size();
  for (size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>(i < given.size() ? given[i] : 0) ^
            static_cast<unsigned char>(expected[i]);
  return diff == 0;
}

}  // namespace drafteu::serve
