#pragma once

// qcloud::kv::Server — serves a Store over memcached's protocols (text,
// meta and binary, chosen per connection by its first byte) on TCP.
//
//   auto store = Store::Open({.memory_bytes = 1 << 30}).value();
//   auto server = Server::Open(*store, {.listen = "127.0.0.1:11311", .threads = 2}).value();
//   std::vector<std::thread> workers;
//   for (unsigned i = 0; i < server->threads(); ++i)
//     workers.emplace_back([&, i] { (void)server->Serve(i); });
//   ...                                   // on SIGTERM:
//   server->Stop();
//   for (auto& t : workers) t.join();
//
// The server owns no threads: the caller runs Serve(i) for each worker
// index on a thread of its own. Each worker has its own listening socket
// (SO_REUSEPORT, the kernel spreads connections), its own io_uring and its
// own connections, so workers share nothing but the Store. A worker batches
// every connection's receives and sends into one io_uring_enter per loop:
// with many connections that is far fewer system calls per request than an
// epoll loop (epoll_wait + read + write for each request).
//
// Thread safety: Serve() once per worker index; Stop() from any thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
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
  std::string version = "1.6.18-qcloud";   // reported by `version`; clients expect 1.6+
  Logger* logger = nullptr;                // null = discard
};

class QCLOUD_EXPORT Server {
 public:
  // Binds the listening sockets (one per worker). Errors: kInvalidArgument
  // (bad options or address), the bind/listen failure (e.g. address in use),
  // kNotSupported when io_uring is unavailable (kernel or seccomp policy).
  static Result<std::unique_ptr<Server>> Open(Store& store, const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // The bound address, "127.0.0.1:PORT" (the real port when 0 was asked).
  const std::string& address() const noexcept;
  unsigned threads() const noexcept;

  // Runs worker `index`'s loop until Stop(); then closes its connections
  // (replies already produced are sent first, for up to 1 s) and returns.
  Status Serve(unsigned index);
  // Asks every worker to finish. Idempotent; any thread.
  void Stop();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::kv
