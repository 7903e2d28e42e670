// Worker threads for one forward pass of the fast path (model/fast_forward). A decode step runs
// dozens of small parallel products; an OpenMP region with OMP_WAIT_POLICY=passive wakes a
// sleeping thread through a futex for each one, which costs more than the product saves. Here the
// workers are woken once per forward (ForwardThreads), poll for work between products (spinning,
// bounded) while it lasts, and sleep once it ends, so an idle process still uses no CPU.
//
// Work is handed out in chunks that whichever thread is free claims: on a shared machine a worker
// that the OS has descheduled never holds the caller up, the caller simply runs more chunks.
// Which thread runs a chunk never changes its result.
#pragma once
#include <cstdint>
#include <type_traits>

namespace drafteu {

// While alive, up to `threads` threads (the caller and threads - 1 workers) share the chunks of
// parallel_chunks() calls made on this thread. One forward at a time uses the workers: a nested
// or concurrent ForwardThreads (another thread's forward) runs its chunks on its own caller.
class ForwardThreads {
 public:
  explicit ForwardThreads(int threads);
  ~ForwardThreads();
  ForwardThreads(const ForwardThreads&) = delete;
  ForwardThreads& operator=(const ForwardThreads&) = delete;

  // Threads that share the work (1 = the caller only).
  int threads() const { return threads_; }

 private:
  int threads_ = 1;
};

// Lets this thread's workers sleep until the next parallel_chunks() call (for example before a
// BLAS call that brings its own OpenMP threads: polling workers would compete with them).
void rest_forward_threads();

// fn(ctx, i) for every i in [0, chunks), returning when all have run. Shared with the workers of
// this thread's ForwardThreads; on the caller alone outside one.
void parallel_chunks(int64_t chunks, void (*fn)(void*, int64_t), void* ctx);

template <class F>
void parallel_chunks(int64_t chunks, F&& f) {
  parallel_chunks(
      chunks, [](void* c, int64_t i) { (*static_cast<std::remove_reference_t<F>*>(c))(i); }, &f);
}

}  // namespace drafteu
