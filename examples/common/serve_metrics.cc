#include "serve_metrics.h"

#include <iostream>

#include "qcloud/core/endpoint.h"
#include "qcloud/runtime/metrics_http.h"

namespace qcloud::examples {

Result<std::unique_ptr<Runtime>> StartMetricsHttp(std::string_view program, const std::string& listen,
                                                  MetricsRegistry& registry, Lifecycle& life, Logger& log) {
  if (listen.empty()) return std::unique_ptr<Runtime>();
  QCLOUD_ASSIGN_OR_RETURN(Endpoint ep, ParseEndpoint(listen));
  QCLOUD_ASSIGN_OR_RETURN(auto rt, Runtime::Open({.threads = 1, .logger = &log}));
  QCLOUD_ASSIGN_OR_RETURN(Endpoint bound, ServeMetrics(*rt, ep, registry));
  std::cout << program << " metrics on http://" << bound.ToString() << "/metrics" << std::endl;
  Runtime* r = rt.get();
  life.Spawn("metrics http", [r] { return r->Run(); });
  life.OnStop("metrics http", [r] {
    r->Stop();
    return Status::Ok();
  });
  return rt;
}

}  // namespace qcloud::examples
