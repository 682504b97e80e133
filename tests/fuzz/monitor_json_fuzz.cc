// Fuzzes the monitor's JSON input (Boost.JSON underneath): the JSON-lines
// import (VictoriaMetrics' format) and Alertmanager's alert pushes. Every
// input parses or fails with kInvalidArgument; what parses has valid labels,
// bounded samples, and alerts whose times are in order.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "qcloud/monitor/json_import.h"
#include "qcloud/monitor/webhook.h"

using namespace qcloud;
using namespace qcloud::monitor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto posted = ParsePostableAlerts(body, WallTime(std::chrono::seconds(1'700'000'000)), {.max_alerts = 1000});
  if (!posted.ok()) {
    if (posted.status().code() != Errc::kInvalidArgument) std::abort();
  } else {
    if (posted->alerts.size() > 1000) std::abort();
    for (const Alert& a : posted->alerts) {
      if (a.labels.empty() || !Labels::FromPairs(a.labels.ToVector()).ok()) std::abort();
      if (a.state == AlertState::kResolved ? a.resolved_at < a.fired_at : a.ends_at < a.fired_at) std::abort();
    }
  }
  auto r = ParseJsonLines(body, {.max_line_bytes = 8192, .max_samples = 1000});
  if (!r.ok()) {
    if (r.status().code() != Errc::kInvalidArgument) std::abort();
    return 0;
  }
  size_t n = 0;
  for (const SeriesSamples& s : *r) {
    if (s.labels.empty() || !Labels::FromPairs(s.labels.ToVector()).ok()) std::abort();
    n += s.samples.size();
  }
  if (n > 1000) std::abort();
  return 0;
}
