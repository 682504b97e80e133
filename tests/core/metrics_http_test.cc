#include <doctest/doctest.h>

#include <string>

#include "net_client.h"
#include "qcloud/runtime/metrics_http.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud {
namespace {

using boost::asio::ip::tcp;

struct Server {
  Server() {
    rt = REQUIRE_VALUE(Runtime::Open({.threads = 1}));
    auto* c = REQUIRE_VALUE(registry.AddCounter("test_requests_total", "Requests.", {"path"}));
    c->WithLabels({"/a\"b"}).Increment(7);
    ep = ToAsio(
        REQUIRE_VALUE(ServeMetrics(*rt, REQUIRE_VALUE(ParseEndpoint("127.0.0.1:0")), registry)));
    rt->Start();
  }
  ~Server() {
    rt->Stop();
    CHECK_OK(rt->Join());
  }
  MetricsRegistry registry;
  std::unique_ptr<Runtime> rt;
  tcp::endpoint ep;
};

TEST_CASE("metrics http: scrape, keep-alive, HEAD, 404 and 405") {
  Server s;
  test::BlockingClient c(s.ep);
  c.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  auto r = c.ReadHttp();
  CHECK(r.status == 200);
  CHECK(r.headers.find("Content-Type: text/plain; version=0.0.4; charset=utf-8") != std::string::npos);
  CHECK(r.body == s.registry.RenderText());
  CHECK(r.body.find("test_requests_total{path=\"/a\\\"b\"} 7") != std::string::npos);

  c.Send("HEAD /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");  // same connection
  auto h = c.ReadHttp(/*head=*/true);
  CHECK(h.status == 200);
  CHECK(h.headers.find("Content-Length: " + std::to_string(r.body.size())) != std::string::npos);

  c.Send("GET /other HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(c.ReadHttp().status == 404);
  c.Send("POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
  auto p = c.ReadHttp();
  CHECK(p.status == 405);
  CHECK(p.headers.find("Allow: GET, HEAD") != std::string::npos);
}

TEST_CASE("metrics http: oversized and malformed requests get 400 and a close") {
  Server s;
  {
    test::BlockingClient c(s.ep);
    c.Send("GET /metrics HTTP/1.1\r\nX-Big: " + std::string(10000, 'a') + "\r\n\r\n");
    CHECK(c.ReadHttp().status == 400);
    CHECK(c.ClosedByPeer());
  }
  {
    test::BlockingClient c(s.ep);
    c.Send("NOT HTTP AT ALL\r\n\r\n");
    CHECK(c.ReadHttp().status == 400);
    CHECK(c.ClosedByPeer());
  }
  // Other clients are unaffected.
  test::BlockingClient ok(s.ep);
  ok.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(ok.ReadHttp().status == 200);
}

TEST_CASE("metrics http: stop closes idle keep-alive connections") {
  auto s = std::make_unique<Server>();
  test::BlockingClient c(s->ep);
  c.Send("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(c.ReadHttp().status == 200);
  s.reset();  // Stop + Join must not wait for the 30 s idle timeout
  CHECK(c.ClosedByPeer());
}

}  // namespace
}  // namespace qcloud
