// qcloud-monitord: the monitoring platform's store and query node. Keeps
// series in a qcloud::monitor::Tsdb and answers Prometheus's HTTP API on
// one port, so a Prometheus remote-writes to it, Grafana and promtool read
// it, and exporters push text to it:
//
//   qcloud-monitord --listen 127.0.0.1:9090 --data-dir /srv/monitor
//   curl 'http://127.0.0.1:9090/api/v1/query?query=up'
//
// Its own statistics are at /metrics on the same port. Prints
// "qcloud-monitord listening on HOST:PORT" once it accepts connections;
// Alerts pushed in Alertmanager's format to POST /api/v2/alerts converge
// with the alarm rules' own and go to the --config's webhooks.
// SIGINT/SIGTERM stop it cleanly (requests in flight are answered; every
// acknowledged sample is already in the write-ahead log). The head is cut
// into blocks in the background (--compact-every).

#include <malloc.h>

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <mutex>
#include <memory>
#include <string>

#include <fmt/format.h>

#include "cli.h"
#include "qcloud/core/http.h"
#include "qcloud/core/lifecycle.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/env.h"
#include "qcloud/monitor/config.h"
#include "qcloud/monitor/http_api.h"
#include "qcloud/monitor/notify.h"
#include "qcloud/monitor/rules.h"
#include "qcloud/monitor/scrape.h"
#include "qcloud/monitor/webhook.h"
#include "qcloud/monitor/tsdb.h"
#include "qcloud/runtime/http_server.h"

using namespace qcloud;

namespace {

constexpr char kProgram[] = "qcloud-monitord";

struct Flags {
  Endpoint listen{.address = "127.0.0.1", .port = 9090};
  std::string data_dir;
  std::string config;
  unsigned threads = 2;
  bool sync_wal = false;
  std::chrono::milliseconds retention = std::chrono::hours(24 * 365);
  std::chrono::milliseconds block_duration = std::chrono::hours(2);
  std::chrono::milliseconds compact_every = std::chrono::minutes(1);
  std::chrono::milliseconds lookback = std::chrono::minutes(5);
};

}  // namespace

// The process's anonymous resident memory (RssAnon of /proc/self/status),
// 0 where it cannot be read.
static uint64_t AnonBytes() {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "RssAnon: %llu kB", &kb) == 1) break;
  }
  std::fclose(f);
  return static_cast<uint64_t>(kb) * 1024;
}

// Bytes malloc holds free in its arenas (resident or already trimmed).
static uint64_t FreeHeapBytes() { return static_cast<uint64_t>(::mallinfo2().fordblks); }

int main(int argc, char** argv) {
  // Large allocations (request bodies, a block being written or merged)
  // from mmap, always: glibc otherwise raises its mmap threshold to the
  // largest block freed, serves the next ones from the heap and leaves it
  // fragmented under the series' long-lived memory. Measured with a 24 h
  // load of 10,000 series: RSS per series 2,818 -> 2,536 B (medians of 9
  // alternated runs), peak RSS about 15% lower, CPU alike (bench/README.md).
  ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  Flags f;
  examples::CommandLine cli(kProgram, "the monitoring store: Prometheus's HTTP API, remote write, PromQL");
  cli.AddEndpoint("listen", &f.listen, "address to serve the API and /metrics on (port 0 = any)");
  cli.AddString("data-dir", &f.data_dir, "the store's directory (required)");
  cli.AddString("config", &f.config,
                "YAML: scrape_configs and alarm rules (Prometheus's), route, receivers and inhibit_rules (Alertmanager's)");
  cli.AddNumber("threads", &f.threads, "HTTP worker threads", 64u);
  cli.AddFlag("sync-wal", &f.sync_wal, "fdatasync the write-ahead log before acknowledging (power-cut safe)");
  cli.AddDuration("retention", &f.retention, "365d", "keep raw samples this long");
  cli.AddDuration("block-duration", &f.block_duration, "2h", "time range of one block on disk");
  cli.AddDuration("compact-every", &f.compact_every, "1m", "how often to cut the head into blocks");
  cli.AddDuration("lookback", &f.lookback, "5m", "how far back an instant selector looks");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  Logger& log = cli.logger();
  if (f.data_dir.empty()) return cli.Exit(InvalidArgument("--data-dir is required"));
  monitor::MonitorConfig config;
  if (!f.config.empty()) {
    auto env = OpenPosixEnv();
    if (!env) return cli.Exit(env.error());
    auto text = ReadFileToString(**env, f.config, 16 << 20);
    if (!text) return cli.Exit(text.status().WithContext("--config " + f.config));
    auto parsed = monitor::ParseConfig(*text);
    if (!parsed) return cli.Exit(parsed.status().WithContext("--config " + f.config));
    config = std::move(parsed).value();
  }

  auto life = Lifecycle::Open({.drain_timeout = std::chrono::seconds(5), .logger = &log});
  if (!life) return cli.Exit(life.error());
  if (Status s = (*life)->HandleSignals(); !s.ok()) return cli.Exit(s);

  auto db = monitor::Tsdb::Open({.data_dir = f.data_dir,
                                 .sync_wal = f.sync_wal,
                                 .block_duration = f.block_duration,
                                 .retention = f.retention});
  if (!db) return cli.Exit(db.error());
  monitor::Tsdb& tsdb = **db;
  monitor::HttpApi api(tsdb, {.query = {.lookback = f.lookback}});
  MetricsRegistry registry;
  if (Status s = api.RegisterMetrics(registry); !s.ok()) return cli.Exit(s);

  // Alarms: each rule group evaluated on its interval; what fires and
  // resolves converges in the dispatcher and goes to the webhooks.
  std::vector<monitor::Webhook> webhooks;
  for (const auto& w : config.webhooks) {
    auto hook = monitor::Webhook::Make(w);
    if (!hook) return cli.Exit(hook.status());
    webhooks.push_back(std::move(hook).value());
  }
  monitor::Dispatcher dispatcher(config.route, RealClock(), [&](const monitor::Notification& n) {
    Status all;
    for (const auto& w : webhooks) {
      if (Status s = w.Send(n); !s.ok()) {
        log.Log(LogLevel::kWarning, "notify: " + s.ToString());
        all = s;
      }
    }
    return all;
  });
  monitor::QueryEngine rule_queries(tsdb, {.lookback = f.lookback});
  std::vector<std::unique_ptr<monitor::RuleEngine>> rule_groups;
  for (const auto& g : config.groups) {
    auto engine = std::make_unique<monitor::RuleEngine>(
        rule_queries, monitor::RuleEngineOptions{.sink = [&dispatcher](const std::vector<monitor::Alert>& a) {
                                                   dispatcher.Receive(a);
                                                 }});
    for (const auto& r : g.rules) {
      if (Status s = engine->AddRule(r); !s.ok()) return cli.Exit(s.WithContext("group " + g.name));
    }
    rule_groups.push_back(std::move(engine));
  }

  // Scraping: a loop per target, each on its own interval, so a slow
  // target holds back only itself.
  auto scraper = monitor::Scraper::Make(tsdb, config.scrape_targets);
  if (!scraper) return cli.Exit(scraper.error());
  std::mutex scrape_mu;
  std::condition_variable scrape_cv;
  bool scrape_stop = false;

  auto http = HttpServer::Open(
      [&](const HttpRequest& r) {
        if (r.path == "/api/v1/alerts") {
          std::vector<monitor::Alert> all;
          for (const auto& g : rule_groups) {
            auto a = g->alerts();
            all.insert(all.end(), a.begin(), a.end());
          }
          return HttpResponse{.content_type = "application/json", .body = monitor::AlertsApiJson(all)};
        }
        if (r.path == "/api/v2/alerts" && r.method == "POST") {
          // Alertmanager's push API: alerts from elsewhere (a Prometheus,
          // vmalert) converge with the rules' own in the dispatcher.
          auto posted = monitor::ParsePostableAlerts(r.body, RealClock().WallNow());
          if (!posted) return HttpResponse{.status = 400, .content_type = "text/plain", .body = posted.status().message() + "\n"};
          dispatcher.Receive(posted->alerts);
          if (!posted->errors.empty()) return HttpResponse{.status = 400, .content_type = "text/plain", .body = posted->errors};
          return HttpResponse{.status = 200};
        }
        if (r.path == "/api/v1/targets") {
          return HttpResponse{.content_type = "application/json",
                              .body = monitor::TargetsApiJson(config.scrape_targets, (*scraper)->health())};
        }
        if (r.path == "/metrics") {
          return HttpResponse{.content_type = std::string(MetricsRegistry::kContentType), .body = registry.RenderText()};
        }
        return api.Handle(r);
      },
      {.listen = f.listen.ToString(), .threads = f.threads, .logger = &log});
  if (!http) return cli.Exit(http.error());
  HttpServer& srv = **http;
  for (unsigned i = 0; i < srv.threads(); ++i) {
    (*life)->Spawn(fmt::format("http {}", i), [&srv, i] { return srv.Serve(i); });
  }
  for (size_t i = 0; i < (*scraper)->size(); ++i) {
    (*life)->Spawn("scrape " + (*scraper)->target(i).address, [&, i] {
      monitor::Scraper& sc = **scraper;
      const auto every = sc.target(i).interval;
      // Spread the targets over the interval, as Prometheus does.
      auto due = std::chrono::steady_clock::now() + every * static_cast<int64_t>(i) / static_cast<int64_t>(sc.size() + 1);
      std::unique_lock lock(scrape_mu);
      while (!scrape_cv.wait_until(lock, due, [&] { return scrape_stop; })) {
        lock.unlock();
        if (Status s = sc.Scrape(i); !s.ok()) log.Log(LogLevel::kDebug, s.ToString());
        lock.lock();
        due += every;
        if (const auto now = std::chrono::steady_clock::now(); due < now) due = now + every;
      }
      return Status::Ok();
    });
  }
  (*life)->OnStop("scrape", [&] {
    {
      std::lock_guard lock(scrape_mu);
      scrape_stop = true;
    }
    scrape_cv.notify_all();
    return Status::Ok();
  });
  for (size_t i = 0; i < rule_groups.size(); ++i) {
    const auto every = config.groups[i].interval.count() > 0 ? config.groups[i].interval : config.evaluation_interval;
    (*life)->Every("rules " + config.groups[i].name, every, [&rule_groups, i, &log] {
      for (const auto& e : rule_groups[i]->Evaluate()) {
        if (!e.status.ok()) log.Log(LogLevel::kWarning, "rule " + e.rule + ": " + e.status.ToString());
      }
      return Status::Ok();
    });
  }
  if (!webhooks.empty()) {
    // Group timers are due to the tick: 100 ms keeps them near Alertmanager's.
    (*life)->Every("notify", std::chrono::milliseconds(100), [&dispatcher] {
      dispatcher.Tick();
      return Status::Ok();
    });
  }
  (*life)->Every("compact", f.compact_every, [&tsdb, &api, &log, last = uint64_t{0}, trimmed_at = AnonBytes(),
                                              free_low = FreeHeapBytes()]() mutable {
    if (Status s = tsdb.Compact(); !s.ok()) log.Log(LogLevel::kWarning, "compact: " + s.ToString());
    api.ReleaseIdleMemory();  // remote-write buffers idle since the last tick
    // A cut or a merge frees much at once, and so does a large query once
    // answered; give the pages back (glibc keeps freed memory in its
    // arenas otherwise: measured, 26 of 68 MB after a 10k-series load, and
    // ~170 MB after the queries of bench/monitor/compare.sh). A query is
    // seen as anonymous memory grown by 32 MiB since the last trim, or,
    // when that trim ran while a query held its memory, as 32 MiB more
    // free in malloc's arenas than at their lowest since (a one-round
    // compare.sh read 5.7 KB a series more after its queries than before).
    const monitor::TsdbStats st = tsdb.stats();
    const uint64_t n = st.compactions + st.merges;
    constexpr uint64_t kSlack = uint64_t{32} << 20;
    const uint64_t free_now = FreeHeapBytes();
    free_low = std::min(free_low, free_now);
    if (n != last || AnonBytes() > trimmed_at + kSlack || free_now > free_low + kSlack) {
      last = n;
      ::malloc_trim(0);
      trimmed_at = AnonBytes();
      free_low = FreeHeapBytes();
    }
    return Status::Ok();
  });
  (*life)->OnStop("http", [&srv] {
    srv.Stop();
    return Status::Ok();
  });
  const monitor::TsdbStats st = tsdb.stats();
  std::cout << kProgram << " listening on " << srv.address().ToString() << " (" << st.series << " series, "
            << st.replayed_samples << " samples replayed, " << st.blocks << " blocks)" << std::endl;
  for (const std::string& b : st.corrupt_blocks) log.Log(LogLevel::kError, "corrupt block left out: " + b);
  return cli.Exit((*life)->Run());
}
