#include "model/thread_pool.h"

#include <immintrin.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

namespace drafteu {

namespace {

// How long an idle worker polls for the next chunk before it sleeps. Between two products of
// a forward the caller spends a few microseconds on norms and RoPE: polling covers that gap
// without a futex round trip; a longer pause (a BLAS call, a descheduled caller) ends in sleep.
constexpr auto kPollTime = std::chrono::microseconds(50);

using Chunk = void (*)(void*, int64_t);

// Spins until done() or kPollTime has passed; true if done() came first.
template <class Done>
bool poll(Done done) {
  const auto until = std::chrono::steady_clock::now() + kPollTime;
  for (int i = 0;; ++i) {
    if (done()) return true;
    _mm_pause();
    if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) return false;
  }
}

// The process's workers. Every field the workers read is atomic, with the default sequentially
// consistent order: the handshake below relies on a single order of these operations, and it
// costs a few atomics per product, nothing next to the product.
//
// A job is published under an even epoch in the high half of `state_`; its low half counts the
// chunks claimed. Claims are compare-and-swaps that name the epoch, so a worker that read a job
// late can no longer claim from it once the caller has closed it (odd epoch) and moved on.
class Pool {
 public:
  static Pool& get() {
    static Pool* pool = new Pool;  // never destroyed: sleeping workers are not joined at exit
    return *pool;
  }

  // Takes the workers for this thread's forward; false if another forward has them.
  bool acquire(int workers) {
    if (!owner_.try_lock()) return false;
    for (; started_ < workers; ++started_)
      std::thread([this, id = started_] { work(id); }).detach();
    workers_ = workers;  // woken by the first run(): a forward with nothing to split wakes none
    return true;
  }
  void release() {
    active_ = 0;  // workers see it while polling and go to sleep
    owner_.unlock();
  }
  void rest() { active_ = 0; }

  void run(int64_t n, Chunk fn, void* ctx) {
    if (active_ == 0) active_ = workers_;  // the signal below wakes them
    fn_ = fn;
    ctx_ = ctx;
    n_ = n;
    done_ = 0;
    epoch_ += 2;
    state_ = uint64_t{epoch_} << 32;
    signal();
    const int64_t mine = claim(epoch_, n, fn, ctx);
    if (done_.fetch_add(mine) + mine < n && !poll([&] { return done_ >= n; })) {
      // A worker holds a chunk but is slow (descheduled on a busy machine): sleep rather than
      // spin, so that the core is free for it.
      waiting_ = true;
      for (int64_t d = done_; d < n; d = done_) done_.wait(d);
      waiting_ = false;
    }
    // Closed, with no chunk left: late workers' claims fail from here on.
    state_ = uint64_t{epoch_ + 1} << 32 | 0xffffffffu;
  }

 private:
  void signal() {
    ++signal_;
    if (sleepers_ > 0) signal_.notify_all();
  }

  // Runs chunks of job `epoch` until none is left; returns how many this thread ran.
  int64_t claim(uint32_t epoch, int64_t n, Chunk fn, void* ctx) {
    int64_t ran = 0;
    uint64_t s = state_;
    while (static_cast<uint32_t>(s >> 32) == epoch && static_cast<int64_t>(s & 0xffffffffu) < n) {
      if (state_.compare_exchange_weak(s, s + 1)) {
        fn(ctx, static_cast<int64_t>(s & 0xffffffffu));
        ++ran;
        s = state_;
      }
    }
    return ran;
  }

  void work(int id) {
    uint32_t seen = 0;
    for (;;) {
      // Read the signal first: any change after this read makes the wait below return at once.
      const uint32_t sig = signal_;
      auto open_job = [&] {
        const uint32_t e = static_cast<uint32_t>(state_ >> 32);
        return e != seen && e % 2 == 0;
      };
      if (id < active_ && poll([&] { return id >= active_ || open_job(); }) && id < active_) {
        const uint32_t e = static_cast<uint32_t>(state_ >> 32);
        if (e % 2 == 0) {
          Chunk fn = fn_;
          void* ctx = ctx_;
          const int64_t n = n_;
          // The claims check that `e` is still open, so fn, ctx and n above belong to it.
          if (const int64_t ran = claim(e, n, fn, ctx)) {
            done_ += ran;
            if (waiting_) done_.notify_all();
          }
          seen = e;
        }
        continue;
      }
      ++sleepers_;
      signal_.wait(sig);
      --sleepers_;
    }
  }

  std::mutex owner_;
  int started_ = 0;
  int workers_ = 0;
  uint32_t epoch_ = 0;  // the caller's; even = open
  alignas(64) std::atomic<uint64_t> state_{0};
  std::atomic<Chunk> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> n_{0};
  std::atomic<int> active_{0};
  alignas(64) std::atomic<int64_t> done_{0};
  std::atomic<bool> waiting_{false};  // the caller sleeps on done_
  alignas(64) std::atomic<uint32_t> signal_{0};
  std::atomic<int> sleepers_{0};
};

thread_local bool t_owns_pool = false;

}  // namespace

ForwardThreads::ForwardThreads(int threads) {
  if (threads < 2 || t_owns_pool || !Pool::get().acquire(threads - 1)) return;
  t_owns_pool = true;
  threads_ = threads;
}

ForwardThreads::~ForwardThreads() {
  if (threads_ < 2) return;
  Pool::get().release();
  t_owns_pool = false;
}

void rest_forward_threads() {
  if (t_owns_pool) Pool::get().rest();
}

void parallel_chunks(int64_t chunks, Chunk fn, void* ctx) {
  if (!t_owns_pool || chunks < 2) {
    for (int64_t i = 0; i < chunks; ++i) fn(ctx, i);
    return;
  }
  Pool::get().run(chunks, fn, ctx);
}

}  // namespace drafteu
