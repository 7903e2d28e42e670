// Defences of the HTTP layer that Debian's cpp-httplib (0.11) lacks:
//  - ConnectionThreads: a thread per connection up to a cap, so that slow clients (headers sent a
//    byte at a time) hold only their own thread and cannot starve /health, as they do with a
//    fixed pool of N threads;
//  - read_limited_body: the body limit for chunked transfer too (httplib bounds only bodies with a
//    Content-Length);
//  - constant_time_equal: the API key comparison, whose time does not depend on where the given
//    key first differs.
#pragma once
#include <httplib.h>

#include <cstddef>
#include <memory>
#include <string>

namespace drafteu::serve {

class ConnectionThreads : public httplib::TaskQueue {
 public:
  explicit ConnectionThreads(size_t max_threads);
  // Blocks the accept loop while `max_threads` connections are open.
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;  // waits for the open connections to end

 private:
  struct State;
  std::shared_ptr<State> state_;  // shared with the threads, which outlive enqueue()
};

enum class BodyRead { Ok, TooLarge, Broken };
// Reads the request body into `body`, stopping after `limit` bytes.
BodyRead read_limited_body(const httplib::Request& req, const httplib::ContentReader& reader,
                           size_t limit, std::string& body);

bool constant_time_equal(const std::string& given, const std::string& expected);

}  // namespace drafteu::serve
