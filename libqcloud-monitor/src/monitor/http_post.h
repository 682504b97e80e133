#pragma once

// One blocking HTTP/1.1 POST on a fresh connection (the client SDK's
// remote writes, the webhooks): its status code, or the connection's error.
// `headers`: extra header lines, each ending in CRLF. Each of connect, send
// and receive is bounded by `timeout`.

#include <chrono>
#include <string>

#include "qcloud/core/endpoint.h"
#include "qcloud/core/result.h"

namespace qcloud::monitor::detail {

Result<int> HttpPost(const Endpoint& ep, const std::string& path, const std::string& headers, const std::string& body,
                     std::chrono::milliseconds timeout);

}  // namespace qcloud::monitor::detail
