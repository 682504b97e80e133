// HttpServer: requests framed from any split of the input, pipelining,
// keep-alive and close, Expect: 100-continue, percent-decoding, and the
// bounds (431, 413, 400 and a closed connection) — over the session alone
// and over real sockets on both loop backends.

#include "qcloud/runtime/http_server.h"

#include <doctest/doctest.h>

#include <future>
#include <string>

#include "qcloud/core/bytes.h"
#include "qcloud/testing/doctest_helpers.h"
#include "runtime/http_session.h"
#include "socket_client.h"

namespace qcloud {
namespace {

HttpResponse Echo(const HttpRequest& r) {
  std::string body = r.method + " " + r.path + " ?" + r.query + " [" + r.body + "] " + std::string(r.Header("x-a"));
  return HttpResponse{.body = body};
}

// Feeds `input` to a session in pieces of `step` bytes, as a loop would
// (unconsumed bytes offered again with more); returns all output.
std::string Drive(const std::string& input, size_t step, const HttpServerOptions& o, bool* closing = nullptr) {
  HttpHandler h = Echo;
  auto s = runtime_internal::NewHttpSession(h, o);
  Buffer out;
  std::string pending;
  for (size_t i = 0; i < input.size() && !s->closing(); i += step) {
    pending += input.substr(i, step);
    const size_t used = s->Process(ByteView(pending), out);
    REQUIRE(used <= pending.size());
    pending.erase(0, used);
  }
  if (closing) *closing = s->closing();
  return std::string(out.readable().AsStringView());
}

TEST_CASE("http session frames requests across any split and answers in order") {
  const std::string two =
      "GET /a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-A: one\r\n\r\n"
      "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
      "GET /c HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n";
  for (size_t step : {size_t{1}, size_t{2}, size_t{7}, size_t{64}, two.size()}) {
    INFO("step ", step);
    const std::string out = Drive(two, step, {});
    CHECK(out.find("GET /a b ?x=1 [] one") != std::string::npos);
    CHECK(out.find("POST /p ? [hello] ") != std::string::npos);
    CHECK(out.find("GET /c ? [] ") != std::string::npos);
    CHECK(out.find("GET") < out.find("POST /p"));
    CHECK(out.find("Connection: close") == std::string::npos);
  }
}

TEST_CASE("http session answers bad input with 400 413 431 and closes") {
  bool closing = false;
  std::string out = Drive("BLAH\r\n\r\n", 3, {}, &closing);
  CHECK(out.starts_with("HTTP/1.1 400 "));
  CHECK(closing);
  out = Drive("POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'), 10, {.max_body_bytes = 10}, &closing);
  CHECK(out.starts_with("HTTP/1.1 413 "));
  CHECK(closing);
  out = Drive("GET / HTTP/1.1\r\nX-Big: " + std::string(5000, 'y') + "\r\n\r\n", 100, {.max_header_bytes = 1024}, &closing);
  CHECK(out.starts_with("HTTP/1.1 431 "));
  out = Drive("GET /%zz HTTP/1.1\r\n\r\n", 100, {}, &closing);
  CHECK(out.starts_with("HTTP/1.1 400 "));
  out = Drive("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 5, {}, &closing);
  CHECK(out.starts_with("HTTP/1.1 411 "));
  CHECK(closing);
  out = Drive("GET / HTTP/1.0\r\n\r\n", 100, {}, &closing);
  CHECK(out.find("Connection: close") != std::string::npos);
  CHECK(closing);
  // The head alone first (the client waits for the 100 before the body).
  const std::string head = "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n";
  out = Drive(head + "ok", head.size(), {});
  CHECK(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"));
  out = Drive("HEAD / HTTP/1.1\r\n\r\n", 100, {});
  CHECK(out.find("Content-Length: 12") != std::string::npos);  // "HEAD / ? [] "
  CHECK(out.ends_with("\r\n\r\n"));  // no body after a HEAD's head
}

TEST_CASE("http server serves over sockets and one bad client does not touch another") {
  for (LoopBackend b : {LoopBackend::kAuto, LoopBackend::kEpoll}) {
    auto server = REQUIRE_VALUE(HttpServer::Open(Echo, {.backend = b}));
    auto worker = std::async(std::launch::async, [&] { return server->Serve(0); });
    test::SocketClient good(server->address());
    test::SocketClient bad(server->address());
    REQUIRE(good.connected());
    REQUIRE(bad.connected());
    REQUIRE(bad.Send("GARBAGE GARBAGE GARBAGE\r\n\r\n"));
    REQUIRE(good.Send("GET /x HTTP/1.1\r\nHost: h\r\n\r\n"));
    const std::string reply = good.Read(4096, 2000);
    CHECK(reply.starts_with("HTTP/1.1 200 OK"));
    CHECK(reply.find("GET /x ?") != std::string::npos);
    CHECK(bad.Read(12, 2000) == "HTTP/1.1 400");
    server->Stop();
    CHECK_OK(worker.get());
  }
}

TEST_CASE("url query strings decode as forms do") {
  std::vector<std::pair<std::string, std::string>> q;
  REQUIRE(ParseUrlQuery("query=sum%28up%29+by+x&match%5B%5D=a&match%5B%5D=b&empty&=v", q));
  REQUIRE(q.size() == 5);
  CHECK(q[0] == std::pair<std::string, std::string>{"query", "sum(up) by x"});
  CHECK(q[1].first == "match[]");
  CHECK(q[3] == std::pair<std::string, std::string>{"empty", ""});
  std::vector<std::pair<std::string, std::string>> bad;
  CHECK_FALSE(ParseUrlQuery("a=%2", bad));
  CHECK_FALSE(ParseUrlQuery("a=%zz", bad));
}

}  // namespace
}  // namespace qcloud
