// Fuzzes the text exposition format parser (pushed bodies, scraped pages).
// Every input parses or fails with kInvalidArgument naming a line; what
// parses has valid labels (checked again) and at most the bounded number of
// samples.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "qcloud/monitor/text_format.h"

using namespace qcloud;
using namespace qcloud::monitor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto r = ParseTextFormat(body, {.default_timestamp = 7, .max_line_bytes = 4096, .max_samples = 1000});
  if (!r.ok()) {
    if (r.status().code() != Errc::kInvalidArgument) std::abort();
    return 0;
  }
  size_t n = 0;
  for (const SeriesSamples& s : *r) {
    if (!Labels::FromPairs(s.labels.ToVector()).ok() || s.samples.empty()) std::abort();
    n += s.samples.size();
  }
  if (n > 1000) std::abort();
  return 0;
}
