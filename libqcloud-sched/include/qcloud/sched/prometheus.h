#pragma once

// Metric samples for the trigger engine from a Prometheus-compatible query
// API (Prometheus, qcloud-monitord, VictoriaMetrics): the body of GET
// /api/v1/query?query=Q, an instant vector, becomes one MetricSample per
// element, its group and instance taken from the labels the MetricQuery
// names. Elements without either label are skipped (counted); values are
// Prometheus's strings ("0.93", "NaN", "+Inf": the engine ignores the last
// two). Network input: bounded (kMaxQueryBodyBytes, nesting), and any
// other shape is kInvalidArgument ("not a vector", Prometheus's own
// "status": "error" with its message).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/sched/config.h"
#include "qcloud/sched/trigger.h"

namespace qcloud::sched {

inline constexpr size_t kMaxQueryBodyBytes = size_t{64} << 20;

struct QuerySamples {
  std::vector<MetricSample> samples;
  size_t skipped = 0;  // elements lacking the group or instance label
};

QCLOUD_EXPORT Result<QuerySamples> ParsePrometheusVector(std::string_view body, const MetricQuery& query);

// The query's URL path and parameters: /api/v1/query?query=<percent-encoded>.
QCLOUD_EXPORT std::string QueryTarget(std::string_view base_path, std::string_view promql);

}  // namespace qcloud::sched
