#pragma once

// Serves a MetricsRegistry over HTTP for Prometheus to scrape: GET or HEAD of
// `path` returns RenderText() (HTTP/1.1, keep-alive); other paths get 404,
// other methods 405. Requests are bounded (8 KiB of headers, no body) and a
// connection idle for `idle_timeout` is closed.

#include <chrono>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "qcloud/core/export.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/result.h"
#include "qcloud/runtime/runtime.h"

namespace qcloud {

struct MetricsHttpOptions {
  std::string path = "/metrics";                // the scrape path
  std::chrono::milliseconds idle_timeout{30000};  // close a connection idle this long
};

// Listens on `endpoint` through the runtime (one SO_REUSEPORT socket per
// shard) and returns the bound endpoint. `registry` must outlive `runtime`.
QCLOUD_EXPORT Result<Endpoint> ServeMetrics(
    Runtime& runtime, const Endpoint& endpoint,
    const MetricsRegistry& registry, const MetricsHttpOptions& options = {});

}  // namespace qcloud
