#include "qcloud/monitor/scrape.h"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cstring>
#include <limits>

#include <fmt/format.h>

#include "monitor/http_post.h"
#include "monitor/json_out.h"
#include "qcloud/core/endpoint.h"
#include "qcloud/monitor/promql.h"
#include "qcloud/monitor/text_format.h"

namespace qcloud::monitor {

namespace {

constexpr int64_t kUnstamped = std::numeric_limits<int64_t>::min();

// The target's own labels: job, instance, the static ones.
std::vector<Label> TargetLabels(const ScrapeTarget& t) {
  std::vector<Label> out = t.labels;
  out.push_back({"job", t.job});
  out.push_back({"instance", t.address});
  return out;
}

struct Labelled {
  std::vector<SeriesSamples> series;
  std::vector<bool> stamped;  // per series: its samples carried no timestamp
};

Result<Labelled> ApplyTargetLabels(const ScrapeTarget& t, std::string_view body, int64_t now_ms, size_t sample_limit) {
  TextFormatOptions o{.default_timestamp = kUnstamped};
  if (sample_limit > 0) o.max_samples = sample_limit;
  auto parsed = ParseTextFormat(body, o);
  if (!parsed) return parsed.status();
  const std::vector<Label> target = TargetLabels(t);
  Labelled out;
  out.series.reserve(parsed->size());
  for (SeriesSamples& s : *parsed) {
    const std::vector<Label> exposed = s.labels.ToVector();
    std::vector<Label> pairs = exposed;
    std::vector<Label> conflicts;  // exposed values of the target's label names
    for (const Label& tl : target) {
      auto it = std::find_if(pairs.begin(), pairs.end(), [&](const Label& l) { return l.name == tl.name; });
      if (it == pairs.end()) {
        pairs.push_back(tl);
      } else if (!t.honor_labels) {
        conflicts.push_back(*it);
        it->value = tl.value;
      }
    }
    // Prometheus keeps a colliding exposed label as exported_<name>,
    // prefixed again while the name is taken by an exposed label, a target
    // label or an earlier rename; shorter names first.
    std::stable_sort(conflicts.begin(), conflicts.end(),
                     [](const Label& x, const Label& y) { return x.name.size() < y.name.size(); });
    auto has = [](const std::vector<Label>& v, const std::string& name, size_t n) {
      return std::any_of(v.begin(), v.begin() + static_cast<ptrdiff_t>(std::min(n, v.size())),
                         [&](const Label& l) { return l.name == name; });
    };
    for (size_t k = 0; k < conflicts.size(); ++k) {
      std::string name = conflicts[k].name;
      do {
        name = "exported_" + name;
      } while (has(exposed, name, exposed.size()) || has(target, name, target.size()) || has(conflicts, name, k));
      conflicts[k].name = std::move(name);
    }
    for (Label& c : conflicts) {
      auto it = std::find_if(pairs.begin(), pairs.end(), [&](const Label& l) { return l.name == c.name; });
      if (it != pairs.end()) {
        it->value = std::move(c.value);
      } else {
        pairs.push_back(std::move(c));
      }
    }
    auto labels = Labels::FromPairs(std::move(pairs));
    if (!labels) return labels.status().WithContext(s.labels.ToString());
    bool stamped = false;
    for (Sample& x : s.samples) {
      if (x.t == kUnstamped) {
        x.t = now_ms;
        stamped = true;
      }
    }
    out.series.push_back({std::move(labels).value(), std::move(s.samples)});
    out.stamped.push_back(stamped);
  }
  return out;
}

// HOST:PORT with a numeric host, or a name the resolver knows.
Result<Endpoint> Resolve(const std::string& address) {
  if (auto ep = ParseEndpoint(address); ep.ok()) return ep;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) return InvalidArgument("scrape: want HOST:PORT, got \"" + address + "\"");
  const std::string host = address.substr(0, colon);
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0) {
    return Status(Errc::kUnavailable, fmt::format("scrape: cannot resolve {}: {}", host, gai_strerror(rc)));
  }
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, std::min<size_t>(res->ai_addrlen, sizeof ss));
  ::freeaddrinfo(res);
  Endpoint ep = Endpoint::FromSockaddr(ss);
  auto [p, ec] = std::from_chars(address.data() + colon + 1, address.data() + address.size(), ep.port);
  if (ec != std::errc() || p != address.data() + address.size() || ep.port == 0) {
    return InvalidArgument("scrape: bad port in \"" + address + "\"");
  }
  return ep;
}

}  // namespace

Result<std::vector<SeriesSamples>> ScrapedSamples(const ScrapeTarget& target, std::string_view body, int64_t now_ms,
                                                  size_t sample_limit) {
  QCLOUD_ASSIGN_OR_RETURN(Labelled l, ApplyTargetLabels(target, body, now_ms, sample_limit));
  return std::move(l.series);
}

Result<std::unique_ptr<Scraper>> Scraper::Make(Tsdb& db, std::vector<ScrapeTarget> targets, ScraperOptions options) {
  for (const ScrapeTarget& t : targets) {
    if (t.job.empty()) return InvalidArgument("scrape: a target needs a job");
    const size_t colon = t.address.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == t.address.size()) {
      return InvalidArgument("scrape: want HOST:PORT, got \"" + t.address + "\"");
    }
    if (t.metrics_path.empty() || t.metrics_path[0] != '/') {
      return InvalidArgument("scrape: metrics_path must start with /: " + t.metrics_path);
    }
    if (t.interval.count() <= 0 || t.timeout.count() <= 0) return InvalidArgument("scrape: interval and timeout must be > 0");
    std::vector<Label> pairs = TargetLabels(t);
    pairs.push_back({std::string(kMetricNameLabel), "up"});
    QCLOUD_RETURN_IF_ERROR(Labels::FromPairs(std::move(pairs)).status().WithContext("scrape job " + t.job));
  }
  return std::unique_ptr<Scraper>(new Scraper(db, std::move(targets), options));
}

Scraper::Scraper(Tsdb& db, std::vector<ScrapeTarget> targets, ScraperOptions options)
    : db_(db),
      targets_(std::move(targets)),
      options_(options),
      clock_(options.clock != nullptr ? *options.clock : RealClock()),
      states_(targets_.size()) {
  for (size_t i = 0; i < targets_.size(); ++i) {
    states_[i].health.job = targets_[i].job;
    states_[i].health.instance = targets_[i].address;
    states_[i].health.url = "http://" + targets_[i].address + targets_[i].metrics_path;
  }
}

Status Scraper::Scrape(size_t i) {
  const ScrapeTarget& t = targets_[i];
  State& st = states_[i];
  const WallTime wall = clock_.WallNow();
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(wall.time_since_epoch()).count();
  const MonoTime start = clock_.MonotonicNow();

  Status failure;
  Labelled got;
  auto ep = Resolve(t.address);
  if (!ep) {
    failure = ep.status();
  } else {
    auto reply = detail::HttpGet(*ep, t.metrics_path, "Accept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n", t.timeout,
                                 options_.max_body_bytes);
    if (!reply) {
      failure = reply.status();
    } else if (reply->status != 200) {
      failure = Status(Errc::kUnavailable, fmt::format("server returned HTTP status {}", reply->status));
    } else if (auto l = ApplyTargetLabels(t, reply->body, now_ms, options_.sample_limit); !l) {
      failure = l.status();
    } else {
      got = std::move(l).value();
    }
  }
  const double seconds = std::chrono::duration<double>(clock_.MonotonicNow() - start).count();

  uint64_t scraped = 0;
  for (const SeriesSamples& s : got.series) scraped += s.samples.size();
  std::vector<Labels> current;
  for (size_t k = 0; k < got.series.size(); ++k) {
    if (got.stamped[k]) current.push_back(got.series[k].labels);
  }
  std::sort(current.begin(), current.end());
  current.erase(std::unique(current.begin(), current.end()), current.end());
  std::vector<Labels> gone, added;
  std::set_difference(st.last_series.begin(), st.last_series.end(), current.begin(), current.end(),
                      std::back_inserter(gone));
  std::set_difference(current.begin(), current.end(), st.last_series.begin(), st.last_series.end(),
                      std::back_inserter(added));
  std::vector<SeriesSamples> batch = std::move(got.series);
  const double stale = std::bit_cast<double>(kStaleNaNBits);
  for (Labels& l : gone) batch.push_back({std::move(l), {{now_ms, stale}}});
  auto own = [&](const char* name, double v) {
    std::vector<Label> pairs = TargetLabels(t);
    pairs.push_back({std::string(kMetricNameLabel), name});
    batch.push_back({Labels::FromPairs(std::move(pairs)).value(), {{now_ms, v}}});  // checked by Make
  };
  own("up", failure.ok() ? 1 : 0);
  own("scrape_duration_seconds", seconds);
  own("scrape_samples_scraped", static_cast<double>(scraped));
  own("scrape_samples_post_metric_relabeling", static_cast<double>(scraped));
  own("scrape_series_added", static_cast<double>(added.size()));
  auto appended = db_.Append(batch);
  st.last_series = std::move(current);
  {
    std::lock_guard lock(mu_);
    st.health.up = failure.ok();
    st.health.last_error = failure.ok() ? "" : failure.message();
    st.health.last_scrape = wall;
    st.health.last_duration_seconds = seconds;
    st.health.last_samples = scraped;
  }
  if (!appended) return appended.status().WithContext("scrape " + st.health.url);
  return failure.ok() ? failure : failure.WithContext("scrape " + st.health.url);
}

std::string TargetsApiJson(const std::vector<ScrapeTarget>& targets, const std::vector<TargetHealth>& health) {
  std::string out = "{\"status\":\"success\",\"data\":{\"activeTargets\":[";
  for (size_t i = 0; i < targets.size() && i < health.size(); ++i) {
    const ScrapeTarget& t = targets[i];
    const TargetHealth& h = health[i];
    std::vector<Label> labels = TargetLabels(t);
    std::sort(labels.begin(), labels.end());
    std::vector<Label> discovered = {{"__address__", t.address},
                                     {"__metrics_path__", t.metrics_path},
                                     {"__scheme__", "http"},
                                     {"__scrape_interval__", FormatDuration(t.interval.count())},
                                     {"__scrape_timeout__", FormatDuration(t.timeout.count())},
                                     {"job", t.job}};
    for (const Label& l : t.labels) discovered.push_back(l);
    std::sort(discovered.begin(), discovered.end());
    if (i) out += ',';
    out += "{\"discoveredLabels\":";
    detail::JsonPairs(out, discovered);
    out += ",\"labels\":";
    detail::JsonPairs(out, labels);
    out += ",\"scrapePool\":";
    detail::JsonString(out, t.job);
    out += ",\"scrapeUrl\":";
    detail::JsonString(out, h.url);
    out += ",\"globalUrl\":";
    detail::JsonString(out, h.url);
    out += ",\"lastError\":";
    detail::JsonString(out, h.last_error);
    out += ",\"lastScrape\":\"" + detail::JsonTime(h.last_scrape) + "\"";
    out += fmt::format(",\"lastScrapeDuration\":{}", h.last_duration_seconds);
    out += ",\"health\":";
    out += h.last_scrape == WallTime{} ? "\"unknown\"" : h.up ? "\"up\"" : "\"down\"";
    out += ",\"scrapeInterval\":\"" + FormatDuration(t.interval.count()) + "\"";
    out += ",\"scrapeTimeout\":\"" + FormatDuration(t.timeout.count()) + "\"}";
  }
  out += "],\"droppedTargets\":[]}}";
  return out;
}

std::vector<TargetHealth> Scraper::health() const {
  std::lock_guard lock(mu_);
  std::vector<TargetHealth> out;
  out.reserve(states_.size());
  for (const State& s : states_) out.push_back(s.health);
  return out;
}

}  // namespace qcloud::monitor
