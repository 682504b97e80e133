// Fuzzes what a scrape reads from a target: the HTTP/1.x reply (status
// line, Content-Type, Content-Length, body bound) and the page under the
// target's labels. Every input parses or fails with the documented codes;
// what parses carries the target's job and instance and valid labels.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "monitor/http_post.h"
#include "qcloud/monitor/scrape.h"

using namespace qcloud;
using namespace qcloud::monitor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view raw(reinterpret_cast<const char*>(data), size);
  auto reply = monitor::detail::ParseHttpReply(raw, 4096);
  if (!reply.ok()) {
    if (reply.status().code() != Errc::kProtocolError && reply.status().code() != Errc::kTooLarge) std::abort();
  } else if (reply->body.size() > 4096 || reply->status < 100 || reply->status > 599) {
    std::abort();
  }
  // The whole input as a page, scraped with labels that collide.
  const ScrapeTarget target{.job = "node", .address = "10.0.0.1:9100", .labels = {{"exported_job", "x"}}};
  auto got = ScrapedSamples(target, raw, 1'800'000'000'000, 1000);
  if (!got.ok()) {
    if (got.status().code() != Errc::kInvalidArgument) std::abort();
    return 0;
  }
  size_t n = 0;
  for (const SeriesSamples& s : *got) {
    if (s.labels.Get("job") != "node" || s.labels.Get("instance") != "10.0.0.1:9100") std::abort();
    if (!Labels::FromPairs(s.labels.ToVector()).ok()) std::abort();
    n += s.samples.size();
  }
  if (n > 1000) std::abort();
  return 0;
}
