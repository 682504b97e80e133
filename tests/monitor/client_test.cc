// The client SDK against a real qcloud-monitord stack in process (core's
// HttpServer, HttpApi, a Tsdb) on 127.0.0.1: what it sends arrives; with
// the receiver away it queues, backs off on the injected clock, drops the
// oldest past its bound, and delivers once the receiver is back.

#include "qcloud/monitor/client.h"

#include <doctest/doctest.h>

#include <future>

#include "qcloud/monitor/http_api.h"
#include "qcloud/monitor/tsdb.h"
#include "qcloud/runtime/http_server.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::monitor {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

// A receiver: Tsdb + HttpApi on an HttpServer, on `listen`.
struct Receiver {
  explicit Receiver(const std::string& listen, int status_override = 0) {
    db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
    api = std::make_unique<HttpApi>(*db);
    server = REQUIRE_VALUE(HttpServer::Open(
        [this, status_override](const HttpRequest& r) {
          if (status_override != 0) return HttpResponse{.status = status_override, .body = "no"};
          return api->Handle(r);
        },
        {.listen = listen}));
    worker = std::async(std::launch::async, [this] { return server->Serve(0); });
  }
  ~Receiver() {
    server->Stop();
    (void)worker.get();
  }
  std::vector<SeriesSamples> All() {
    return REQUIRE_VALUE(db->Select(std::vector{REQUIRE_VALUE(Matcher::Make(MatchType::kRegex, "__name__", ".+"))},
                                    INT64_MIN, INT64_MAX));
  }
  TempDir dir{"qcloud-client"};
  std::unique_ptr<Tsdb> db;
  std::unique_ptr<HttpApi> api;
  std::unique_ptr<HttpServer> server;
  std::future<Status> worker;
};

TEST_CASE("monitor client counters gauges and histograms arrive through remote write") {
  Receiver rx("127.0.0.1:0");
  ManualClock clock;
  auto client = REQUIRE_VALUE(Client::Open({.endpoint = rx.server->address().ToString(),
                                            .labels = {{"job", "billing"}},
                                            .background = false,
                                            .clock = &clock}));
  Counter& orders = client->GetCounter("orders_total", {{"region", "gz"}});
  Gauge& depth = client->GetGauge("queue_depth");
  Histogram& latency = client->GetHistogram("request_seconds", {0.1, 1});
  CHECK(&client->GetCounter("orders_total", {{"region", "gz"}}) == &orders);
  orders.Add(2);
  orders.Add(-5);  // ignored: counters only go up
  depth.Set(17);
  depth.Add(-2);
  for (double v : {0.05, 0.5, 3.0}) latency.Observe(v);
  REQUIRE_OK(client->Flush());
  clock.Advance(15s);
  orders.Add(1);
  REQUIRE_OK(client->Flush());
  auto all = rx.All();
  std::map<std::string, std::vector<double>> got;
  for (const auto& s : all) {
    for (const Sample& x : s.samples) got[s.labels.ToString()].push_back(x.v);
  }
  CHECK(got["orders_total{job=\"billing\", region=\"gz\"}"] == std::vector<double>{2, 3});
  CHECK(got["queue_depth{job=\"billing\"}"] == std::vector<double>{15, 15});
  CHECK(got["request_seconds_bucket{job=\"billing\", le=\"0.1\"}"].back() == 1);
  CHECK(got["request_seconds_bucket{job=\"billing\", le=\"1\"}"].back() == 2);
  CHECK(got["request_seconds_bucket{job=\"billing\", le=\"+Inf\"}"].back() == 3);
  CHECK(got["request_seconds_count{job=\"billing\"}"].back() == 3);
  CHECK(got["request_seconds_sum{job=\"billing\"}"].back() == doctest::Approx(3.55));
  const ClientStats st = client->stats();
  CHECK(st.samples_queued == 0);
  CHECK(st.samples_sent == 2 * 7);
  CHECK(st.dropped_samples == 0);
}

TEST_CASE("monitor client queues while the receiver is away backs off and delivers later") {
  // A port nobody listens on (yet).
  std::string listen;
  {
    Receiver probe("127.0.0.1:0");
    listen = probe.server->address().ToString();
  }
  ManualClock clock;
  auto client = REQUIRE_VALUE(Client::Open({.endpoint = listen,
                                            .max_queued_samples = 5,
                                            .min_backoff = 1s,
                                            .max_backoff = 4s,
                                            .background = false,
                                            .clock = &clock}));
  Gauge& g = client->GetGauge("temperature");
  for (int i = 0; i < 8; ++i) {
    g.Set(i);
    (void)client->Flush();
    CHECK(client->stats().samples_sent == 0);
    clock.Advance(500ms);  // less than the backoff half the time: no attempt then
  }
  ClientStats st = client->stats();
  CHECK(st.samples_queued == 5);       // bounded
  CHECK(st.dropped_samples == 3);      // the oldest went
  CHECK(st.failed_sends >= 2);
  CHECK(st.failed_sends < 8);          // the backoff held some attempts back
  CHECK_FALSE(st.last_error.empty());
  Receiver rx(listen);
  clock.Advance(10s);  // past any backoff
  REQUIRE_OK(client->Flush());
  st = client->stats();
  CHECK(st.samples_queued == 0);
  CHECK(st.samples_sent == 5);  // this flush's and the 4 newest before it (the bound is 5)
  CHECK(st.dropped_samples == 4);
  auto all = rx.All();
  REQUIRE(all.size() == 1);
  CHECK(all[0].samples.size() == 5);
  CHECK(all[0].samples.back().v == 7);
}

TEST_CASE("monitor client drops a batch the receiver refuses and retries one that fails") {
  ManualClock clock;
  {
    Receiver refusing("127.0.0.1:0", 400);
    auto client = REQUIRE_VALUE(Client::Open(
        {.endpoint = refusing.server->address().ToString(), .background = false, .clock = &clock}));
    client->GetCounter("x_total").Add(1);
    CHECK_FALSE(client->Flush().ok());
    CHECK(client->stats().dropped_samples == 1);
    CHECK(client->stats().samples_queued == 0);
  }
  Receiver failing("127.0.0.1:0", 503);
  auto client = REQUIRE_VALUE(Client::Open(
      {.endpoint = failing.server->address().ToString(), .background = false, .clock = &clock}));
  client->GetCounter("x_total").Add(1);
  CHECK_FALSE(client->Flush().ok());
  CHECK(client->stats().samples_queued == 1);
  CHECK(client->stats().failed_sends == 1);
  CHECK(client->stats().last_error == "HTTP 503");
  CHECK_ERRC(Client::Open({.endpoint = "nonsense"}), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::monitor
