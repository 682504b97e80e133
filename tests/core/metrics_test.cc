#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "qcloud/core/metrics.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud {
namespace {

TEST_CASE("metrics: counter and gauge text") {
  MetricsRegistry reg;
  auto* c = REQUIRE_VALUE(reg.AddCounter("qcloud_requests_total", "Requests served.", {"cmd"}));
  c->WithLabels({"get"}).Increment(3);
  c->WithLabels({"set"}).Increment();
  auto* g = REQUIRE_VALUE(reg.AddGauge("qcloud_connections", "Open connections."));
  g->Get().Set(2.5);
  CHECK(reg.RenderText() ==
        "# HELP qcloud_requests_total Requests served.\n"
        "# TYPE qcloud_requests_total counter\n"
        "qcloud_requests_total{cmd=\"get\"} 3\n"
        "qcloud_requests_total{cmd=\"set\"} 1\n"
        "# HELP qcloud_connections Open connections.\n"
        "# TYPE qcloud_connections gauge\n"
        "qcloud_connections 2.5\n");
}

TEST_CASE("metrics: label values and help are escaped") {
  MetricsRegistry reg;
  auto* c = REQUIRE_VALUE(reg.AddCounter("weird_total", "Help with \\ and\nnewline.", {"v"}));
  c->WithLabels({"a\"b\\c\nd"}).Increment();
  std::string text = reg.RenderText();
  CHECK(text.find("# HELP weird_total Help with \\\\ and\\nnewline.\n") != std::string::npos);
  CHECK(text.find("weird_total{v=\"a\\\"b\\\\c\\nd\"} 1\n") != std::string::npos);
}

TEST_CASE("metrics: histogram buckets are cumulative") {
  MetricsRegistry reg;
  auto* h = REQUIRE_VALUE(reg.AddHistogram("latency_seconds", "Latency.", {0.1, 1}, {"op"}));
  auto& child = h->WithLabels({"get"});
  for (double v : {0.05, 0.1, 0.5, 2.0}) child.Observe(v);
  std::string text = reg.RenderText();
  CHECK(text.find("latency_seconds_bucket{op=\"get\",le=\"0.1\"} 2\n") != std::string::npos);
  CHECK(text.find("latency_seconds_bucket{op=\"get\",le=\"1\"} 3\n") != std::string::npos);
  CHECK(text.find("latency_seconds_bucket{op=\"get\",le=\"+Inf\"} 4\n") != std::string::npos);
  CHECK(text.find("latency_seconds_sum{op=\"get\"} 2.65\n") != std::string::npos);
  CHECK(text.find("latency_seconds_count{op=\"get\"} 4\n") != std::string::npos);
}

TEST_CASE("metrics: names are validated and unique") {
  MetricsRegistry reg;
  CHECK_ERRC(reg.AddCounter("1bad", "x"), Errc::kInvalidArgument);
  CHECK_ERRC(reg.AddCounter("bad-name", "x"), Errc::kInvalidArgument);
  CHECK_ERRC(reg.AddCounter("ok_total", "x", {"__reserved"}), Errc::kInvalidArgument);
  CHECK_ERRC(reg.AddCounter("ok_total", "x", {"a:b"}), Errc::kInvalidArgument);
  CHECK_ERRC(reg.AddHistogram("h", "x", {1}, {"le"}), Errc::kInvalidArgument);
  CHECK_ERRC(reg.AddHistogram("h", "x", {2, 1}), Errc::kInvalidArgument);
  CHECK_ERRC(reg.AddHistogram("h", "x", {std::numeric_limits<double>::infinity()}),
             Errc::kInvalidArgument);
  CHECK_OK(reg.AddCounter("ns:ok_total", "x"));
  CHECK_ERRC(reg.AddGauge("ns:ok_total", "x"), Errc::kAlreadyExists);
}

TEST_CASE("metrics: values format like Prometheus") {
  CHECK(FormatMetricValue(0) == "0");
  CHECK(FormatMetricValue(-3) == "-3");
  CHECK(FormatMetricValue(0.25) == "0.25");
  CHECK(FormatMetricValue(1e300) == "1e+300");
  CHECK(FormatMetricValue(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(FormatMetricValue(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(FormatMetricValue(std::nan("")) == "NaN");
}

TEST_CASE("metrics: callbacks are read at render time") {
  MetricsRegistry reg;
  double items = 1;
  CHECK_OK(reg.AddCallback("items", "Items stored.", MetricType::kGauge, [&] { return items; }));
  CHECK(reg.RenderText().find("\nitems 1\n") != std::string::npos);
  items = 42;
  CHECK(reg.RenderText().find("\nitems 42\n") != std::string::npos);
  CHECK_ERRC(reg.AddCallback("h", "x", MetricType::kHistogram, [] { return 0.0; }),
             Errc::kInvalidArgument);
}

TEST_CASE("metrics: collectors produce labelled samples at render time") {
  MetricsRegistry reg;
  int calls = 0;
  CHECK_OK(reg.AddCollector("cpu_seconds_total", "CPU time.", MetricType::kCounter, {"mode"}, [&] {
    ++calls;
    return std::vector<MetricsRegistry::Sample>{{{"user"}, 1.5}, {{"system"}, 2}};
  }));
  std::string text = reg.RenderText();
  CHECK(calls == 1);
  CHECK(text ==
        "# HELP cpu_seconds_total CPU time.\n"
        "# TYPE cpu_seconds_total counter\n"
        "cpu_seconds_total{mode=\"user\"} 1.5\n"
        "cpu_seconds_total{mode=\"system\"} 2\n");
  CHECK_ERRC(reg.AddCollector("x", "x", MetricType::kGauge, {"bad-label"}, [] {
    return std::vector<MetricsRegistry::Sample>{};
  }), Errc::kInvalidArgument);
}

TEST_CASE("metrics: concurrent updates are not lost") {
  MetricsRegistry reg;
  auto* c = REQUIRE_VALUE(reg.AddCounter("hits_total", "Hits.", {"shard"}));
  auto* g = REQUIRE_VALUE(reg.AddGauge("level", "Level."));
  auto* h = REQUIRE_VALUE(reg.AddHistogram("sizes_bytes", "Sizes.", {10, 100}));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      auto& mine = c->WithLabels({std::to_string(t % 2)});
      for (int i = 0; i < 10000; ++i) {
        mine.Increment();
        g->Get().Add(1);
        h->Get().Observe(50);
        if (i % 1000 == 0) (void)reg.RenderText();
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(c->WithLabels({"0"}).Value() + c->WithLabels({"1"}).Value() == 40000);
  CHECK(g->Get().Value() == 40000);
  CHECK(h->Get().Count() == 40000);
  CHECK(h->Get().BucketCounts() == std::vector<uint64_t>{0, 40000, 0});
}

}  // namespace
}  // namespace qcloud
