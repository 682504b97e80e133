#include "qcloud/core/worker_pool.h"

#include <doctest/doctest.h>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud {
namespace {

TEST_CASE("worker pool: Submit hands back each job's result") {
  WorkerPool pool(2);
  CHECK(pool.threads() == 2);
  std::vector<std::future<Result<int>>> results;
  for (int i = 0; i < 100; ++i) {
    results.push_back(pool.Submit([i]() -> Result<int> {
      if (i % 10 == 0) return InvalidArgument("multiple of ten");
      return i * i;
    }));
  }
  for (int i = 0; i < 100; ++i) {
    Result<int> r = results[static_cast<size_t>(i)].get();
    if (i % 10 == 0) {
      CHECK(r.status() == Errc::kInvalidArgument);
    } else {
      CHECK(r.value() == i * i);
    }
  }
}

TEST_CASE("worker pool: one thread runs jobs in order and the destructor runs what is left") {
  std::vector<int> order;
  std::mutex mu;
  std::atomic<int> ran{0};
  {
    WorkerPool pool(0);  // still one thread
    CHECK(pool.threads() == 1);
    for (int i = 0; i < 1000; ++i) {
      pool.Post([&, i] {
        std::lock_guard lock(mu);
        order.push_back(i);
        ran++;
      });
    }
  }
  CHECK(ran.load() == 1000);
  bool in_order = true;
  for (size_t i = 0; i < order.size(); ++i) in_order = in_order && order[i] == static_cast<int>(i);
  CHECK(in_order);
}

}  // namespace
}  // namespace qcloud
