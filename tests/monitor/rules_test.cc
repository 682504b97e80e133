// Alarm rules on ManualClock (no sleeping): pending, firing after `for`,
// resolved, forgotten; the sink's stream; templates; bad rules.

#include "qcloud/monitor/config.h"
#include "qcloud/monitor/rules.h"

#include <doctest/doctest.h>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::monitor {
namespace {

using namespace std::chrono_literals;
using testing::TempDir;

struct Setup {
  TempDir dir{"qcloud-rules"};
  ManualClock clock{WallTime(std::chrono::seconds(1700000000))};
  std::unique_ptr<Tsdb> db = REQUIRE_VALUE(Tsdb::Open({.data_dir = dir.path}));
  QueryEngine engine{*db};
  std::vector<std::vector<Alert>> sent;
  RuleEngine rules{engine, {.clock = &clock, .sink = [this](const std::vector<Alert>& a) { sent.push_back(a); }}};

  int64_t Now() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(clock.WallNow().time_since_epoch()).count();
  }
  // up{instance=...} = v at the clock's time.
  void Up(const std::string& instance, double v) {
    std::vector<SeriesSamples> b = {{REQUIRE_VALUE(Labels::FromPairs({{"__name__", "up"}, {"instance", instance}, {"job", "node"}})),
                                     {{Now(), v}}}};
    REQUIRE_OK(db->Append(b));
  }
};

TEST_CASE("alarm rules go pending then firing after for then resolved and are forgotten") {
  Setup s;
  REQUIRE_OK(s.rules.AddRule({.name = "HostDown",
                              .expr = "up == 0",
                              .hold = 1min,
                              .labels = {{"severity", "page"}},
                              .annotations = {{"summary", "{{ $labels.instance }} down, up={{ $value }}"}}}));
  s.Up("a", 0);
  s.Up("b", 1);
  s.rules.Evaluate();
  auto all = s.rules.alerts();
  REQUIRE(all.size() == 1);
  CHECK(all[0].state == AlertState::kPending);
  CHECK(all[0].labels.ToString() == "{alertname=\"HostDown\", instance=\"a\", job=\"node\", severity=\"page\"}");
  CHECK(all[0].annotations[0].value == "a down, up=0");
  CHECK(s.sent.back().empty());  // pending alerts are not sent
  s.clock.Advance(30s);
  s.Up("a", 0);
  s.rules.Evaluate();
  CHECK(s.rules.alerts()[0].state == AlertState::kPending);
  s.clock.Advance(30s);  // exactly `for` after it became active: fires
  s.Up("a", 0);
  s.rules.Evaluate();
  REQUIRE(s.sent.back().size() == 1);
  CHECK(s.sent.back()[0].state == AlertState::kFiring);
  CHECK(s.sent.back()[0].fired_at == s.clock.WallNow());
  s.clock.Advance(15s);
  s.Up("a", 1);
  s.rules.Evaluate();
  REQUIRE(s.sent.back().size() == 1);
  CHECK(s.sent.back()[0].state == AlertState::kResolved);
  CHECK(s.sent.back()[0].resolved_at == s.clock.WallNow());
  // Resolved alerts are sent for 15 minutes, then forgotten.
  for (int i = 0; i < 60; ++i) {
    s.clock.Advance(15s);
    s.Up("a", 1);
    s.rules.Evaluate();
  }
  CHECK(s.rules.alerts().empty());
  CHECK(s.sent.back().empty());
}

TEST_CASE("alarm rules fire at once without for forget a pending alert that goes and start anew after resolving") {
  Setup s;
  REQUIRE_OK(s.rules.AddRule({.name = "Now", .expr = "up == 0"}));
  REQUIRE_OK(s.rules.AddRule({.name = "Slow", .expr = "up == 0", .hold = 5min}));
  s.Up("a", 0);
  s.rules.Evaluate();
  REQUIRE(s.sent.back().size() == 1);
  CHECK(s.sent.back()[0].rule == "Now");
  CHECK(s.sent.back()[0].state == AlertState::kFiring);
  s.clock.Advance(1min);
  s.Up("a", 1);
  s.rules.Evaluate();
  for (const Alert& a : s.rules.alerts()) CHECK(a.rule == "Now");  // Slow's pending alert is gone, never sent
  s.clock.Advance(1min);
  s.Up("a", 0);
  s.rules.Evaluate();
  auto all = s.rules.alerts();
  REQUIRE(all.size() == 2);
  for (const Alert& a : all) {
    if (a.rule == "Now") {
      CHECK(a.state == AlertState::kFiring);  // a new alert where the resolved one was
      CHECK(a.active_at == s.clock.WallNow());
    } else {
      CHECK(a.state == AlertState::kPending);
    }
  }
}

TEST_CASE("alarm rules refuse bad names queries and labels and report a failing query") {
  Setup s;
  CHECK_ERRC(s.rules.AddRule({.name = "bad name", .expr = "up"}), Errc::kInvalidArgument);
  CHECK_ERRC(s.rules.AddRule({.name = "X", .expr = "up[5m]"}), Errc::kInvalidArgument);
  CHECK_ERRC(s.rules.AddRule({.name = "X", .expr = "sum("}), Errc::kInvalidArgument);
  CHECK_ERRC(s.rules.AddRule({.name = "X", .expr = "up", .labels = {{"bad-label", "v"}}}), Errc::kInvalidArgument);
  REQUIRE_OK(s.rules.AddRule({.name = "Dup", .expr = "up / on(job) up"}));
  s.Up("a", 1);
  s.Up("b", 1);
  auto r = s.rules.Evaluate();
  REQUIRE(r.size() == 1);
  CHECK_FALSE(r[0].status.ok());  // many-to-many: an execution error, reported
}

TEST_CASE("monitor config reads Prometheus rule groups and Alertmanager's route and refuses typos") {
  auto c = REQUIRE_VALUE(ParseConfig(R"(
evaluation_interval: 10s
groups:
  - name: node
    interval: 15s
    rules:
      - alert: HostDown
        expr: up == 0
        for: 3m
        labels: {severity: page}
        annotations: {summary: "{{ $labels.instance }} down"}
route:
  receiver: sms
  group_by: [alertname, cluster]
  group_wait: 10s
  group_interval: 1m
  repeat_interval: 2h
receivers:
  - name: other
  - name: sms
    max_per_minute: 5
    webhook_configs:
      - url: http://127.0.0.1:5001/hook
        send_resolved: false
inhibit_rules:
  - source_matchers: ['alertname="HostDown"']
    target_matchers: ['alertname=~"Service.*"', 'severity!="page"', 'team = ops', 'note="say \"hi\""']
    equal: [instance]
)"));
  CHECK(c.evaluation_interval == 10s);
  REQUIRE(c.groups.size() == 1);
  CHECK(c.groups[0].interval == 15s);
  REQUIRE(c.groups[0].rules.size() == 1);
  CHECK(c.groups[0].rules[0].hold == 3min);
  CHECK(c.groups[0].rules[0].labels[0].value == "page");
  CHECK(c.route.group_by == std::vector<std::string>{"alertname", "cluster"});
  CHECK(c.route.group_wait == 10s);
  CHECK(c.route.repeat_interval == 2h);
  CHECK(c.route.max_per_minute == 5);
  CHECK_FALSE(c.route.send_resolved);
  REQUIRE(c.webhooks.size() == 1);
  CHECK(c.webhooks[0].receiver == "sms");
  REQUIRE(c.route.inhibit.size() == 1);
  REQUIRE(c.route.inhibit[0].target.size() == 4);
  CHECK(c.route.inhibit[0].target[1].type() == MatchType::kNotEqual);
  CHECK(c.route.inhibit[0].target[1].Matches(""));  // matches "" standing alone, as Alertmanager's do
  CHECK(c.route.inhibit[0].target[2].value() == "ops");  // a bare value
  CHECK(c.route.inhibit[0].target[3].value() == "say \"hi\"");
  CHECK(c.route.inhibit[0].equal == std::vector<std::string>{"instance"});
  for (const char* bad : {"grups: []", "groups: [{name: g, rules: [{alert: A, expr: up, fore: 1m}]}]",
                          "groups: [{name: g, rules: [{record: r, expr: up}]}]", "route: {receiver: nobody}",
                          "groups: [{name: g, rules: [{alert: A, expr: up, for: soon}]}]",
                          "receivers: [{name: r, webhook_configs: [{url: ftp://x}]}]\nroute: {receiver: r}",
                          "inhibit_rules: [{source_matchers: ['a=~\"(\"']}]",
                          "inhibit_rules: [{source_matchers: ['a~b']}]", "inhibit_rules: [{source_matchers: ['1a=b']}]",
                          "inhibit_rules: [{source_matchers: ['a=\"b']}]", "groups: [{name: g, rules: [{alert: A, expr: \"sum(\"}]}]x: ["}) {
    INFO(bad);
    CHECK_ERRC(ParseConfig(bad), Errc::kInvalidArgument);
  }
  CHECK(REQUIRE_VALUE(ParseConfig("")).groups.empty());
}

}  // namespace
}  // namespace qcloud::monitor
