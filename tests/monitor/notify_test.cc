// Convergence on ManualClock, against Alertmanager's dispatcher rules:
// group_wait, group_interval, repeat_interval, dedup, resolved alerts.

#include "qcloud/monitor/notify.h"

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

}  // namespace
}  // namespace qcloud::monitor
