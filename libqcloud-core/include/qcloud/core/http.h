#pragma once

// HTTP/1.1 requests and responses as plain values, for the qcloud servers
// that answer HTTP APIs (the monitor's Prometheus API, ...). The transport
// that reads and writes them on core's connection loop is in the runtime
// component (qcloud/runtime/http_server.h); a library that only answers
// requests depends on this header alone.

#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qcloud/core/export.h"

namespace qcloud {

struct QCLOUD_EXPORT HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // as sent: /api/v1/query?query=up
  std::string path;    // the target's path, percent-decoded
  std::string query;   // the target's raw query string (after '?'), "" if none
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased, in order
  std::string body;
  // The first header named `name` (lower-case), or "".
  std::string_view Header(std::string_view name) const noexcept;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  std::string body;
  bool close = false;  // close the connection after it
};

// Called on the connection's worker thread; may block (the worker serves
// its other connections after it returns).
using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

// The reason phrase of a status ("OK", "Not Found", ...; "" if unknown).
QCLOUD_EXPORT std::string_view HttpReason(int status) noexcept;
// Percent-decoding; '+' becomes ' ' when `plus_is_space` (forms, queries).
// False for a malformed escape.
QCLOUD_EXPORT bool UrlDecode(std::string_view in, std::string& out, bool plus_is_space);
// "a=1&b=x%20y" -> {{"a","1"},{"b","x y"}}, in order (repeats kept).
// False for a malformed escape.
QCLOUD_EXPORT bool ParseUrlQuery(std::string_view query, std::vector<std::pair<std::string, std::string>>& out);

}  // namespace qcloud
