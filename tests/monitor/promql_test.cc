// The PromQL subset against Prometheus 2.42's own answers. The expected
// values below were produced by Prometheus's engine itself: the same
// series and expressions run through `promtool test rules` (Debian's
// prometheus 2.42), whose report prints what the engine computed.

#include "qcloud/monitor/promql.h"

#include "qcloud/monitor/http_api.h"

#include <doctest/doctest.h>

#include <bit>
#include <cmath>
#include <string>
#include <vector>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::monitor {
namespace {

using testing::TempDir;

constexpr int64_t kMin = 60 * 1000;

// promtool's input_series: one value every 5 minutes from 0.
void Load(Tsdb& db, const std::vector<std::pair<Labels, std::vector<double>>>& series) {
  std::vector<SeriesSamples> batch;
  for (const auto& [labels, values] : series) {
    SeriesSamples s{labels, {}};
    for (size_t i = 0; i < values.size(); ++i) s.samples.push_back({static_cast<int64_t>(i) * 5 * kMin, values[i]});
    batch.push_back(std::move(s));
  }
  REQUIRE_OK(db.Append(batch));
}

Labels L(std::initializer_list<std::pair<std::string_view, std::string_view>> p) { return REQUIRE_VALUE(Labels::FromPairs(p)); }

struct Want {
  std::string labels;  // Labels::ToString()
  double v;
};

void Expect(QueryEngine& e, const std::string& q, int64_t t, const std::vector<Want>& want) {
  INFO(q, " at ", t / kMin, "m");
  auto r = REQUIRE_VALUE(e.Instant(q, t));
  REQUIRE(r.series.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    CHECK(r.series[i].labels.ToString() == want[i].labels);
    REQUIRE(r.series[i].points.size() == 1);
    CHECK(r.series[i].points[0].v == doctest::Approx(want[i].v).epsilon(1e-12));
  }
}

struct Fixture {
  TempDir dir{"qcloud-promql"};
  std::unique_ptr<Tsdb> db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
  QueryEngine engine{*db};
  Fixture() {
    Load(*db, {{L({{"__name__", "c"}, {"job", "a"}, {"i", "1"}}), {0, 10, 20, 30, 40, 0, 10, 20, 30, 40, 50}},
               {L({{"__name__", "c"}, {"job", "a"}, {"i", "2"}}), {3, 7, 12, 20, 21, 40, 41, 43, 47, 50, 53}},
               {L({{"__name__", "g"}, {"job", "a"}}), {1, 5, 2, 8, 3, 3, 9, 0, 4, 6, 7}}});
  }
};

TEST_CASE("promql rates and increases match Prometheus 2.42 to the last digit") {
  Fixture f;
  Expect(f.engine, "rate(c[50m])", 50 * kMin, {{"{i=\"1\", job=\"a\"}", 0.03}, {"{i=\"2\", job=\"a\"}", 1.6666666666666666e-02}});
  Expect(f.engine, "increase(c[15m])", 33 * kMin, {{"{i=\"1\", job=\"a\"}", 15}, {"{i=\"2\", job=\"a\"}", 30}});
  Expect(f.engine, "irate(c[10m])", 27 * kMin, {{"{i=\"1\", job=\"a\"}", 0}, {"{i=\"2\", job=\"a\"}", 6.333333333333334e-02}});
  Expect(f.engine, "delta(g[20m])", 41 * kMin, {{"{job=\"a\"}", 1.3333333333333333}});
  Expect(f.engine, "sum by (job) (rate(c[10m]))", 22 * kMin, {{"{job=\"a\"}", 3.666666666666667e-02}});
  Expect(f.engine, "rate(c[7m])", 23 * kMin, {});  // one sample in range: nothing
}

TEST_CASE("promql over time functions selectors offsets and operators match Prometheus 2.42") {
  Fixture f;
  Expect(f.engine, "avg_over_time(g[20m])", 41 * kMin, {{"{job=\"a\"}", 4}});
  Expect(f.engine, "g > 3", 32 * kMin, {{"g{job=\"a\"}", 9}});
  Expect(f.engine, "g > bool 3", 32 * kMin, {{"{job=\"a\"}", 1}});
  Expect(f.engine, "g < 3", 32 * kMin, {});
  Expect(f.engine, "g offset 10m", 52 * kMin, {{"g{job=\"a\"}", 4}});
  Expect(f.engine, "max_over_time(g[12m]) - min_over_time(g[12m])", 44 * kMin, {{"{job=\"a\"}", 4}});
  Expect(f.engine, "count_over_time(c[12m])", 44 * kMin, {{"{i=\"1\", job=\"a\"}", 2}, {"{i=\"2\", job=\"a\"}", 2}});
  Expect(f.engine, "c{i=\"2\"} - ignoring(i) g", 44 * kMin, {{"{job=\"a\"}", 43}});
  Expect(f.engine, "-g^2 + 1", 5 * kMin, {{"{job=\"a\"}", -24}});
  Expect(f.engine, "g", 56 * kMin, {});  // the last sample is older than the 5 m lookback
  Expect(f.engine, "g", 55 * kMin, {{"g{job=\"a\"}", 7}});  // exactly 5 m back: still seen
  Expect(f.engine, "last_over_time(g[1h])", 60 * kMin, {{"g{job=\"a\"}", 7}});
  Expect(f.engine, "sum(c)", 10 * kMin, {{"{}", 32}});
  Expect(f.engine, "count without (i) (c)", 10 * kMin, {{"{job=\"a\"}", 2}});
  Expect(f.engine, "max(c) by (i)", 10 * kMin, {{"{i=\"1\"}", 20}, {"{i=\"2\"}", 12}});
  Expect(f.engine, "avg(c)", 10 * kMin, {{"{}", 16}});
  Expect(f.engine, "min(c{job=~\"a|b\", i!~\"1\"})", 10 * kMin, {{"{}", 12}});
  Expect(f.engine, "c / on(i) c", 10 * kMin, {{"{i=\"1\"}", 1}, {"{i=\"2\"}", 1}});
  Expect(f.engine, "abs(g - 10)", 10 * kMin, {{"{job=\"a\"}", 8}});
  Expect(f.engine, "vector(time())", 10 * kMin, {{"{}", 600}});
  auto s = REQUIRE_VALUE(f.engine.Instant("scalar(g) * 2 + 1", 10 * kMin));
  CHECK(s.type == ValueType::kScalar);
  CHECK(s.series[0].points[0].v == 5);
  auto m = REQUIRE_VALUE(f.engine.Instant("g[11m]", 10 * kMin));
  CHECK(m.type == ValueType::kMatrix);
  REQUIRE(m.series.size() == 1);
  CHECK(m.series[0].points.size() == 3);  // 0m, 5m, 10m: the range is closed at both ends
}

TEST_CASE("promql range queries step through time and staleness ends a series") {
  Fixture f;
  auto r = REQUIRE_VALUE(f.engine.Range("g", 0, 60 * kMin, 10 * kMin));
  REQUIRE(r.series.size() == 1);
  // 0m..50m; at 60m the last sample (50m) is past the lookback.
  REQUIRE(r.series[0].points.size() == 6);
  CHECK(r.series[0].points[1].t == 10 * kMin);
  CHECK(r.series[0].points[1].v == 2);
  // A staleness marker ends the series at once.
  std::vector<SeriesSamples> stale = {{L({{"__name__", "g"}, {"job", "a"}}), {{51 * kMin, std::bit_cast<double>(kStaleNaNBits)}}}};
  REQUIRE_OK(f.db->Append(stale));
  Expect(f.engine, "g", 52 * kMin, {});
  Expect(f.engine, "count_over_time(g[3m])", 52 * kMin, {{"{job=\"a\"}", 1}});  // the marker is not a sample
  CHECK_ERRC(f.engine.Range("g", 0, 10, 0), Errc::kInvalidArgument);
  CHECK_ERRC(f.engine.Range("g", 0, 20000 * kMin, 1000), Errc::kInvalidArgument);
  CHECK_ERRC(f.engine.Range("g[5m]", 0, 10, 1), Errc::kInvalidArgument);
  // Prometheus bounds the steps, not the points: 11,000 steps are 11,001.
  CHECK(REQUIRE_VALUE(f.engine.Range("vector(1)", 0, 11000, 1)).series[0].points.size() == 11001);
  CHECK_ERRC(f.engine.Range("vector(1)", 0, 11001, 1), Errc::kInvalidArgument);
}

TEST_CASE("promql sums over time compensate rounding and powers are Go's") {
  TempDir dir{"qcloud-promql-kahan"};
  auto db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
  QueryEngine engine{*db};
  // Values from the differential test against Prometheus 2.42: a plain
  // sum gives -61.791 and a plain running mean 791.3333333333334.
  Load(*db, {{L({{"__name__", "a"}}), {780, 782, 786, 794, 796, 810}},
             {L({{"__name__", "b"}}), {1e16, 1, -1e16}}});
  auto at = [&](const std::string& q) {
    auto r = REQUIRE_VALUE(engine.Instant(q, 25 * kMin));
    REQUIRE(r.series.size() == 1);
    return FormatValue(r.series[0].points[0].v);
  };
  CHECK(at("avg_over_time(a[30m])") == "791.3333333333333");
  // 1e16 + 1 rounds the 1 away; the compensation keeps it (a plain sum: 0).
  CHECK(at("sum_over_time(b[30m])") == "1");
  // Whole exponents by squaring, as Go's math.Pow: exact where the C
  // library's pow rounds once.
  CHECK(at("vector(2) ^ 60") == "1152921504606847000");
  CHECK(at("vector(1.1) ^ 3") == FormatValue(1.1 * 1.1 * 1.1));
  CHECK(at("vector(-8) ^ 0.5") == "NaN");
}

TEST_CASE("promql functions and unary minus that leave two series one label set fail as in Prometheus") {
  Fixture f;
  Load(*f.db, {{L({{"__name__", "d"}, {"job", "a"}}), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}});
  // g{job="a"} and d{job="a"}: with the names dropped, both are {job="a"}.
  for (const char* q : {"rate({__name__=~\"g|d\"}[10m])", "sum(rate({__name__=~\"g|d\"}[10m]))",
                        "sum by (job) (delta({job=\"a\",__name__=~\"g|d\"}[10m]))", "-{__name__=~\"g|d\"}",
                        "abs({__name__=~\"g|d\"})", "sum by (job) (2 * {__name__=~\"g|d\"})",
                        "max(({__name__=~\"g|d\"} > bool 0))"}) {
    INFO(q);
    auto r = f.engine.Instant(q, 20 * kMin);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Errc::kAborted);
    CHECK(r.status().message() == "vector cannot contain metrics with the same labelset");
    CHECK_ERRC(f.engine.Range(q, 10 * kMin, 20 * kMin, 5 * kMin), Errc::kAborted);
  }
  // One side empty: nothing can match, so the other side's duplicate
  // match groups are no error (Prometheus returns at once).
  Expect(f.engine, "nothing * on (job) {__name__=~\"g|d\"}", 20 * kMin, {});
  auto dup = f.engine.Instant("g * on (job) {__name__=~\"g|d\"}", 20 * kMin);
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.status().message() ==
        "found duplicate series for the match group {job=\"a\"} on the right hand-side of the operation: "
        "[{__name__=\"g\", job=\"a\"}, {__name__=\"d\", job=\"a\"}];many-to-many matching not allowed: "
        "matching labels must be unique on one side");
  // Two left series in one match group are an error only when both pass
  // the filter: d (5) and g (3) against 4.
  Expect(f.engine, "{__name__=~\"g|d\"} > ignoring (x) vector(4)", 20 * kMin, {});
  Expect(f.engine, "{__name__=~\"g|d\"} > on () vector(4)", 20 * kMin, {{"{}", 5}});
  CHECK_ERRC(f.engine.Instant("{__name__=~\"g|d\"} > on () vector(1)", 20 * kMin), Errc::kAborted);
  // last_over_time keeps the names: two series.
  Expect(f.engine, "last_over_time({__name__=~\"g|d\"}[10m])", 20 * kMin, {{"d{job=\"a\"}", 5}, {"g{job=\"a\"}", 3}});
}

TEST_CASE("promql parse errors name the problem and the parser prints back") {
  for (const char* bad : {"", "sum(", "rate(g)", "g[5m] + 1", "1 > 2", "{}", "{a=~\".*\"}", "g[5x]", "foo(g)",
                          "g @ 100", "g[5m:1m]", "a and b", "a * on(x) group_left b", "sum(g, 1)", "g offset",
                          "g{a=\"\\q\"}", "g{a='\\\"'}", "g{a=\"\\ud800\"}", "g{a=\"\\x4\"}", "rate(g[5m]", ")",
                          "g{a=~\"(\"}", "g offset 0s", "g[0s]", "RATE(g[5m])",
                          // Keywords are no metric names (as in Prometheus; the fuzzer found a
                          // unary-signed one that printed back as a modifier).
                          "i+++group_left+++++++++an+++++++++++++2", "a + -group_right", "a - +on",
                          "a + unless"}) {
    INFO(bad);
    CHECK_ERRC(Expr::Parse(bad), Errc::kInvalidArgument);
  }
  CHECK_ERRC(Expr::Parse(std::string(2000, '(') + "1" + std::string(2000, ')')), Errc::kInvalidArgument);
  for (const char* good : {"sum by (job) (rate(http_requests_total{code=~\"5..\"}[5m] offset 1h))",
                           "g > bool 3", "1 + 2 * 3", "c / ignoring (i) g", "max without (a, b) (c)",
                           "+g - -1", "{__name__=\"group_left\"} + 1", "\"str\"",
                           // Keywords in any case, as Prometheus's lexer takes them.
                           "SUM BY (job) (g)", "Sum(g) Without (a)", "g > BOOL 1", "g Offset 5m",
                           "a * ON (x) b"}) {
    INFO(good);
    auto e = REQUIRE_VALUE(Expr::Parse(good));
    INFO(e.ToString());
    auto again = REQUIRE_VALUE(Expr::Parse(e.ToString()));
    CHECK(again.ToString() == e.ToString());
  }
  CHECK(REQUIRE_VALUE(Expr::Parse("sum(rate(x[1h30m]))")).ToString() == "sum (rate(x[1h30m]))");
  CHECK(REQUIRE_VALUE(Expr::Parse("SUM BY (Job) (g)")).ToString() == "sum by (Job) (g)");
  // Go's string escapes: \u, \U, \x and octal bytes, \a \b \f \v.
  CHECK(REQUIRE_VALUE(Expr::Parse("g{a=\"\\u00fcn\\U0001F600\\x41\\101\\a\"}")).ToString() ==
        "g{a=\"\xc3\xbcn\xf0\x9f\x98\x80" "AA\a\"}");
  CHECK(REQUIRE_VALUE(Expr::Parse("0x10 + 1e2 + Inf")).type() == ValueType::kScalar);
}

TEST_CASE("promql values and times are written as Prometheus's API writes them") {
  CHECK(FormatValue(1) == "1");
  CHECK(FormatValue(0.1) == "0.1");
  // Prometheus's JSON: the shortest digits, exponent form outside [1e-6, 1e21).
  CHECK(FormatValue(1e21) == "1e+21");
  CHECK(FormatValue(9.5e20) == "950000000000000000000");
  CHECK(FormatValue(1.5e-7) == "1.5e-07");
  CHECK(FormatValue(1e-6) == "0.000001");
  CHECK(FormatValue(-2.5e300) == "-2.5e+300");
  CHECK(FormatValue(1152921504606846976.0) == "1152921504606847000");
  CHECK(FormatValue(0.30000000000000004) == "0.30000000000000004");
  CHECK(FormatValue(-0.0) == "-0");
  CHECK(FormatValue(5e-324) == "5e-324");
  CHECK(FormatScalarValue(1e21) == "1000000000000000000000");
  CHECK(FormatScalarValue(1e-7) == "0.0000001");
  CHECK(FormatScalarValue(-INFINITY) == "-Inf");
  // Go's %v, as templates print $value.
  CHECK(FormatGoFloat(123456) == "123456");
  CHECK(FormatGoFloat(1e6) == "1e+06");
  CHECK(FormatGoFloat(1234567.5) == "1.2345675e+06");
  CHECK(FormatGoFloat(0.0001) == "0.0001");
  CHECK(FormatGoFloat(0.00001) == "1e-05");
  CHECK(FormatGoFloat(0.5) == "0.5");
  CHECK(FormatGoFloat(NAN) == "NaN");
  CHECK(FormatValue(-2.25) == "-2.25");
  CHECK(FormatValue(NAN) == "NaN");
  CHECK(FormatValue(INFINITY) == "+Inf");
  CHECK(FormatValue(-INFINITY) == "-Inf");
  CHECK(FormatTime(1435781451781) == "1435781451.781");
  CHECK(FormatTime(1435781451000) == "1435781451");
  CHECK(FormatTime(1435781451500) == "1435781451.5");
  CHECK(FormatTime(-1500) == "-1.5");
  CHECK(REQUIRE_VALUE(ParseDuration("1h30m")) == 90 * kMin);
  CHECK(REQUIRE_VALUE(ParseDuration("15", true)) == 15000);
  CHECK(REQUIRE_VALUE(ParseDuration("0.5", true)) == 500);
  CHECK_ERRC(ParseDuration("30m1h"), Errc::kInvalidArgument);
  CHECK_ERRC(ParseDuration("5"), Errc::kInvalidArgument);
  CHECK(FormatDuration(90 * kMin) == "1h30m");
}

TEST_CASE("promql API answers as Prometheus's JSON and refuses ranges no int64 holds") {
  Fixture f;
  HttpApi api(*f.db);
  auto get = [&](std::string path, std::string query) {
    HttpRequest r;
    r.method = "GET";
    r.path = std::move(path);
    r.query = std::move(query);
    return api.Handle(r);
  };
  // A sample's time: milliseconds in three digits, as Prometheus writes it.
  auto v = get("/api/v1/query", "query=g&time=1.5");
  CHECK(v.status == 200);
  CHECK(v.body.find("[1.500,\"1\"]") != std::string::npos);
  // A scalar's: Go's encoding/json.
  CHECK(get("/api/v1/query", "query=1e21&time=1.5").body.find("[1.5,\"1000000000000000000000\"]") != std::string::npos);
  // A string result stays valid JSON whatever its bytes (U+FFFD for a bad one).
  auto str = get("/api/v1/query", "query=%22a%5Cxffb%22&time=2");
  CHECK(str.status == 200);
  CHECK(str.body == "{\"status\":\"success\",\"data\":{\"resultType\":\"string\",\"result\":[2,\"a\\ufffdb\"]}}");
  // Times and steps at the API's limits: refused, never a wrapped loop.
  for (const char* q : {"query=1&start=-9.2e15&end=9.2e15&step=1", "query=1&start=9e15&end=9.2e15&step=9.2e15",
                        "query=vector(1)&start=9e15&end=9.2e15&step=1000y", "query=1&start=0&end=1&step=-1"}) {
    INFO(q);
    CHECK(get("/api/v1/query_range", q).status == 400);
  }
  CHECK_ERRC(f.engine.Range("1", INT64_MIN, INT64_MAX, INT64_MAX), Errc::kInvalidArgument);
  CHECK_ERRC(f.engine.Range("1", 0, 10, INT64_MAX), Errc::kInvalidArgument);
  CHECK_ERRC(f.engine.Instant("g offset 1000y", 0), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::monitor
