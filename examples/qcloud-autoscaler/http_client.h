#pragma once

// A small blocking HTTP/1.0 client for the autoscaler's two calls out: the
// Prometheus query and the webhook. One request per connection, the answer
// read to the end (HTTP/1.0: no chunking), bounded in size and time.

#include <chrono>
#include <string>
#include <string_view>

#include "qcloud/core/result.h"

namespace qcloud::examples {

struct HttpUrl {
  std::string host;
  std::string port = "80";
  std::string path = "/";
};

// "http://host[:port][/path]". kInvalidArgument otherwise.
Result<HttpUrl> ParseHttpUrl(std::string_view url);

struct HttpReply {
  int status = 0;
  std::string body;
};

// kUnavailable (connect, send or receive failed or timed out),
// kTooLarge (the answer is over max_bytes), kProtocolError (not HTTP).
Result<HttpReply> HttpCall(const HttpUrl& url, std::string_view method, std::string_view target,
                           std::string_view content_type, std::string_view body, std::chrono::milliseconds timeout,
                           size_t max_bytes = size_t{64} << 20);

}  // namespace qcloud::examples
