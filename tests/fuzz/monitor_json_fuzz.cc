// Fuzzes the JSON-lines import (VictoriaMetrics' format, Boost.JSON
// underneath): every input parses or fails with kInvalidArgument naming a
// line; what parses has valid labels and bounded samples.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "qcloud/monitor/json_import.h"

using namespace qcloud;
using namespace qcloud::monitor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto r = ParseJsonLines(body, {.max_line_bytes = 8192, .max_samples = 1000});
  if (!r.ok()) {
    if (r.status().code() != Errc::kInvalidArgument) std::abort();
    return 0;
  }
  size_t n = 0;
  for (const SeriesSamples& s : *r) {
    if (s.labels.empty() || !Labels::FromPairs(s.labels.pairs()).ok()) std::abort();
    n += s.samples.size();
  }
  if (n > 1000) std::abort();
  return 0;
}
