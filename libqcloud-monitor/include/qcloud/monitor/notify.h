#pragma once

// Alarm convergence: the alerts a RuleEngine reports are gathered into
// groups and notified the way Alertmanager's dispatcher does it, so that
// one outage makes one notification per group instead of an SMS per
// alert:
//
//   Dispatcher d({.group_by = {"alertname", "cluster"}, .group_wait = 30s}, clock,
//                [&](const Notification& n) { return webhook.Send(n); });
//   rule_engine_options.sink = [&](const std::vector<Alert>& a) { d.Receive(a); };
//   ... d.Tick() every second (on the Clock's time).
//
// Semantics (Alertmanager 0.25's aggregation groups and dedup stage):
//   - an alert's group is the values of its group_by labels;
//   - a new group is notified group_wait after its first alert (at once if
//     that alert started more than group_wait ago); after a notification
//     the group is looked at again every group_interval;
//   - a look notifies only when something changed since the last
//     notification — an alert firing that was not in it, or a resolved one
//     (with send_resolved) not yet notified as resolved — or when
//     repeat_interval has passed; a group whose alerts all came and went
//     unnotified stays silent;
//   - a notification carries every alert of the group, firing and (with
//     send_resolved) resolved; resolved alerts leave the group after it.
//   - muted alerts are left out of notifications (Alertmanager's mute
//     stage): silenced ones (every matcher of an active silence matches),
//     and inhibited ones (a firing alert matching an inhibit rule's source
//     matchers, with the same values of its `equal` labels, mutes alerts
//     matching its target matchers — a host-down silences that host's
//     service alarms); a group whose alerts are all muted stays silent;
//   - a firing alert with an ends_at (pushed through Alertmanager's API)
//     resolves at that time unless pushed again; pushed again while firing
//     it keeps its earliest start;
//   - a receiver gets at most max_per_minute notifications a minute; one
//     held back by the limit is sent at a later look.
//
// Thread safety: every method, from any thread (one lock; `send` is called
// under it).

#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/status.h"
#include "qcloud/monitor/matcher.h"
#include "qcloud/monitor/rules.h"

namespace qcloud::monitor {

struct InhibitRule {
  std::vector<Matcher> source;  // the muting alert (must be firing)
  std::vector<Matcher> target;  // the muted alerts
  std::vector<std::string> equal;  // labels whose values source and target share
};

struct Silence {
  std::vector<Matcher> matchers;
  WallTime starts{}, ends{};  // active in [starts, ends)
};

struct RouteOptions {
  std::vector<std::string> group_by = {"alertname"};
  std::chrono::milliseconds group_wait = std::chrono::seconds(30);
  std::chrono::milliseconds group_interval = std::chrono::minutes(5);
  std::chrono::milliseconds repeat_interval = std::chrono::hours(4);
  bool send_resolved = true;
  std::vector<InhibitRule> inhibit;
  unsigned max_per_minute = 0;  // notifications to the receiver a minute; 0 = no limit
};

struct Notification {
  std::string group_key;  // Alertmanager's form: {}:{alertname="HostDown"}
  Labels group_labels;
  bool firing = false;       // any alert of it firing ("status": "firing" else "resolved")
  std::vector<Alert> alerts; // ordered by labels
};

struct DispatcherStats {
  uint64_t groups = 0;         // now
  uint64_t alerts = 0;         // in groups now
  uint64_t received = 0;       // alerts passed to Receive
  uint64_t notifications = 0;  // sent successfully
  uint64_t send_failures = 0;  // retried at the next group_interval
  uint64_t muted = 0;          // alert-notifications left out (silenced or inhibited)
  uint64_t rate_limited = 0;   // notifications held back by max_per_minute
};

class QCLOUD_EXPORT Dispatcher {
 public:
  using Sender = std::function<Status(const Notification&)>;
  Dispatcher(RouteOptions route, Clock& clock, Sender send);
  // The rule engine's stream: firing and resolved alerts (pending ones are
  // ignored). An alert is known by its labels; the latest report wins.
  void Receive(const std::vector<Alert>& alerts);
  // Notifies the groups that are due at the clock's time.
  void Tick();
  // Mutes the alerts its matchers match while it is active. Returns its id.
  uint64_t AddSilence(Silence s);
  void ExpireSilence(uint64_t id);
  DispatcherStats stats() const;

 private:
  struct Group {
    Labels labels;
    std::map<Labels, Alert> alerts;
    MonoTime next{};
    bool flushed = false;
    // The last notification: which alerts it had firing and resolved, and when.
    bool notified = false;
    std::set<Labels> firing_sent, resolved_sent;
    MonoTime sent_at{};
  };
  void Flush(Group& g, MonoTime now);
  void ResolveTimedOut(WallTime wall);
  bool Muted(const Alert& a, WallTime wall) const;

  RouteOptions route_;
  Clock& clock_;
  Sender send_;
  mutable std::mutex mu_;
  std::map<Labels, Group> groups_;
  std::map<uint64_t, Silence> silences_;
  uint64_t next_silence_ = 1;
  std::vector<MonoTime> recent_sends_;  // within the last minute (max_per_minute)
  DispatcherStats stats_;
};

}  // namespace qcloud::monitor
