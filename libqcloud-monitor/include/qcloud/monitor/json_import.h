#pragma once

// JSON pushes: one series per line, the line format VictoriaMetrics'
// /api/v1/import takes and /api/v1/export writes, so its tools and scripts
// push to qcloud-monitord unchanged:
//
//   {"metric":{"__name__":"up","job":"node"},"values":[1,0],"timestamps":[1549891472010,1549891487724]}
//
// "values" are numbers (or "NaN", "Inf", "-Inf" strings), "timestamps" are
// integers in ms, one per value. Bounded: line length and samples per
// body; a bad line is an error naming its number. Parsed with Boost.JSON.

#include <cstddef>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor {

struct JsonImportOptions {
  size_t max_line_bytes = size_t{1} << 20;
  size_t max_samples = 10'000'000;
};

// kInvalidArgument with "line N: ..." for the first bad line.
QCLOUD_EXPORT Result<std::vector<SeriesSamples>> ParseJsonLines(std::string_view body,
                                                                const JsonImportOptions& options = {});

}  // namespace qcloud::monitor
