#pragma once

// qcloud::runtime — the Asio server runtime, for servers written against
// Boost.Asio/Beast (HTTP front ends, /metrics): N io_contexts, one thread
// each (one per core by default), listeners with SO_REUSEPORT so the kernel
// spreads connections across the threads, a graceful stop, and a drain
// deadline after which the stop is forced.
//
// It is a component of its own so that a program linking only qcloud::core
// or qcloud::kv has no Boost on its include path. This header is Asio's
// contract on purpose: servers built on it are written against
// boost::asio::io_context and tcp::socket. It installs no signal handler:
// the program's Lifecycle (qcloud/core/lifecycle.h) calls Stop().
//
//   auto rt = Runtime::Open({.threads = 2}).value();
//   rt->Listen(ParseEndpoint("127.0.0.1:11311").value(),
//              [](tcp::socket s, size_t shard) { /* serve s on its context */ });
//   rt->OnStop([] { /* close idle connections */ });
//   life->Spawn("http", [&] { return rt->Run(); });
//   life->OnStop("http", [&] { rt->Stop(); return Status::Ok(); });
//
// Thread safety: Listen() and OnStop() before Run()/Start(); Stop() from any
// thread, any number of times.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "qcloud/core/endpoint.h"
#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud {

struct RuntimeOptions {
  unsigned threads = 0;                           // io_contexts/threads; 0 = one per core
  std::chrono::milliseconds drain_timeout{5000};  // after Stop(), time for work to finish
  int listen_backlog = 1024;                      // listen(2) backlog per socket
  Logger* logger = nullptr;  // not owned, must outlive the Runtime; null = discard
};

// Between core's Endpoint and Asio's.
QCLOUD_EXPORT boost::asio::ip::tcp::endpoint ToAsio(const Endpoint& endpoint);
QCLOUD_EXPORT Endpoint FromAsio(const boost::asio::ip::tcp::endpoint& endpoint);

class QCLOUD_EXPORT Runtime {
 public:
  using AcceptHandler = std::function<void(boost::asio::ip::tcp::socket socket, size_t shard)>;

  static Result<std::unique_ptr<Runtime>> Open(const RuntimeOptions& options);
  // Stops (if running) and joins every thread.
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  size_t size() const noexcept { return shards_.size(); }
  boost::asio::io_context& context(size_t shard) noexcept { return shards_[shard]->io; }

  // Listens on `endpoint` with one SO_REUSEPORT socket per io_context; each
  // accepted socket is handed to `handler` on the thread of the context that
  // accepted it. Returns the bound endpoint (port 0 picks a free port, the
  // same for all shards). Errors: the bind/listen failure (e.g. in use).
  Result<Endpoint> Listen(const Endpoint& endpoint, AcceptHandler handler);

  // `hook` runs once when a stop begins, on an io_context thread, after the
  // listeners have closed: servers close idle connections there and let busy
  // ones finish.
  void OnStop(std::function<void()> hook);

  // Runs every io_context (the caller's thread runs context 0) until Stop()
  // and the drain finish. Returns ok after a clean drain, kTimedOut when the
  // drain deadline forced the stop.
  Status Run();
  // As Run(), without blocking: threads for every context; then Join().
  void Start();
  Status Join();
  // Begins a graceful stop: close listeners, run the stop hooks, let the
  // remaining work finish for up to drain_timeout, then stop the contexts.
  void Stop();
  bool stopping() const noexcept { return stopping_.load(std::memory_order_acquire); }

 private:
  struct Shard {
    boost::asio::io_context io{1};
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
    std::vector<std::unique_ptr<boost::asio::ip::tcp::acceptor>> acceptors;
  };
  explicit Runtime(const RuntimeOptions& options);
  void AcceptLoop(size_t shard, boost::asio::ip::tcp::acceptor& acceptor,
                  const std::shared_ptr<AcceptHandler>& handler);
  void BeginStop();
  void RunShard(size_t shard);
  void StartFrom(size_t first_shard);

  RuntimeOptions options_;
  Logger* logger_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<std::function<void()>> stop_hooks_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> forced_{false};
  std::mutex mu_;
  bool started_ = false;
  bool joined_ = false;
  std::atomic<int64_t> drain_deadline_ns_{0};  // steady_clock; 0 = no stop yet
};

}  // namespace qcloud
