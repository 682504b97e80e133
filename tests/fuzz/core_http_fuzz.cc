// Fuzzes the HTTP/1.1 session of core's HttpServer (the monitor's API, and
// any server on it): request framing over Beast's parser, cut into reads
// of a size the first byte picks. The session must never consume more
// than it was given, must keep at most one incomplete request unconsumed
// (bounded by the header and body limits), and every answer it writes
// must start with a status line.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "runtime/http_session.h"

using namespace qcloud;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = 1 + data[0] % 64;
  const std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  static const HttpHandler handler = [](const HttpRequest& r) {
    return HttpResponse{.body = r.method + " " + r.path + " " + std::to_string(r.body.size())};
  };
  static const HttpServerOptions options{.max_header_bytes = 2048, .max_body_bytes = 4096};
  auto s = runtime_internal::NewHttpSession(handler, options);
  Buffer out;
  std::string pending;
  for (size_t i = 0; i < input.size() && !s->closing(); i += step) {
    pending += input.substr(i, step);
    const size_t used = s->Process(ByteView(pending), out);
    if (used > pending.size()) std::abort();
    pending.erase(0, used);
    // One request in progress at most: its head and body, within the limits.
    if (pending.size() > options.max_header_bytes + options.max_body_bytes + 64 * 1024) std::abort();
  }
  const std::string_view text = out.readable().AsStringView();
  if (!text.empty() && !text.starts_with("HTTP/1.1 ")) std::abort();
  return 0;
}
