#pragma once

// Blocking HTTP on a fresh connection, for the monitor's own requests: a
// POST (the client SDK's remote writes, the webhooks) answers its status
// code; a GET (scrapes) the whole reply. `headers`: extra header lines,
// each ending in CRLF. Each of connect, send and receive is bounded by
// `timeout`; errors are the connection's, or kUnavailable for an answer
// that is not HTTP.

#include <chrono>
#include <string>
#include <string_view>

#include "qcloud/core/endpoint.h"
#include "qcloud/core/result.h"

namespace qcloud::monitor::detail {

Result<int> HttpPost(const Endpoint& ep, const std::string& path, const std::string& headers, const std::string& body,
                     std::chrono::milliseconds timeout);

struct HttpReply {
  int status = 0;
  std::string content_type;
  std::string body;
};

// Sent as HTTP/1.0 so the answer comes whole (never chunked), ending at its
// Content-Length or at the connection's close. kTooLarge when the body
// passes `max_body_bytes`, kTimedOut past `timeout` in all.
Result<HttpReply> HttpGet(const Endpoint& ep, const std::string& path, const std::string& headers,
                          std::chrono::milliseconds timeout, size_t max_body_bytes);

// An HTTP/1.x reply whose connection has closed (`raw` is all of it):
// status line, headers (Content-Type, Content-Length), body. Exposed for
// the fuzzer. kProtocolError for what is not one.
Result<HttpReply> ParseHttpReply(std::string_view raw, size_t max_body_bytes);

}  // namespace qcloud::monitor::detail
