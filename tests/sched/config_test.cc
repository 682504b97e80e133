#include "qcloud/sched/config.h"

#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include "qcloud/sched/prometheus.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::sched {
namespace {

constexpr char kExample[] = R"(
prometheus: http://127.0.0.1:9090
interval: 5s
listen: 127.0.0.1:9105
state_file: /var/lib/qcloud-autoscaler/state.json
hook:
  command: /usr/local/bin/scale
  timeout: 10s
metrics:
  - name: cpu
    query: avg by (group, instance) (rate(node_cpu_seconds_total{mode!="idle"}[1m]))
groups:
  - {name: web, min_size: 2, max_size: 20, initial_size: 4, warmup: 2m,
     target_tracking: {metric: cpu, target: 0.6},
     predictive: {season: 24h, bucket: 5m, lead: 10m}}
alarms:
  - {name: cpu-high, group: web, metric: cpu, aggregation: avg, window: 1m,
     comparison: ">", threshold: 0.8, duration: 3m, hysteresis: 0.05}
actions:
  - {name: add-two, alarm: cpu-high, kind: scale_out, adjustment: 2, cooldown: 5m}
  - {name: grow, alarm: cpu-high, kind: scale_out, adjustment: "25%"}
)";

TEST_CASE("sched config: the README example parses and opens an engine") {
  AutoscalerConfig c = REQUIRE_VALUE(ParseAutoscalerConfig(kExample));
  CHECK(c.interval == std::chrono::seconds(5));
  CHECK(c.hook.command == "/usr/local/bin/scale");
  REQUIRE(c.metrics.size() == 1);
  CHECK(c.metrics[0].group_label == "group");
  REQUIRE(c.groups.size() == 1);
  CHECK(c.groups[0].warmup == std::chrono::minutes(2));
  REQUIRE(c.groups[0].predictive.has_value());
  CHECK(c.groups[0].predictive->lead == std::chrono::minutes(10));
  CHECK(c.alarms[0].comparison == Comparison::kGreater);
  CHECK(c.alarms[0].hysteresis == doctest::Approx(0.05));
  CHECK(c.actions[1].adjustment_type == Adjustment::kPercent);
  CHECK(c.actions[1].adjustment == 25);
  ManualClock clock;
  CHECK_OK(Engine::Open({.clock = &clock, .metrics = {"cpu"}}, c.groups, c.alarms, c.actions).status());
}

TEST_CASE("sched config: mistakes are refused naming the place") {
  auto err = [](const std::string& yaml) {
    auto r = ParseAutoscalerConfig(yaml);
    return r.ok() ? std::string("ok") : r.status().message();
  };
  CHECK(err("interval: 5s") .find("prometheus") != std::string::npos);
  CHECK(err("prometheus: https://x") .find("only http://") != std::string::npos);
  CHECK(err("prometheus: http://x\nbogus: 1").find("unknown key \"bogus\"") != std::string::npos);
  CHECK(err("prometheus: http://x\nactions: [{name: a, alarm: b, kind: explode}]").find("actions[0].kind") != std::string::npos);
  CHECK(err("prometheus: http://x\nalarms: [{name: a, group: g, metric: m, threshold: lots}]").find("not a number") !=
        std::string::npos);
  CHECK(err("prometheus: http://x\ninterval: soon").find("interval") != std::string::npos);
  CHECK(err("prometheus: [").find("config:") == 0);
  CHECK(err("prometheus: http://x\nhook: {command: a, webhook: http://b}").find("not both") != std::string::npos);
}

TEST_CASE("sched Prometheus answers become samples") {
  const MetricQuery q{.name = "cpu", .query = "x", .instance_label = "pod"};
  const char* body = R"({"status":"success","data":{"resultType":"vector","result":[
      {"metric":{"group":"web","pod":"a"},"value":[1.5,"0.25"]},
      {"metric":{"group":"web","pod":"b"},"value":[1.5,"NaN"]},
      {"metric":{"pod":"c"},"value":[1.5,"1"]}]}})";
  QuerySamples s = REQUIRE_VALUE(ParsePrometheusVector(body, q));
  REQUIRE(s.samples.size() == 2);
  CHECK(s.samples[0].instance == "a");
  CHECK(s.samples[0].value == 0.25);
  CHECK(std::isnan(s.samples[1].value));
  CHECK(s.skipped == 1);
  CHECK_ERRC(ParsePrometheusVector(R"({"status":"error","error":"bad query"})", q), Errc::kInvalidArgument);
  CHECK_ERRC(ParsePrometheusVector(R"({"status":"success","data":{"resultType":"matrix","result":[]}})", q),
             Errc::kInvalidArgument);
  CHECK_ERRC(ParsePrometheusVector("nope", q), Errc::kInvalidArgument);
  CHECK(QueryTarget("", "up{job=\"a b\"}") == "/api/v1/query?query=up%7Bjob%3D%22a%20b%22%7D");
}

}  // namespace
}  // namespace qcloud::sched
