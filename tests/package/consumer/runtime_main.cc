// qcloud::runtime through the installed headers: an Asio runtime serving a
// metrics registry, started and stopped.
#include <cstdio>

#include "qcloud/core/metrics.h"
#include "qcloud/runtime/metrics_http.h"
#include "qcloud/runtime/runtime.h"

int main() {
  using namespace qcloud;
  auto rt = Runtime::Open({.threads = 1});
  if (!rt.ok()) return 1;
  MetricsRegistry registry;
  auto ep = ServeMetrics(**rt, ParseEndpoint("127.0.0.1:0").value(), registry);
  if (!ep.ok() || ep->port == 0) return 1;
  (*rt)->Start();
  (*rt)->Stop();
  if (!(*rt)->Join().ok()) return 1;
  std::printf("runtime consumer: served /metrics on %s\n", ep->ToString().c_str());
  return 0;
}
