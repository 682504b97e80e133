#pragma once

// qcloud::kv::Server — serves a Store over memcached's protocols (text,
// meta and binary, chosen per connection by its first byte) on TCP.
//
//   auto store = Store::Open({.memory_bytes = 1 << 30}).value();
//   auto server = Server::Open(*store, {.listen = "127.0.0.1:11311", .threads = 2}).value();
//   for (unsigned i = 0; i < server->threads(); ++i)
//     life->Spawn("worker", [&, i] { return server->Serve(i); });  // qcloud/core/lifecycle.h
//   life->OnStop("kv", [&] { server->Stop(); return Status::Ok(); });
//
// The server owns no threads: the caller runs Serve(i) for each worker
// index on a thread of its own. The connections are core's TcpServer
// (qcloud/core/tcp_server.h): per worker an SO_REUSEPORT listener and an
// io_uring loop (epoll where io_uring is refused), so workers share nothing
// but the Store; this class adds the memcached session and its statistics.
//
// Thread safety: Serve() once per worker index; Stop(), address() and the
// metrics from any thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::kv {

class Store;

struct ServerOptions {
  std::string listen = "127.0.0.1:11311";  // "host:port", numeric host; port 0 = pick one
  unsigned threads = 1;                    // worker loops (call Serve(i) for each)
  size_t max_connections = 4096;           // per server; beyond: "ERROR Too many open connections"
  size_t max_line = 2048;                  // text command line limit (memcached: 2048)
  size_t max_get_line = size_t{8} << 20;   // limit for get/gets lines (many keys)
  size_t output_high_water = size_t{4} << 20;  // stop reading a client with this much unsent
  size_t read_buffer = 16 * 1024;          // initial receive buffer per connection
  int listen_backlog = 1024;               // listen(2) backlog
  std::chrono::milliseconds drain_timeout{1000};  // at Stop(): time to send replies already made
  LoopBackend backend = LoopBackend::kAuto;  // io_uring, or epoll where refused (tcp_server.h)
  std::string version = "1.6.18-qcloud";   // reported by `version`; clients expect 1.6+
  Clock* clock = nullptr;    // drain deadline; not owned, outlives the server; null = real
  Logger* logger = nullptr;  // not owned, outlives the server; null = discard
};

class QCLOUD_EXPORT Server {
 public:
  // Binds the listening sockets (one per worker). `store` is not owned and
  // must outlive the server. Errors: kInvalidArgument (bad options or
  // address), the bind/listen failure (e.g. address in use), kNotSupported
  // when backend = kIoUring and the kernel refuses io_uring.
  static Result<std::unique_ptr<Server>> Open(Store& store, const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound address, "127.0.0.1:PORT" (the real port when 0 was asked).
  const std::string& address() const noexcept;
  unsigned threads() const noexcept;
  // The connection loop's backend: kIoUring or kEpoll.
  LoopBackend backend() const noexcept;

  // Runs worker `index`'s loop until Stop(); then closes its connections
  // (replies already produced are sent first, for up to drain_timeout) and
  // returns. Errors: the loop's (TcpServer::Serve).
  Status Serve(unsigned index);
  // Asks every worker to finish. Idempotent; any thread.
  void Stop();

  // Registers the node's statistics (the rows of memcached's `stats` and
  // `stats cold`, as qcloud_kv_* counters and gauges) in `registry`. They are
  // read at render time from the workers' counters, the connection loop and
  // the store. The registry keeps pointers into this server: do not render it
  // after the server is destroyed. Errors: kAlreadyExists when called twice
  // on one registry.
  Status ExportMetrics(MetricsRegistry& registry);

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::kv
