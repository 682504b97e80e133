#pragma once

// A PromQL subset over a Tsdb, evaluated as Prometheus 2.42 evaluates it
// (the same lookback, the same extrapolation in rate()), for dashboards
// and alarm rules:
//
//   QueryEngine engine(*db);
//   auto r = engine.Range("sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m]))",
//                         start_ms, end_ms, 15'000);
//
// The language taken:
//   - numbers (decimal, scientific, hex, Inf, NaN) and durations (1h30m, 5m, 500ms);
//   - vector selectors: name{label="v", label!="v", label=~"re", label!~"re"},
//     with a range [5m] and `offset 1h`; regexes fully anchored (matcher.h);
//   - functions over ranges: rate, irate, increase, delta, avg_over_time,
//     min_over_time, max_over_time, sum_over_time, count_over_time,
//     last_over_time; and abs, time(), vector(s), scalar(v);
//   - aggregations sum, avg, min, max, count, with `by (...)` or `without (...)`,
//     before or after the argument;
//   - binary + - * / % ^ and == != > < >= <= (a filter, or 0/1 with
//     `bool`) between scalars and vectors; between two vectors one-to-one,
//     matched on all labels but the name, or `on (...)` / `ignoring (...)`;
//   - unary minus, parentheses; a string literal as an instant query;
//   - keywords and aggregation names in any case (SUM BY), strings with
//     Go's escapes (\n, \x41, \u00fc, \U0001F600, octal).
// Anything else (subqueries, @, and/or/unless, group_left/right,
// other functions) is a parse error naming what is not supported.
//
// Semantics (Prometheus 2.42): an instant selector takes each series'
// newest sample in [t - lookback, t] (5 minutes), a range selector the
// samples in [t - range, t]; staleness markers (the StaleNaN bit pattern)
// end a series. Functions other than last_over_time, arithmetic, and
// `bool` comparisons drop the metric name; every function's and
// operator's result must keep its label sets apart ("vector cannot contain
// metrics with the same labelset"). sum_over_time and avg_over_time add
// with Neumaier's compensation; ^ is Go's math.Pow (bit for bit for whole
// exponents; through the C library's exp and log, an ulp or so from Go's,
// for fractional ones). Checked against a real Prometheus 2.42 by
// tests/interop/monitor_promql_diff.py.
//
// Bounds: a query of at most 64 KiB and nesting depth 128; at most
// max_samples samples loaded and 11,000 steps (11,001 points) in a range
// query.
//
// Thread safety: an engine may be used from several threads (the Tsdb is
// thread-safe; the engine holds no state between queries).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/monitor/labels.h"
#include "qcloud/monitor/tsdb.h"

namespace qcloud::monitor {

inline constexpr size_t kMaxQueryBytes = 64 * 1024;
inline constexpr int kMaxQueryDepth = 128;
inline constexpr size_t kMaxSteps = 11000;
// The longest range, offset or step: Go's time.Duration, int64
// nanoseconds (292 years), as Prometheus takes them.
inline constexpr int64_t kMaxDurationMs = INT64_MAX / 1'000'000;

enum class ValueType { kScalar, kVector, kMatrix, kString };

struct Point {
  int64_t t = 0;
  double v = 0;
};

struct SeriesPoints {
  Labels labels;
  std::vector<Point> points;
};

struct QueryResult {
  ValueType type = ValueType::kVector;
  // kVector: one point per series (at the query time); kMatrix: the points
  // of each series; kScalar: one series with no labels and one point;
  // kString (an instant query of a string literal): that point's time.
  std::vector<SeriesPoints> series;
  std::string string;  // kString: the literal
};

struct QueryOptions {
  std::chrono::milliseconds lookback = std::chrono::minutes(5);  // an instant selector's reach back
  size_t max_samples = 50'000'000;  // loaded by one query (Prometheus's query.max-samples)
};

namespace detail {
struct Node;
}

// A parsed expression.
class QCLOUD_EXPORT Expr {
 public:
  // kInvalidArgument with Prometheus-like messages ("parse error at char N: ...").
  static Result<Expr> Parse(std::string_view query);
  ValueType type() const noexcept;
  // The expression printed back in PromQL.
  std::string ToString() const;
  // The matchers of a plain instant vector selector (the API's match[]
  // parameters); kInvalidArgument for any other expression.
  Result<std::vector<Matcher>> SelectorMatchers() const;

 private:
  std::shared_ptr<const detail::Node> root_;
  friend class QueryEngine;
};

class QCLOUD_EXPORT QueryEngine {
 public:
  explicit QueryEngine(Tsdb& db, QueryOptions options = {}) : db_(db), options_(options) {}

  // The value of `query` at time t (ms). kInvalidArgument for a query that
  // does not parse or type-check; kResourceExhausted past max_samples;
  // kAborted for what Prometheus fails as it evaluates (HTTP 422,
  // "execution"): a result with two series of one label set, many-to-many
  // matching.
  Result<QueryResult> Instant(std::string_view query, int64_t t);
  // At start, start + step, ... <= end (ms). kInvalidArgument when the
  // query is not a scalar or instant vector, step <= 0, end < start, or
  // more than kMaxSteps steps.
  Result<QueryResult> Range(std::string_view query, int64_t start, int64_t end, int64_t step);

  Result<QueryResult> Instant(const Expr& expr, int64_t t);
  Result<QueryResult> Range(const Expr& expr, int64_t start, int64_t end, int64_t step);

 private:
  Tsdb& db_;
  QueryOptions options_;
};

// A sample value as Prometheus's HTTP API writes it: the shortest digits
// that read back as the same double, laid out in decimal ("0.1",
// "1152921504606847000") unless |v| < 1e-6 or >= 1e21 ("1e-07", "1e+21");
// "NaN", "+Inf", "-Inf" for the specials.
QCLOUD_EXPORT std::string FormatValue(double v);
// A scalar result's value: Prometheus writes those always in decimal
// ("1000000000000000000000", "0.0000001").
QCLOUD_EXPORT std::string FormatScalarValue(double v);
// A value as Go's fmt prints a float64 (%v), which is how Prometheus's
// templates write {{ $value }}: the same digits, in exponent form when the
// exponent is below -4 or 6 and above ("1e+06", "123456", "1e-05").
QCLOUD_EXPORT std::string FormatGoFloat(double v);
// A timestamp in seconds as the API writes it: 1435781451.781.
QCLOUD_EXPORT std::string FormatTime(int64_t ms);
// A duration as PromQL writes it: 1h30m, 5m, 500ms.
QCLOUD_EXPORT std::string FormatDuration(int64_t ms);
// "1h30m", "5m", "10s", "500ms"; also plain seconds "30" or "1.5" when
// `allow_seconds` (the API's step and timeout). kInvalidArgument otherwise.
QCLOUD_EXPORT Result<int64_t> ParseDuration(std::string_view s, bool allow_seconds = false);

}  // namespace qcloud::monitor
