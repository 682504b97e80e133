#pragma once

// The Prometheus text exposition format (version 0.0.4), as exporters
// serve it and as pushed to /api/v1/import/prometheus:
//
//   # HELP http_requests_total The total number of HTTP requests.
//   # TYPE http_requests_total counter
//   http_requests_total{method="post",code="200"} 1027 1395066363000
//   temperature -3.5e-1
//
// Per line: a metric name, optional {label="value",...} (escapes \\ \" \n,
// a trailing comma allowed), a value (a float as Go reads it: also NaN,
// +Inf, -Inf), an optional timestamp in ms. Comments and blank lines are
// skipped; # HELP and # TYPE are read for their form only. Bounded: line
// length, samples per body; a bad line is an error naming its number.

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor {

struct TextFormatOptions {
  int64_t default_timestamp = 0;    // for samples without one (ms)
  size_t max_line_bytes = 64 * 1024;
  size_t max_samples = 10'000'000;
};

// The samples, grouped by series in order of first appearance.
// kInvalidArgument with "line N: ..." for the first bad line.
QCLOUD_EXPORT Result<std::vector<SeriesSamples>> ParseTextFormat(std::string_view body,
                                                                 const TextFormatOptions& options = {});

}  // namespace qcloud::monitor
