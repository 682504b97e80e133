#pragma once

// Alarm rules, evaluated as Prometheus's rule manager evaluates alerting
// rules (2.42): a PromQL query whose result elements are the alerts, a
// `for` duration, labels and annotations.
//
//   RuleEngine engine(query_engine, {.clock = &clock});
//   engine.AddRule({.name = "HostDown", .expr = "up == 0", .hold = 3min,
//                   .labels = {{"severity", "page"}},
//                   .annotations = {{"summary", "{{ $labels.instance }} is down"}}});
//   engine.Evaluate();   // every 5 s (Run()/the caller's timer), on the Clock's time
//
// States, per rule and label set: a new element is pending (active_at =
// now); once it has been there for `hold` it fires (fired_at); when it
// leaves the result a pending alert is forgotten and a firing one is
// resolved (resolved_at), reported as resolved for 15 minutes, then
// forgotten. hold = 0 fires at once. An alert's labels are the element's
// (less __name__), then the rule's, then alertname = the rule's name.
// Annotations and label values may use {{ $labels.NAME }} and {{ $value }}.
//
// After each evaluation the sink (if any) gets the firing and the resolved
// alerts — the stream Prometheus sends to Alertmanager, and what a
// scheduler wired in examples/ acts on (scale out, repair): this library
// does not know who listens.
//
// Thread safety: AddRule/Evaluate/alerts from any thread (one lock).

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/monitor/labels.h"
#include "qcloud/monitor/promql.h"

namespace qcloud::monitor {

struct AlertRule {
  std::string name;  // alertname: [a-zA-Z_][a-zA-Z0-9_]*
  std::string expr;  // PromQL, an instant vector
  std::chrono::milliseconds hold{0};  // Prometheus's `for`
  std::vector<Label> labels;
  std::vector<Label> annotations;
};

enum class AlertState { kPending, kFiring, kResolved };

struct Alert {
  std::string rule;
  Labels labels;
  std::vector<Label> annotations;
  AlertState state = AlertState::kPending;
  double value = 0;
  WallTime active_at{};    // first seen
  WallTime fired_at{};     // when it started firing (Alertmanager's startsAt)
  WallTime resolved_at{};  // when it resolved (endsAt); epoch while not resolved
  // A firing alert pushed through Alertmanager's API (ParsePostableAlerts)
  // resolves by itself at this time unless pushed again; epoch = never.
  WallTime ends_at{};
};

const char* AlertStateName(AlertState s) noexcept;

struct RuleEngineOptions {
  Clock* clock = nullptr;  // not owned; null = RealClock()
  std::chrono::milliseconds resolved_retention = std::chrono::minutes(15);
  // Called after each Evaluate() with the firing and resolved alerts.
  std::function<void(const std::vector<Alert>&)> sink;
};

struct RuleEvaluation {
  std::string rule;
  Status status;  // the query's error, if any (the rule's alerts stay as they were)
};

class QCLOUD_EXPORT RuleEngine {
 public:
  RuleEngine(QueryEngine& engine, RuleEngineOptions options);
  // kInvalidArgument: a bad name, a query that does not parse or is not an
  // instant vector, bad labels. Names need not be unique (as in Prometheus).
  Status AddRule(AlertRule rule);
  // Evaluates every rule at the clock's time; returns each rule's outcome.
  std::vector<RuleEvaluation> Evaluate();
  // Every alert known now: pending, firing, and resolved ones still kept.
  std::vector<Alert> alerts() const;

 private:
  struct RuleState {
    AlertRule rule;
    Expr expr;
    std::vector<Alert> active;  // by labels
  };
  QueryEngine& engine_;
  RuleEngineOptions options_;
  mutable std::mutex mu_;
  std::vector<RuleState> rules_;
};

}  // namespace qcloud::monitor
