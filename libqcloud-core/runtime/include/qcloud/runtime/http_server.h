#pragma once

// HttpServer: HTTP/1.1 on core's connection loop (qcloud/core/tcp_server.h:
// io_uring, or epoll where refused), one loop per thread, for servers that
// answer requests with whole responses (the monitor's Prometheus API).
// Beast's parser reads the requests (Content-Length bodies, pipelining,
// keep-alive, Expect: 100-continue; a chunked body gets 411 Length
// Required and a closed connection); a handler turns each
// HttpRequest (qcloud/core/http.h) into an HttpResponse.
//
//   auto http = HttpServer::Open([&](const HttpRequest& r) { return api.Handle(r); },
//                                {.listen = "127.0.0.1:9090", .threads = 2}).value();
//   for (unsigned i = 0; i < http->threads(); ++i)
//     life->Spawn("http", [&, i] { return http->Serve(i); });
//   life->OnStop("http", [&] { http->Stop(); return Status::Ok(); });
//
// Bounds: request headers max_header_bytes in all (larger: 431), bodies
// max_body_bytes (larger: 413), a connection idle for idle_timeout closed.
// A malformed request gets 400 and a closed connection; other connections
// never notice.
//
// Thread safety: Serve(i) once per worker on its own thread; Stop() and
// stats() from any thread; the handler is called on the worker threads,
// concurrently across them.

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "qcloud/core/clock.h"
#include "qcloud/core/endpoint.h"
#include "qcloud/core/export.h"
#include "qcloud/core/http.h"
#include "qcloud/core/log.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/core/tcp_server.h"

namespace qcloud {

struct HttpServerOptions {
  std::string listen = "127.0.0.1:0";            // endpoint.h grammar; port 0 = pick a free port
  unsigned threads = 1;                           // worker loops (call Serve(i) for each)
  size_t max_connections = 1024;
  size_t max_header_bytes = 16 * 1024;            // request line and headers
  size_t max_body_bytes = size_t{64} << 20;       // a request body
  std::chrono::milliseconds idle_timeout{60000};  // 0 = never
  LoopBackend backend = LoopBackend::kAuto;
  Clock* clock = nullptr;    // not owned; null = RealClock()
  Logger* logger = nullptr;  // not owned; null = discard
};

class QCLOUD_EXPORT HttpServer {
 public:
  static Result<std::unique_ptr<HttpServer>> Open(HttpHandler handler, const HttpServerOptions& options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  const Endpoint& address() const noexcept;
  unsigned threads() const noexcept;
  Status Serve(unsigned index);
  void Stop();
  TcpServerStats stats() const noexcept;

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud
