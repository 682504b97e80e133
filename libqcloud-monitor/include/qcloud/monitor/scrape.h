#pragma once

// Scraping: the store pulls the text exposition format from targets listed
// in qcloud-monitord's config, as Prometheus's scrape_configs do:
//
//   scrape_configs:
//     - job_name: node
//       scrape_interval: 15s      # default: global scrape_interval (1m)
//       scrape_timeout: 10s       # default: global scrape_timeout (10s), at most the interval
//       metrics_path: /metrics
//       honor_labels: false
//       static_configs:
//         - targets: ['10.0.0.1:9100', '10.0.0.2:9100']
//           labels: {rack: r1}
//
//   Scraper s(db, targets, {});
//   s.Scrape(0);   // on each target's interval (qcloud-monitord's loop)
//
// Semantics (Prometheus 2.42's scrape loop, the parts qcloud implements):
//   - GET http://ADDRESS/PATH with Accept: text/plain;version=0.0.4; an
//     answer other than 200, a body over the limit, a timeout or a body
//     that does not parse fails the whole scrape (nothing of it is kept);
//   - each sample gets the target's labels: job, instance (= the address)
//     and the static labels. A scraped label that collides with one of them
//     is kept as exported_<name> (honor_labels: false) or wins (true);
//   - samples without a timestamp are stamped with the scrape's start;
//   - the scrape's own series: up (1 or 0), scrape_duration_seconds,
//     scrape_samples_scraped, scrape_samples_post_metric_relabeling,
//     scrape_series_added;
//   - staleness: a series of the last scrape that is gone from this one, or
//     every series when this one fails, gets Prometheus's stale marker at
//     this scrape's time, so queries stop showing it at once (series with
//     their own timestamps excepted, as in Prometheus).
//
// Thread safety: Scrape() of different targets at once; of one target, one
// at a time (qcloud-monitord runs one loop per target).

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/labels.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor {

struct ScrapeTarget {
  std::string job;
  std::string address;  // HOST:PORT, the instance label
  std::string metrics_path = "/metrics";
  std::vector<Label> labels;  // static_configs' labels
  std::chrono::milliseconds interval = std::chrono::minutes(1);
  std::chrono::milliseconds timeout = std::chrono::seconds(10);
  bool honor_labels = false;
};

struct ScraperOptions {
  Clock* clock = nullptr;                 // not owned; null = RealClock()
  size_t max_body_bytes = size_t{64} << 20;  // a bigger answer fails the scrape
  size_t sample_limit = 0;                // samples per scrape; more fails it (0 = no limit)
};

struct TargetHealth {
  std::string job, instance, url;
  bool up = false;
  std::string last_error;  // "" after a good scrape
  WallTime last_scrape{};
  double last_duration_seconds = 0;
  uint64_t last_samples = 0;
};

// The samples a scrape's body makes, with the target's labels applied and
// samples without a timestamp stamped `now_ms`. kInvalidArgument for a body
// that does not parse, a label that cannot be made, or more than
// `sample_limit` samples (0 = no limit).
QCLOUD_EXPORT Result<std::vector<SeriesSamples>> ScrapedSamples(const ScrapeTarget& target, std::string_view body,
                                                                int64_t now_ms, size_t sample_limit = 0);

// Prometheus's GET /api/v1/targets answer for the targets and their health
// (as Scraper::health() gives them, in the same order).
QCLOUD_EXPORT std::string TargetsApiJson(const std::vector<ScrapeTarget>& targets,
                                         const std::vector<TargetHealth>& health);

class QCLOUD_EXPORT Scraper {
 public:
  // kInvalidArgument for a target without a job, an address that is not
  // HOST:PORT or labels that are not valid.
  static Result<std::unique_ptr<Scraper>> Make(Tsdb& db, std::vector<ScrapeTarget> targets,
                                               ScraperOptions options = {});
  size_t size() const noexcept { return targets_.size(); }
  const ScrapeTarget& target(size_t i) const { return targets_[i]; }
  // Scrapes target i once and appends what it got (and up, and stale
  // markers) to the store. Returns the scrape's failure (the store's
  // errors included); up is 0 then.
  Status Scrape(size_t i);
  std::vector<TargetHealth> health() const;

 private:
  Scraper(Tsdb& db, std::vector<ScrapeTarget> targets, ScraperOptions options);
  struct State {
    std::vector<Labels> last_series;  // sorted; those the next scrape may mark stale
    TargetHealth health;
  };
  Tsdb& db_;
  std::vector<ScrapeTarget> targets_;
  ScraperOptions options_;
  Clock& clock_;
  mutable std::mutex mu_;  // guards states_' health
  std::vector<State> states_;
};

}  // namespace qcloud::monitor
