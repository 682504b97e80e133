#include "qcloud/monitor/http_api.h"

#include "monitor/json_out.h"
#include "qcloud/monitor/json_import.h"

#include <charconv>
#include <chrono>
#include <cmath>
#include <map>
#include <set>

#include <fmt/format.h>

namespace qcloud::monitor {

namespace {

using detail::JsonString;
using Params = std::vector<std::pair<std::string, std::string>>;

void JsonLabels(std::string& out, const Labels& l) { detail::JsonPairs(out, l); }

// A point's time as Prometheus 2.42's API writes a sample's: seconds, and
// the milliseconds in three digits when there are any ("1.500", "1.050");
// a scalar's goes through Go's encoding/json: "1.5".
void JsonPointTime(std::string& out, int64_t ms) {
  const uint64_t a = ms < 0 ? uint64_t{0} - static_cast<uint64_t>(ms) : static_cast<uint64_t>(ms);
  if (ms < 0) out += '-';
  out += std::to_string(a / 1000);
  if (a % 1000 != 0) out += fmt::format(".{:03}", a % 1000);
}

void JsonPoint(std::string& out, const Point& p, bool scalar = false) {
  out += '[';
  if (scalar) {
    out += FormatTime(p.t);
  } else {
    JsonPointTime(out, p.t);
  }
  out += ",\"";
  out += scalar ? FormatScalarValue(p.v) : FormatValue(p.v);
  out += "\"]";
}

// A parser error ("parse error at char 5: ...") as Prometheus 2.42 writes
// it: "1:5: parse error: ...". Other messages unchanged.
std::string PromParseError(const std::string& m) {
  constexpr std::string_view kPrefix = "parse error at char ";
  if (!m.starts_with(kPrefix)) return m;
  const std::string_view rest = std::string_view(m).substr(kPrefix.size());
  const size_t colon = rest.find(": ");
  if (colon == std::string_view::npos) return "1:" + std::string(rest);
  return "1:" + std::string(rest.substr(0, colon)) + ": parse error: " + std::string(rest.substr(colon + 2));
}

HttpResponse Json(int status, std::string body) {
  return HttpResponse{.status = status, .content_type = "application/json", .body = std::move(body)};
}

HttpResponse Success(const std::string& data) { return Json(200, "{\"status\":\"success\",\"data\":" + data + "}"); }

HttpResponse Fail(int status, std::string_view type, std::string_view message) {
  std::string body = "{\"status\":\"error\",\"errorType\":";
  JsonString(body, type);
  body += ",\"error\":";
  JsonString(body, message);
  body += '}';
  return Json(status, std::move(body));
}

const std::string* Param(const Params& p, std::string_view name) {
  for (const auto& [n, v] : p) {
    if (n == name) return &v;
  }
  return nullptr;
}

}  // namespace

HttpApi::HttpApi(Tsdb& db, HttpApiOptions options)
    : db_(db), options_(options), engine_(db, options.query), ingester_(db, options.remote_write) {
  if (options_.clock == nullptr) options_.clock = &RealClock();
}

void HttpApi::ReleaseIdleMemory() { ingester_.ReleaseIdleMemory(); }

HttpApiStats HttpApi::stats() const noexcept {
  const auto r = std::memory_order_relaxed;
  return {.queries = counters_.queries.load(r),
          .range_queries = counters_.range_queries.load(r),
          .series_requests = counters_.series_requests.load(r),
          .remote_writes = counters_.remote_writes.load(r),
          .imports = counters_.imports.load(r),
          .samples_written = counters_.samples_written.load(r),
          .samples_refused = counters_.samples_refused.load(r),
          .bad_requests = counters_.bad_requests.load(r)};
}

HttpResponse HttpApi::Handle(const HttpRequest& req) {
  const int64_t now =
      std::chrono::duration_cast<std::chrono::milliseconds>(options_.clock->WallNow().time_since_epoch()).count();
  auto bad = [&](std::string_view message) {
    counters_.bad_requests.fetch_add(1, std::memory_order_relaxed);
    return Fail(400, "bad_data", message);
  };
  const std::string& path = req.path;
  if (path == "/-/healthy" || path == "/-/ready") return HttpResponse{.body = "OK\n"};
  const bool get = req.method == "GET" || req.method == "HEAD";
  const bool post = req.method == "POST";

  // Ingestion.
  auto written = [&](const Result<AppendResult>& r) -> HttpResponse {
    if (!r.ok()) {
      if (r.status().code() == Errc::kIoError) return Fail(500, "internal", r.status().message());
      return bad(r.status().message());
    }
    counters_.samples_written.fetch_add(r->appended, std::memory_order_relaxed);
    counters_.samples_refused.fetch_add(r->out_of_order + r->conflicts + r->too_old + r->out_of_range, std::memory_order_relaxed);
    return HttpResponse{.status = 204, .body = ""};
  };
  auto append = [&](std::vector<SeriesSamples>& series) { return written(db_.Append(series)); };
  if (path == "/api/v1/write") {
    if (!post) return Fail(405, "bad_data", "remote write takes POST");
    counters_.remote_writes.fetch_add(1, std::memory_order_relaxed);
    return written(ingester_.Ingest(ByteView(req.body)));
  }
  if (path == "/api/v1/import") {
    if (!post) return Fail(405, "bad_data", "import takes POST");
    counters_.imports.fetch_add(1, std::memory_order_relaxed);
    auto series = ParseJsonLines(req.body, {.max_samples = options_.max_text_samples});
    if (!series.ok()) return bad(series.status().message());
    return append(*series);
  }
  if (path == "/api/v1/import/prometheus") {
    if (!post) return Fail(405, "bad_data", "import takes POST");
    counters_.imports.fetch_add(1, std::memory_order_relaxed);
    auto series = ParseTextFormat(req.body, {.default_timestamp = now, .max_samples = options_.max_text_samples});
    if (!series.ok()) return bad(series.status().message());
    return append(*series);
  }

  if (!path.starts_with("/api/v1/")) return Fail(404, "not_found", "no such path: " + path);
  if (!get && !post) return Fail(405, "bad_data", "method not allowed");
  // Parameters: the URL's query, and a form body on POST.
  Params params;
  if (!ParseUrlQuery(req.query, params)) return bad("malformed query string");
  if (post && req.Header("content-type").starts_with("application/x-www-form-urlencoded") &&
      !ParseUrlQuery(req.body, params)) {
    return bad("malformed form body");
  }
  auto time_param = [&](std::string_view name, int64_t fallback) -> Result<int64_t> {
    const std::string* v = Param(params, name);
    if (v == nullptr || v->empty()) return fallback;
    auto t = detail::ParseTime(*v);
    if (!t.ok()) {
      // Prometheus's own words, which differ for `time`.
      return InvalidArgument(fmt::format("invalid parameter \"{}\": {}{}", name,
                                         name == "time" ? "Invalid time value for 'time': " : "", t.status().message()));
    }
    return t;
  };
  // Prometheus 2.42 writes a parse error as "1:5: parse error: ...", after
  // "invalid parameter "query": " for an instant query only.
  auto query_result = [&](Result<QueryResult> r, bool instant) -> HttpResponse {
    if (!r.ok()) {
      const std::string m = r.status().message();
      if (r.status().code() == Errc::kInvalidArgument && m.starts_with("parse error at char ")) {
        return bad(instant ? "invalid parameter \"query\": " + PromParseError(m) : PromParseError(m));
      }
      if (r.status().code() == Errc::kInvalidArgument) return bad(r.status().message());
      return Fail(422, "execution", r.status().message());
    }
    std::string data = "{\"resultType\":";
    switch (r->type) {
      case ValueType::kScalar:
        data += "\"scalar\",\"result\":";
        JsonPoint(data, r->series[0].points[0], /*scalar=*/true);
        return Success(data + "}");
      case ValueType::kVector: data += "\"vector\",\"result\":["; break;
      case ValueType::kMatrix: data += "\"matrix\",\"result\":["; break;
      case ValueType::kString:
        data += "\"string\",\"result\":[" + FormatTime(r->series[0].points[0].t) + ",";
        JsonString(data, r->string);
        return Success(data + "]}");
    }
    bool first = true;
    for (const SeriesPoints& s : r->series) {
      if (!first) data += ',';
      first = false;
      data += "{\"metric\":";
      JsonLabels(data, s.labels);
      if (r->type == ValueType::kVector) {
        data += ",\"value\":";
        JsonPoint(data, s.points[0]);
      } else {
        data += ",\"values\":[";
        for (size_t i = 0; i < s.points.size(); ++i) {
          if (i) data += ',';
          JsonPoint(data, s.points[i]);
        }
        data += ']';
      }
      data += '}';
    }
    return Success(data + "]}");
  };

  if (path == "/api/v1/query") {
    counters_.queries.fetch_add(1, std::memory_order_relaxed);
    const std::string* q = Param(params, "query");
    auto t = time_param("time", now);
    if (!t.ok()) return bad(t.status().message());
    // A missing query is an empty one: "no expression found in input".
    return query_result(engine_.Instant(q == nullptr ? std::string() : *q, *t), true);
  }
  if (path == "/api/v1/query_range") {
    counters_.range_queries.fetch_add(1, std::memory_order_relaxed);
    const std::string* q = Param(params, "query");
    const std::string* step = Param(params, "step");
    auto start = time_param("start", INT64_MIN);
    auto end = time_param("end", INT64_MIN);
    if (!start.ok()) return bad(start.status().message());
    if (!end.ok()) return bad(end.status().message());
    if (*start == INT64_MIN) return bad("invalid parameter \"start\": cannot parse \"\" to a valid timestamp");
    if (*end == INT64_MIN) return bad("invalid parameter \"end\": cannot parse \"\" to a valid timestamp");
    const std::string step_text = step == nullptr ? std::string() : *step;
    auto st = ParseDuration(step_text, true);
    if (!st.ok()) {
      // Seconds below zero parse in Prometheus and fail its sign check.
      if (step_text.starts_with('-') && ParseDuration(step_text.substr(1), true).ok()) st = int64_t{-1};
      if (!st.ok()) return bad(fmt::format("invalid parameter \"step\": cannot parse \"{}\" to a valid duration", step_text));
    }
    return query_result(engine_.Range(q == nullptr ? std::string() : *q, *start, *end, *st), false);
  }
  if (path == "/api/v1/series" || path == "/api/v1/labels" ||
      (path.starts_with("/api/v1/label/") && path.ends_with("/values"))) {
    // Prometheus takes POST for the series and label names, GET only for
    // a label's values.
    if (post && path.starts_with("/api/v1/label/")) {
      return HttpResponse{.status = 405, .content_type = "text/plain; charset=utf-8", .body = "Method Not Allowed\n"};
    }
    counters_.series_requests.fetch_add(1, std::memory_order_relaxed);
    auto start = time_param("start", INT64_MIN);
    auto end = time_param("end", INT64_MAX);
    if (!start.ok()) return bad(start.status().message());
    if (!end.ok()) return bad(end.status().message());
    std::vector<std::vector<Matcher>> selectors;
    for (const auto& [n, v] : params) {
      if (n != "match[]") continue;
      auto e = Expr::Parse(v);
      if (!e.ok()) {
        if (e.status().message().ends_with("at least one non-empty matcher")) {
          return bad("invalid parameter \"match[]\": match[] must contain at least one non-empty matcher");
        }
        return bad("invalid parameter \"match[]\": " + PromParseError(e.status().message()));
      }
      auto m = e->SelectorMatchers();
      if (!m.ok()) return bad("invalid parameter \"match[]\": " + m.status().message());
      selectors.push_back(std::move(m).value());
    }
    if (path == "/api/v1/series" && selectors.empty()) return bad("no match[] parameter provided");
    // The matching series' labels, each once, in order.
    std::map<Labels, bool> found;
    for (const auto& sel : selectors) {
      auto r = db_.Series(sel, *start, *end);
      if (!r.ok()) return bad(r.status().message());
      for (Labels& l : *r) found.emplace(std::move(l), true);
    }
    std::string data = "[";
    bool first = true;
    auto item = [&](std::string_view s) {
      if (!first) data += ',';
      first = false;
      JsonString(data, s);
    };
    if (path == "/api/v1/series") {
      for (const auto& [l, _] : found) {
        if (!first) data += ',';
        first = false;
        JsonLabels(data, l);
      }
    } else if (path == "/api/v1/labels") {
      if (selectors.empty()) {
        for (const std::string& n : db_.LabelNames()) item(n);
      } else {
        std::set<std::string> names;
        for (const auto& [l, _] : found)
          for (LabelView p : l.pairs()) names.emplace(p.name);
        for (const std::string& n : names) item(n);
      }
    } else {
      std::string name;
      const std::string_view raw = std::string_view(path).substr(14, path.size() - 14 - 7);
      name = std::string(raw);
      if (!ValidLabelName(name)) return bad(fmt::format("invalid label name: \"{}\"", name));
      if (selectors.empty()) {
        for (const std::string& v : db_.LabelValues(name)) item(v);
      } else {
        std::set<std::string> values;
        for (const auto& [l, _] : found) {
          if (auto v = l.Get(name); !v.empty()) values.insert(std::string(v));
        }
        for (const std::string& v : values) item(v);
      }
    }
    return Success(data + "]");
  }
  return Fail(404, "not_found", "no such path: " + path);
}

std::string AlertsApiJson(const std::vector<Alert>& alerts) {
  std::string out = "{\"status\":\"success\",\"data\":{\"alerts\":[";
  bool first = true;
  for (const Alert& a : alerts) {
    if (a.state == AlertState::kResolved) continue;
    if (!first) out += ',';
    first = false;
    out += "{\"labels\":";
    JsonLabels(out, a.labels);
    out += ",\"annotations\":";
    detail::JsonPairs(out, a.annotations);
    out += ",\"state\":\"";
    out += AlertStateName(a.state);
    out += "\",\"activeAt\":\"" + detail::JsonTime(a.active_at) + "\",\"value\":\"" + FormatValue(a.value) + "\"}";
  }
  return out + "]}}";
}

Status HttpApi::RegisterMetrics(MetricsRegistry& registry) {
  struct Row {
    const char* name;
    const char* help;
    MetricType type;
    std::function<double()> read;
  };
  auto api = [this](uint64_t HttpApiStats::*f) { return [this, f] { return static_cast<double>(stats().*f); }; };
  auto db = [this](uint64_t TsdbStats::*f) { return [this, f] { return static_cast<double>(db_.stats().*f); }; };
  const Row rows[] = {
      {"qcloud_monitor_queries_total", "Instant queries answered.", MetricType::kCounter, api(&HttpApiStats::queries)},
      {"qcloud_monitor_range_queries_total", "Range queries answered.", MetricType::kCounter, api(&HttpApiStats::range_queries)},
      {"qcloud_monitor_remote_writes_total", "Remote-write requests.", MetricType::kCounter, api(&HttpApiStats::remote_writes)},
      {"qcloud_monitor_imports_total", "Text-format pushes.", MetricType::kCounter, api(&HttpApiStats::imports)},
      {"qcloud_monitor_samples_refused_total", "Samples refused as out of order, conflicting or too old.",
       MetricType::kCounter, api(&HttpApiStats::samples_refused)},
      {"qcloud_monitor_bad_requests_total", "Requests answered with a 4xx.", MetricType::kCounter, api(&HttpApiStats::bad_requests)},
      {"qcloud_monitor_series", "Series in the head.", MetricType::kGauge, db(&TsdbStats::series)},
      {"qcloud_monitor_head_samples", "Samples in the head.", MetricType::kGauge, db(&TsdbStats::samples)},
      {"qcloud_monitor_head_chunk_bytes", "Encoded bytes of the head's chunks.", MetricType::kGauge,
       db(&TsdbStats::chunk_bytes)},
      {"qcloud_monitor_chunk_memory_bytes", "Resident pages holding chunks in memory.", MetricType::kGauge,
       db(&TsdbStats::chunk_memory_bytes)},
      {"qcloud_monitor_chunk_memory_used_bytes", "Of those, the slots of live chunks.", MetricType::kGauge,
       db(&TsdbStats::chunk_memory_used_bytes)},
      {"qcloud_monitor_chunk_repacks_total", "Times the head's chunks were moved to give pages back.",
       MetricType::kCounter, db(&TsdbStats::chunk_repacks)},
      {"qcloud_monitor_samples_appended_total", "Samples taken by the store.", MetricType::kCounter, db(&TsdbStats::appended)},
      {"qcloud_monitor_blocks", "Blocks on disk.", MetricType::kGauge, db(&TsdbStats::blocks)},
      {"qcloud_monitor_block_bytes", "Bytes of blocks on disk.", MetricType::kGauge, db(&TsdbStats::block_bytes)},
      {"qcloud_monitor_block_samples", "Samples in blocks on disk.", MetricType::kGauge, db(&TsdbStats::block_samples)},
      {"qcloud_monitor_wal_bytes_total", "Bytes written to the write-ahead log.", MetricType::kCounter, db(&TsdbStats::wal_bytes)},
      {"qcloud_monitor_compactions_total", "Head cuts into blocks.", MetricType::kCounter, db(&TsdbStats::compactions)},
      {"qcloud_monitor_merges_total", "Blocks merged into a larger one.", MetricType::kCounter, db(&TsdbStats::merges)},
      {"qcloud_monitor_compacting", "1 while a compaction (a cut, merges, retention) runs.", MetricType::kGauge,
       db(&TsdbStats::compacting)},
      {"qcloud_monitor_corrupt_chunks_total", "Chunks that failed their checksum when read.", MetricType::kCounter,
       db(&TsdbStats::corrupt_chunks)},
  };
  for (const Row& r : rows) QCLOUD_RETURN_IF_ERROR(registry.AddCallback(r.name, r.help, r.type, r.read));
  return Status::Ok();
}

}  // namespace qcloud::monitor
