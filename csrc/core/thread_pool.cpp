#include "thread_pool.h"

#include <chrono>
#include <cstdlib>
#include <string>

namespace jamba {

namespace {
thread_local bool tl_in_pool = false;
constexpr int kSpinMicros = 50;

int configured_threads() {
  if (const char* env = std::getenv("JAMBA_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

inline void split(int64_t n, int parts, int index, int64_t& b, int64_t& e) {
  b = n * index / parts;
  e = n * (index + 1) / parts;
}
}  // namespace

ThreadPool& ThreadPool::instance() {
  // Leaked on purpose: worker threads must outlive every addon instance (worker_threads, jest).
  static ThreadPool* pool = new ThreadPool(configured_threads());
  return *pool;
}

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stop_ = true;
  { std::lock_guard<std::mutex> lk(wake_mutex_); generation_++; }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_loop(int index) {
  tl_in_pool = true;
  uint64_t seen = 0;
  for (;;) {
    // Spin briefly: within a forward pass jobs follow each other within microseconds and a futex
    // wake costs more. Not longer: between passes the JS thread needs the core (sampling, text).
    uint64_t g = generation_.load(std::memory_order_acquire);
    const auto spin_until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
    while (g == seen) {
      for (int i = 0; i < 64 && g == seen; ++i) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
        g = generation_.load(std::memory_order_acquire);
      }
      if (std::chrono::steady_clock::now() > spin_until) break;
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(wake_mutex_);
      wake_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
      g = generation_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_) return;
    int64_t b, e;
    split(n_, size(), index, b, e);
    if (b < e) (*task_)(b, e);
    pending_.fetch_sub(1, std::memory_order_acq_rel);
  }
}

void ThreadPool::parallel_for(int64_t n, const Task& fn) {
  if (n <= 0) return;
  if (tl_in_pool || workers_.empty() || n == 1) { fn(0, n); return; }
  std::unique_lock<std::mutex> job(job_mutex_, std::try_to_lock);
  if (!job.owns_lock()) { fn(0, n); return; }  // another model is using the pool: don't wait for it
  tl_in_pool = true;
  task_ = &fn;
  n_ = n;
  pending_.store(int(workers_.size()), std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(wake_mutex_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  int64_t b, e;
  split(n, size(), 0, b, e);
  if (b < e) fn(b, e);
  while (pending_.load(std::memory_order_acquire) != 0) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  tl_in_pool = false;
}

}  // namespace jamba
