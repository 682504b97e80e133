#pragma once

// The monitor's HTTP API: Prometheus's HTTP API shapes, so Grafana,
// promtool-style tools and a Prometheus remote-writing to it work
// unchanged. A handler of plain requests (qcloud/core/http.h); the example
// server puts it on core's HTTP transport (qcloud/runtime/http_server.h).
//
//   GET|POST /api/v1/query         query, time (RFC 3339 or Unix seconds; default now)
//   GET|POST /api/v1/query_range   query, start, end, step (seconds or a duration)
//   GET|POST /api/v1/series        match[] (one or more), start, end
//   GET|POST /api/v1/labels        label names
//   GET      /api/v1/label/<name>/values
//   POST     /api/v1/write         Prometheus remote-write 1.0 (snappy + protobuf): 204
//   POST     /api/v1/import/prometheus  the text exposition format: 204
//   POST     /api/v1/import     JSON lines, VictoriaMetrics' format (json_import.h): 204
//   GET      /-/healthy, /-/ready
//
// Answers are Prometheus's JSON: {"status":"success","data":...}, or
// {"status":"error","errorType":"bad_data","error":"..."} with 400 for a
// bad parameter or body, 422 ("execution") for a query that fails as it
// runs, 404 for unknown paths, 405 for wrong methods. Samples the store
// refuses as out of order or too old are counted, not errors: a sender that
// retries a batch is not stopped by samples it sent before.
//
// Thread safety: Handle() from any number of threads at once.

#include <atomic>
#include <cstdint>
#include <functional>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/http.h"
#include "qcloud/core/metrics.h"
#include "qcloud/monitor/promql.h"
#include "qcloud/monitor/remote_write.h"
#include "qcloud/monitor/rules.h"
#include "qcloud/monitor/text_format.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor {

struct HttpApiOptions {
  QueryOptions query;
  RemoteWriteLimits remote_write;
  size_t max_text_samples = 10'000'000;  // per pushed text body
  Clock* clock = nullptr;  // "now" for queries and unstamped samples; not owned; null = RealClock()
};

struct HttpApiStats {
  uint64_t queries = 0, range_queries = 0, series_requests = 0, remote_writes = 0, imports = 0;
  uint64_t samples_written = 0;   // accepted by the store through the API
  uint64_t samples_refused = 0;   // out of order, conflicting or too old
  uint64_t bad_requests = 0;      // 4xx answers
};

// Prometheus's /api/v1/alerts answer for the pending and firing alerts.
QCLOUD_EXPORT std::string AlertsApiJson(const std::vector<Alert>& alerts);

class QCLOUD_EXPORT HttpApi {
 public:
  // `db` is not owned and outlives the API.
  explicit HttpApi(Tsdb& db, HttpApiOptions options = {});
  HttpResponse Handle(const HttpRequest& request);
  HttpApiStats stats() const noexcept;
  // Frees request buffers no request used since the last call
  // (RemoteWriteIngester::ReleaseIdleMemory); call it every few seconds.
  void ReleaseIdleMemory();
  // The API's and the store's counters as qcloud_monitor_* metrics.
  Status RegisterMetrics(MetricsRegistry& registry);

 private:
  Tsdb& db_;
  HttpApiOptions options_;
  QueryEngine engine_;
  RemoteWriteIngester ingester_;
  struct Counters {
    std::atomic<uint64_t> queries{0}, range_queries{0}, series_requests{0}, remote_writes{0}, imports{0};
    std::atomic<uint64_t> samples_written{0}, samples_refused{0}, bad_requests{0};
  } counters_;
};

}  // namespace qcloud::monitor
