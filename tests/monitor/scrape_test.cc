// Scraping: target labels applied as Prometheus applies them, a scrape of a
// real HttpServer on 127.0.0.1 into a Tsdb (up, the scrape's own series,
// stale markers when a series or the target goes away), failures that keep
// nothing of a bad page, and scrape_configs in the config.

#include "qcloud/monitor/scrape.h"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <future>
#include <mutex>

#include "qcloud/monitor/config.h"
#include "qcloud/monitor/tsdb.h"
#include "qcloud/runtime/http_server.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::monitor {
namespace {

using namespace std::chrono_literals;

ScrapeTarget Target(const std::string& address) {
  return {.job = "node", .address = address, .labels = {{"rack", "r1"}}, .interval = 1s, .timeout = 2s};
}

std::string Get(const SeriesSamples& s, std::string_view name) { return std::string(s.labels.Get(name)); }

TEST_CASE("scraped samples get the target's labels and keep colliding ones as exported_") {
  const ScrapeTarget t = Target("10.0.0.1:9100");
  auto got = REQUIRE_VALUE(ScrapedSamples(t,
                                          "a{job=\"inner\",instance=\"x\"} 1\n"
                                          "b{job=\"j\",exported_job=\"e\"} 2\n"
                                          "c 3 1700000000000\n"
                                          "d{rack=\"mine\"} 4\n",
                                          1800000000000));
  REQUIRE(got.size() == 4);
  CHECK(Get(got[0], "job") == "node");
  CHECK(Get(got[0], "instance") == "10.0.0.1:9100");
  CHECK(Get(got[0], "exported_job") == "inner");
  CHECK(Get(got[0], "exported_instance") == "x");
  CHECK(Get(got[0], "rack") == "r1");
  CHECK(got[0].samples[0].t == 1800000000000);  // stamped with the scrape's time
  CHECK(Get(got[1], "exported_job") == "e");     // exposed names are not overwritten
  CHECK(Get(got[1], "exported_exported_job") == "j");
  CHECK(got[2].samples[0].t == 1700000000000);   // its own timestamp kept
  CHECK(Get(got[3], "exported_rack") == "mine");

  ScrapeTarget honor = t;
  honor.honor_labels = true;
  auto kept = REQUIRE_VALUE(ScrapedSamples(honor, "a{job=\"inner\"} 1\n", 1));
  CHECK(Get(kept[0], "job") == "inner");
  CHECK(Get(kept[0], "instance") == "10.0.0.1:9100");

  CHECK_ERRC(ScrapedSamples(t, "a{ 1\n", 1), Errc::kInvalidArgument);
  CHECK_ERRC(ScrapedSamples(t, "a 1\nb 2\nc 3\n", 1, 2), Errc::kInvalidArgument);  // sample_limit
}

// A target: an HttpServer answering `page` (or `status`).
struct Page {
  explicit Page() {
    server = REQUIRE_VALUE(HttpServer::Open(
        [this](const HttpRequest&) {
          std::lock_guard lock(mu);
          return HttpResponse{.status = status, .content_type = "text/plain; version=0.0.4", .body = page};
        },
        {.listen = "127.0.0.1:0"}));
    worker = std::async(std::launch::async, [this] { return server->Serve(0); });
  }
  ~Page() {
    server->Stop();
    (void)worker.get();
  }
  void Set(std::string p, int s = 200) {
    std::lock_guard lock(mu);
    page = std::move(p);
    status = s;
  }
  std::mutex mu;
  std::string page;
  int status = 200;
  std::unique_ptr<HttpServer> server;
  std::future<Status> worker;
};

TEST_CASE("a scrape writes the page up and the scrape's series and marks what left stale") {
  testing::TempDir dir("qcloud-scrape");
  auto db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
  Page page;
  page.Set("# TYPE temp gauge\ntemp{room=\"a\"} 21.5\ntemp{room=\"b\"} 19\n");
  ManualClock clock;
  clock.SetWall(WallTime(std::chrono::seconds(1800000000)));
  auto s = REQUIRE_VALUE(Scraper::Make(*db, {Target(page.server->address().ToString())}, {.clock = &clock}));
  REQUIRE_OK(s->Scrape(0));
  const int64_t t1 = 1800000000000;
  auto read = [&](std::string_view name) {
    return REQUIRE_VALUE(db->Select(std::vector<Matcher>{Matcher::Equal("__name__", std::string(name))}, 0, t1 + 100000));
  };
  auto up = read("up");
  REQUIRE(up.size() == 1);
  CHECK(up[0].samples == std::vector<Sample>{{t1, 1}});
  CHECK(Get(up[0], "job") == "node");
  CHECK(Get(up[0], "rack") == "r1");
  CHECK(read("scrape_samples_scraped")[0].samples[0].v == 2);
  CHECK(read("scrape_series_added")[0].samples[0].v == 2);
  CHECK(read("temp").size() == 2);
  auto h = s->health();
  REQUIRE(h.size() == 1);
  CHECK(h[0].up);
  CHECK(h[0].last_samples == 2);

  // Room b leaves the page: its series gets a stale marker at the next scrape.
  clock.Advance(1s);
  page.Set("temp{room=\"a\"} 22\n");
  REQUIRE_OK(s->Scrape(0));
  const int64_t t2 = t1 + 1000;
  auto temp = read("temp");
  REQUIRE(temp.size() == 2);
  CHECK(temp[0].samples == std::vector<Sample>{{t1, 21.5}, {t2, 22}});
  REQUIRE(temp[1].samples.size() == 2);
  CHECK(std::bit_cast<uint64_t>(temp[1].samples[1].v) == kStaleNaNBits);
  CHECK(read("scrape_series_added")[0].samples[1].v == 0);

  // A page that does not parse fails the scrape: up 0, nothing of it kept,
  // and what the last scrape had goes stale.
  clock.Advance(1s);
  page.Set("temp{room=\"a\"} 23\ntemp{ broken\n");
  CHECK_ERRC(s->Scrape(0), Errc::kInvalidArgument);
  const int64_t t3 = t2 + 1000;
  CHECK(read("up")[0].samples.back() == Sample{t3, 0});
  temp = read("temp");
  CHECK(std::bit_cast<uint64_t>(temp[0].samples.back().v) == kStaleNaNBits);
  CHECK(temp[0].samples.size() == 3);
  CHECK_FALSE(s->health()[0].up);
  CHECK(s->health()[0].last_error.find("line 2") != std::string::npos);

  // A 500 is a failed scrape too; the next good one brings the series back.
  clock.Advance(1s);
  page.Set("oops", 500);
  CHECK_ERRC(s->Scrape(0), Errc::kUnavailable);
  CHECK(s->health()[0].last_error == "server returned HTTP status 500");
  clock.Advance(1s);
  page.Set("temp{room=\"a\"} 24\n");
  REQUIRE_OK(s->Scrape(0));
  CHECK(read("temp")[0].samples.back() == Sample{t3 + 2000, 24});
  CHECK(read("up")[0].samples.back() == Sample{t3 + 2000, 1});
}

TEST_CASE("a scrape of a dead port or of a page over the limit is up 0 and leaves the server's others alone") {
  testing::TempDir dir("qcloud-scrape");
  auto db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
  Page page;
  page.Set(std::string(5000, '#') + "\nx 1\n");
  ManualClock clock;
  auto s = REQUIRE_VALUE(Scraper::Make(*db, {Target("127.0.0.1:1"), Target(page.server->address().ToString())},
                                       {.clock = &clock, .max_body_bytes = 1000}));
  CHECK_FALSE(s->Scrape(0).ok());
  CHECK_ERRC(s->Scrape(1), Errc::kTooLarge);
  for (const TargetHealth& h : s->health()) CHECK_FALSE(h.up);
  const std::string json = TargetsApiJson({Target("127.0.0.1:1")}, {s->health()[0]});
  CHECK(json.find("\"health\":\"down\"") != std::string::npos);
  CHECK(json.find("\"scrapeUrl\":\"http://127.0.0.1:1/metrics\"") != std::string::npos);
  CHECK(json.find("\"labels\":{\"instance\":\"127.0.0.1:1\",\"job\":\"node\",\"rack\":\"r1\"}") != std::string::npos);

  CHECK_ERRC(Scraper::Make(*db, {ScrapeTarget{.job = "", .address = "127.0.0.1:1"}}), Errc::kInvalidArgument);
  CHECK_ERRC(Scraper::Make(*db, {ScrapeTarget{.job = "j", .address = "nohost"}}), Errc::kInvalidArgument);
  CHECK_ERRC(Scraper::Make(*db, {ScrapeTarget{.job = "j", .address = "h:1", .metrics_path = "metrics"}}),
             Errc::kInvalidArgument);
  CHECK_ERRC(Scraper::Make(*db, {ScrapeTarget{.job = "j", .address = "h:1", .labels = {{"bad-name", "x"}}}}),
             Errc::kInvalidArgument);
}

TEST_CASE("scrape_configs in the config make one target per static address") {
  auto c = REQUIRE_VALUE(ParseConfig(R"(
global:
  scrape_interval: 15s
  scrape_timeout: 20s
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ['10.0.0.1:9100', '10.0.0.2:9100']
        labels: {rack: r1}
  - job_name: app
    scrape_interval: 5s
    scrape_timeout: 2s
    metrics_path: /stats
    honor_labels: true
    static_configs:
      - targets: ['localhost:8080']
)"));
  REQUIRE(c.scrape_targets.size() == 3);
  CHECK(c.scrape_targets[0].job == "node");
  CHECK(c.scrape_targets[1].address == "10.0.0.2:9100");
  CHECK(c.scrape_targets[1].labels == std::vector<Label>{{"rack", "r1"}});
  CHECK(c.scrape_targets[0].interval == 15s);
  CHECK(c.scrape_targets[0].timeout == 15s);  // the global 20s capped at the interval
  CHECK(c.scrape_targets[2].metrics_path == "/stats");
  CHECK(c.scrape_targets[2].honor_labels);
  CHECK(c.scrape_targets[2].timeout == 2s);
  for (const char* bad : {"scrape_configs: [{static_configs: []}]",
                          "scrape_configs: [{job_name: a, scrape_intervall: 1s}]",
                          "scrape_configs: [{job_name: a, scrape_interval: 1s, scrape_timeout: 2s}]",
                          "global: {scrape_interval: soon}"}) {
    CAPTURE(bad);
    CHECK_ERRC(ParseConfig(bad), Errc::kInvalidArgument);
  }
}

}  // namespace
}  // namespace qcloud::monitor
