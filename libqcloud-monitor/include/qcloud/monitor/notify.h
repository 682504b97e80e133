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
// Not yet: inhibition, silences, per-receiver rate limits (issue 20).
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
#include "qcloud/monitor/rules.h"

namespace qcloud::monitor {

struct RouteOptions {
  std::vector<std::string> group_by = {"alertname"};
  std::chrono::milliseconds group_wait = std::chrono::seconds(30);
  std::chrono::milliseconds group_interval = std::chrono::minutes(5);
  std::chrono::milliseconds repeat_interval = std::chrono::hours(4);
  bool send_resolved = true;
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

  RouteOptions route_;
  Clock& clock_;
  Sender send_;
  mutable std::mutex mu_;
  std::map<Labels, Group> groups_;
  DispatcherStats stats_;
};

}  // namespace qcloud::monitor
