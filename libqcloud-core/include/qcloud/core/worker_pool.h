#pragma once

// qcloud::WorkerPool — a fixed set of threads running posted jobs in
// order of posting (FIFO; with more than one thread, jobs overlap).
// For work that must leave an event loop's thread: blocking disk writes,
// fsyncs, group commits.
//
//   WorkerPool pool(2);
//   auto done = pool.Submit([&] { return disk->Append(chunk); });  // std::future
//   ...
//   Result<ChunkId> id = done.get();
//
// The destructor runs every job already posted, then joins the threads.
// Thread safety: Post and Submit from any thread.

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "qcloud/core/export.h"

namespace qcloud {

class QCLOUD_EXPORT WorkerPool {
 public:
  explicit WorkerPool(unsigned threads);  // at least one thread is started
  ~WorkerPool();
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  void Post(std::function<void()> job);

  // Posts fn and returns the future of its result.
  template <typename Fn>
  auto Submit(Fn fn) -> std::future<std::invoke_result_t<Fn&>> {
    using R = std::invoke_result_t<Fn&>;
    auto task = std::make_shared<std::packaged_task<R()>>(std::move(fn));
    std::future<R> result = task->get_future();
    Post([task] { (*task)(); });
    return result;
  }

  unsigned threads() const noexcept { return static_cast<unsigned>(threads_.size()); }

 private:
  void Loop();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace qcloud
