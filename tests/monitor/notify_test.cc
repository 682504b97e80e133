// Convergence on ManualClock, against Alertmanager's dispatcher rules:
// group_wait, group_interval, repeat_interval, dedup, resolved alerts.

#include "qcloud/monitor/notify.h"
#include "qcloud/monitor/webhook.h"

#include <doctest/doctest.h>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::monitor {
namespace {

using namespace std::chrono_literals;

Alert A(const std::string& name, const std::string& instance, AlertState state, WallTime fired) {
  Alert a;
  a.rule = name;
  a.labels = REQUIRE_VALUE(Labels::FromPairs({{"alertname", name}, {"instance", instance}}));
  a.state = state;
  a.fired_at = fired;
  return a;
}

struct Setup {
  ManualClock clock;
  std::vector<Notification> sent;
  bool fail = false;
  Dispatcher d{{.group_by = {"alertname"}, .group_wait = 30s, .group_interval = 5min, .repeat_interval = 4h},
               clock, [this](const Notification& n) {
                 if (fail) return Status(Errc::kUnavailable, "receiver down");
                 sent.push_back(n);
                 return Status::Ok();
               }};
  void Run(std::chrono::seconds total) {  // ticks every second
    for (int i = 0; i < total.count(); ++i) {
      clock.Advance(1s);
      d.Tick();
    }
  }
};

TEST_CASE("convergence a thousand alerts of one outage make one notification after group_wait") {
  Setup s;
  std::vector<Alert> storm;
  for (int i = 0; i < 1000; ++i) storm.push_back(A("HostDown", "h" + std::to_string(i), AlertState::kFiring, s.clock.WallNow()));
  storm.push_back(A("DiskFull", "h1", AlertState::kFiring, s.clock.WallNow()));
  s.d.Receive(storm);
  s.Run(29s);
  CHECK(s.sent.empty());
  s.Run(1s);
  REQUIRE(s.sent.size() == 2);  // one per group
  for (const Notification& n : s.sent) {
    if (n.group_key == "{}:{alertname=\"HostDown\"}") {
      CHECK(n.alerts.size() == 1000);
      CHECK(n.firing);
    } else {
      CHECK(n.group_key == "{}:{alertname=\"DiskFull\"}");
      CHECK(n.alerts.size() == 1);
    }
  }
  // The same alerts reported again and again (every evaluation): nothing new.
  for (int i = 0; i < 20; ++i) {
    s.d.Receive(storm);
    s.Run(15s);
  }
  CHECK(s.sent.size() == 2);
}

TEST_CASE("convergence a new alert waits for group_interval unchanged groups wait for repeat_interval") {
  Setup s;
  const WallTime t0 = s.clock.WallNow();
  s.d.Receive({A("X", "a", AlertState::kFiring, t0)});
  s.Run(30s);
  REQUIRE(s.sent.size() == 1);
  s.d.Receive({A("X", "a", AlertState::kFiring, t0), A("X", "b", AlertState::kFiring, s.clock.WallNow())});
  s.Run(299s);
  CHECK(s.sent.size() == 1);  // not at once: the group's next look
  s.Run(1s);
  REQUIRE(s.sent.size() == 2);
  CHECK(s.sent[1].alerts.size() == 2);
  // Unchanged: silent until 4 h after the last notification.
  s.Run(std::chrono::seconds(4 * 3600 - 300));
  CHECK(s.sent.size() == 2);
  s.Run(300s);
  CHECK(s.sent.size() == 3);
}

TEST_CASE("convergence resolved alerts are notified then leave and unnotified flaps stay silent") {
  Setup s;
  const WallTime t0 = s.clock.WallNow();
  s.d.Receive({A("X", "a", AlertState::kFiring, t0), A("X", "b", AlertState::kFiring, t0)});
  s.Run(30s);
  REQUIRE(s.sent.size() == 1);
  s.d.Receive({A("X", "a", AlertState::kResolved, t0)});
  s.Run(300s);
  REQUIRE(s.sent.size() == 2);
  CHECK(s.sent[1].firing);  // b still fires
  REQUIRE(s.sent[1].alerts.size() == 2);
  s.d.Receive({A("X", "b", AlertState::kResolved, t0)});
  s.Run(300s);
  REQUIRE(s.sent.size() == 3);
  CHECK_FALSE(s.sent[2].firing);
  CHECK(s.sent[2].alerts.size() == 1);  // a left after its resolved notification
  CHECK(s.d.stats().groups == 0);
  // An alert that fires and resolves before its group's first look: nothing.
  s.d.Receive({A("Y", "a", AlertState::kFiring, s.clock.WallNow())});
  s.Run(10s);
  s.d.Receive({A("Y", "a", AlertState::kResolved, s.clock.WallNow())});
  s.Run(60s);
  CHECK(s.sent.size() == 3);
}

TEST_CASE("convergence an old alert is notified at once and a failed send is retried") {
  Setup s;
  s.clock.Advance(10min);
  s.d.Receive({A("X", "a", AlertState::kFiring, s.clock.WallNow() - 5min)});  // fired long before we heard
  s.fail = true;
  s.d.Tick();
  CHECK(s.sent.empty());
  CHECK(s.d.stats().send_failures == 1);
  s.fail = false;
  s.Run(300s);
  CHECK(s.sent.size() == 1);
}

TEST_CASE("convergence inhibition silences and the per-receiver rate limit mute what they should") {
  ManualClock clock;
  std::vector<Notification> sent;
  Dispatcher d({.group_by = {"alertname"},
                .group_wait = 10s,
                .group_interval = 1min,
                .inhibit = {{.source = {Matcher::Equal("alertname", "HostDown")},
                             .target = {REQUIRE_VALUE(Matcher::Make(MatchType::kRegex, "alertname", "Service.*"))},
                             .equal = {"instance"}}},
                .max_per_minute = 2},
               clock, [&](const Notification& n) {
                 sent.push_back(n);
                 return Status::Ok();
               });
  const WallTime t0 = clock.WallNow();
  // h1 is down: its service alarms are muted; h2's service alarm is not.
  d.Receive({A("HostDown", "h1", AlertState::kFiring, t0), A("ServiceSlow", "h1", AlertState::kFiring, t0),
             A("ServiceSlow", "h2", AlertState::kFiring, t0)});
  for (int i = 0; i < 10; ++i) {
    clock.Advance(1s);
    d.Tick();
  }
  REQUIRE(sent.size() == 2);
  for (const Notification& n : sent) {
    REQUIRE(n.alerts.size() == 1);
    if (n.group_key == "{}:{alertname=\"ServiceSlow\"}") CHECK(n.alerts[0].labels.Get("instance") == "h2");
  }
  CHECK(d.stats().muted == 1);
  // A silence on DiskFull; a third group within the minute waits for the limit.
  const uint64_t id = d.AddSilence({.matchers = {Matcher::Equal("alertname", "DiskFull")}, .starts = t0, .ends = t0 + 1h});
  d.Receive({A("DiskFull", "h3", AlertState::kFiring, clock.WallNow()), A("MemHigh", "h3", AlertState::kFiring, clock.WallNow())});
  for (int i = 0; i < 10; ++i) {
    clock.Advance(1s);
    d.Tick();
  }
  CHECK(sent.size() == 2);  // DiskFull silenced; MemHigh over the limit of 2 a minute
  CHECK(d.stats().rate_limited >= 1);
  for (int i = 0; i < 60; ++i) {
    clock.Advance(1s);
    d.Tick();
  }
  REQUIRE(sent.size() == 3);
  CHECK(sent[2].group_key == "{}:{alertname=\"MemHigh\"}");
  d.ExpireSilence(id);
  for (int i = 0; i < 60; ++i) {
    clock.Advance(1s);
    d.Tick();
  }
  REQUIRE(sent.size() == 4);
  CHECK(sent[3].group_key == "{}:{alertname=\"DiskFull\"}");
}

TEST_CASE("webhooks carry Alertmanager's payload and count a 2xx as sent") {
  CHECK(AlertFingerprint(Labels()) == "cbf29ce484222325");  // Prometheus's empty label set
  Notification n;
  n.group_key = "{}:{alertname=\"HostDown\"}";
  n.group_labels = REQUIRE_VALUE(Labels::FromPairs({{"alertname", "HostDown"}}));
  n.firing = true;
  Alert a = A("HostDown", "h1", AlertState::kFiring, WallTime(std::chrono::milliseconds(1700000000123)));
  a.annotations = {{"summary", "h1 \"down\""}};
  Alert b = A("HostDown", "h2", AlertState::kResolved, WallTime(std::chrono::seconds(1700000000)));
  b.resolved_at = WallTime(std::chrono::seconds(1700000060));
  n.alerts = {a, b};
  const std::string json = WebhookJson(n, "sms", "http://monitor:9090");
  CHECK(json.starts_with("{\"receiver\":\"sms\",\"status\":\"firing\",\"alerts\":[{\"status\":\"firing\""));
  CHECK(json.find("\"startsAt\":\"2023-11-14T22:13:20.123Z\",\"endsAt\":\"0001-01-01T00:00:00Z\"") != std::string::npos);
  CHECK(json.find("\"endsAt\":\"2023-11-14T22:14:20.000Z\"") != std::string::npos);
  CHECK(json.find("\"commonLabels\":{\"alertname\":\"HostDown\"}") != std::string::npos);
  CHECK(json.find("\"summary\":\"h1 \\\"down\\\"\"") != std::string::npos);
  CHECK(json.find("\"version\":\"4\",\"groupKey\":\"{}:{alertname=\\\"HostDown\\\"}\"") != std::string::npos);
  CHECK_ERRC(Webhook::Make({.url = "https://x:1/"}), Errc::kInvalidArgument);
  CHECK_ERRC(Webhook::Make({.url = "http://nohost/"}), Errc::kInvalidArgument);
}

TEST_CASE("alerts pushed in Alertmanager's format fire resolve and time out as Alertmanager's do") {
  const WallTime now(std::chrono::seconds(1700000000));
  auto posted = REQUIRE_VALUE(ParsePostableAlerts(R"([
      {"labels":{"alertname":"HostDown","instance":"h1","empty":""},"annotations":{"summary":"down"}},
      {"labels":{"alertname":"HostDown","instance":"h2"},"startsAt":"2023-11-14T22:00:00Z","endsAt":"2023-11-14T22:10:00Z"},
      {"labels":{"alertname":"Disk","instance":"h3"},"startsAt":"2023-11-14T22:00:00Z","endsAt":"2023-11-14T23:00:00+00:00"},
      {"labels":{}},
      {"labels":{"bad-name":"x"}},
      {"labels":{"alertname":"X"},"startsAt":"2023-11-14T23:00:00Z","endsAt":"2023-11-14T22:00:00Z"},
      {"labels":{"alertname":"X"},"startsAt":"yesterday"},
      {"labels":{"alertname":"GoZero"},"startsAt":"0001-01-01T00:00:00Z","endsAt":"0001-01-01T00:00:00Z"},
      {"labels":{"alertname":"Far"},"startsAt":"2500-01-01T00:00:00Z"},
      {"labels":{"alertname":"Far"},"endsAt":"1500-01-01T00:00:00Z"}
    ])", now));
  REQUIRE(posted.alerts.size() == 4);
  const Alert& a = posted.alerts[0];
  CHECK(a.state == AlertState::kFiring);
  CHECK(a.labels.size() == 2);  // the empty label dropped
  CHECK(a.fired_at == now);
  CHECK(a.ends_at == now + 5min);  // resolve_timeout
  CHECK(posted.alerts[1].state == AlertState::kResolved);
  CHECK(posted.alerts[1].resolved_at == WallTime(std::chrono::seconds(1700000000 - 13 * 60 - 20 + 600)));
  CHECK(posted.alerts[2].state == AlertState::kFiring);
  CHECK(posted.alerts[2].ends_at == WallTime(std::chrono::seconds(1700000000 - 13 * 60 - 20 + 3600)));
  CHECK(posted.alerts[3].fired_at == now);  // Go's zero time means unset
  CHECK(posted.errors.find("alert 3: at least one label pair required") != std::string::npos);
  CHECK(posted.errors.find("alert 4: invalid label name") != std::string::npos);
  CHECK(posted.errors.find("alert 5: start time must be before end time") != std::string::npos);
  CHECK(posted.errors.find("alert 6: startsAt") != std::string::npos);
  CHECK(posted.errors.find("alert 8: startsAt: out of range") != std::string::npos);
  CHECK(posted.errors.find("alert 9: endsAt: out of range") != std::string::npos);
  CHECK_ERRC(ParsePostableAlerts("{}", now), Errc::kInvalidArgument);
  CHECK_ERRC(ParsePostableAlerts("[1,", now), Errc::kInvalidArgument);
  CHECK_ERRC(ParsePostableAlerts("[{},{},{}]", now, {.max_alerts = 2}), Errc::kInvalidArgument);

  // In the dispatcher: an alert not pushed again resolves at its endsAt;
  // pushed again while firing it keeps its first start.
  Setup s;
  auto first = REQUIRE_VALUE(ParsePostableAlerts(R"([{"labels":{"alertname":"HostDown","instance":"h1"}}])",
                                                 s.clock.WallNow(), {.resolve_timeout = 60s}));
  s.d.Receive(first.alerts);
  s.Run(10s);
  auto again = REQUIRE_VALUE(ParsePostableAlerts(R"([{"labels":{"alertname":"HostDown","instance":"h1"}}])",
                                                 s.clock.WallNow(), {.resolve_timeout = 60s}));
  s.d.Receive(again.alerts);
  s.Run(25s);
  REQUIRE(s.sent.size() == 1);
  CHECK(s.sent[0].alerts[0].fired_at == first.alerts[0].fired_at);
  s.Run(5min);  // group_interval: the timeout (70 s) has passed; resolved is notified
  REQUIRE(s.sent.size() == 2);
  CHECK_FALSE(s.sent[1].firing);
  CHECK(s.sent[1].alerts[0].resolved_at == again.alerts[0].ends_at);
}

}  // namespace
}  // namespace qcloud::monitor
