// One persistent pool of worker threads shared by every model in the process. Work is split
// statically (task i always goes to the same thread for the same task count) so that in decode a
// core keeps re-reading the same slice of weights from its own cache.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace jamba {

class ThreadPool {
 public:
  using Task = std::function<void(int64_t begin, int64_t end)>;

  static ThreadPool& instance();

  // Runs fn over [0, n) split into contiguous ranges, one per thread, and waits for all of them.
  // Calls from inside a worker, or while another caller holds the pool, run inline on the caller.
  void parallel_for(int64_t n, const Task& fn);
  int size() const { return int(workers_.size()) + 1; }

  ~ThreadPool();

 private:
  explicit ThreadPool(int threads);
  void worker_loop(int index);

  std::vector<std::thread> workers_;
  std::mutex job_mutex_;     // one job at a time
  std::mutex wake_mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  const Task* task_ = nullptr;
  int64_t n_ = 0;
};

}  // namespace jamba
