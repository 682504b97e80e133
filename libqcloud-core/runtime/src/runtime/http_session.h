#pragma once

// Private: HttpServer's per-connection session (HTTP/1.1 framing), for the
// fuzzer and tests that drive it without sockets.

#include <memory>

#include "qcloud/core/http.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/runtime/http_server.h"

namespace qcloud::runtime_internal {

// `handler` and `options` must outlive the session.
std::unique_ptr<StreamSession> NewHttpSession(const HttpHandler& handler, const HttpServerOptions& options);

}  // namespace qcloud::runtime_internal
