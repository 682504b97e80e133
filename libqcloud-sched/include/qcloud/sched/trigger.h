#pragma once

// qcloud::sched trigger engine — CEE's automatic scheduling: metrics arrive
// every few seconds, alarm policies watch them, action policies turn an
// alarm that stays into actions (scale out, scale in, migrate, notify, a
// user-defined trigger), and target tracking keeps a metric near a target
// by the Kubernetes HPA's rule. Every decision says why.
//
//   auto engine = Engine::Open({.clock = &clock},
//       {{.name = "web", .min_size = 2, .max_size = 20, .initial_size = 2}},
//       {{.name = "cpu-high", .group = "web", .metric = "cpu", .threshold = 0.8,
//         .duration = std::chrono::minutes(3)}},
//       {{.name = "add-two", .alarm = "cpu-high", .kind = ActionKind::kScaleOut, .adjustment = 2}}).value();
//   engine->Observe({{"web", "web-1", "cpu", 0.93}});   // as samples arrive
//   for (const Decision& d : engine->Tick()) hook(d);    // every 5 s
//
// Samples. Observe() takes (group, instance, metric, value) and stamps it
// with the clock's time; a NaN or infinite value is ignored and counted. An
// instance is known from its first sample (or SetInstances(), which also
// says when each started); one that started less than the group's warm-up
// ago is left out of every aggregate, as a new VM's boot-time load would
// mislead.
//
// Alarms. An alarm policy aggregates its metric over the group's warm
// instances and the last `window` (avg, max or min of the samples), or per
// instance with per_instance. Its state: ok -> pending when the comparison
// holds -> firing once it has held for `duration` -> resolved when it no
// longer holds past the hysteresis (a "> 0.8" alarm with hysteresis 0.05
// stays firing until the value is at or under 0.75) -> ok. No data is "does
// not hold". Actions. An action policy bound to an alarm acts on each tick
// its alarm is firing, unless the group scaled less than the policy's
// cooldown ago: scale out or in by a count or a percentage (at least one),
// or set an exact size, always within [min_size, max_size]; migrate and
// notify (per instance for a per-instance alarm) and kTrigger (a
// user-defined trigger: the named action policy runs too) are decisions for
// the hook, made once per cooldown for each instance (or the group). Target tracking (per group): desired = ceil(current * metric /
// target), no change within the tolerance (0.1), a scale-in only to the
// largest recommendation of the stabilization window (5 min), a scale-out by
// at most max(4 instances, 100%) per 15 s — the HPA's defaults.
//
// Validation at Open(): names unique; 0 <= min_size <= initial_size <=
// max_size; thresholds, hysteresis, adjustments and targets finite and not
// negative (targets positive); metrics among EngineOptions::metrics when
// that list is given; every alarm's group and every action's alarm known;
// kTrigger chains without cycles. kInvalidArgument says which.
//
// State. SaveState() renders sizes, alarm states, cooldowns and the
// stabilization window as JSON (times as wall-clock milliseconds);
// RestoreState() on a new engine with the same policies takes them back, so
// a restart neither forgets a cooldown nor restarts a pending alarm's clock.
//
// Thread safety: one engine, one thread at a time (the caller's loop).

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::sched {

struct MetricSample {
  std::string group;
  std::string instance;
  std::string metric;
  double value = 0;
};

enum class Aggregation : uint8_t { kAvg, kMax, kMin };
enum class Comparison : uint8_t { kGreater, kGreaterOrEqual, kLess, kLessOrEqual };
enum class AlarmState : uint8_t { kOk, kPending, kFiring, kResolved };
enum class ActionKind : uint8_t { kScaleOut, kScaleIn, kSetSize, kMigrate, kNotify, kTrigger };
enum class Adjustment : uint8_t { kCount, kPercent };

QCLOUD_EXPORT const char* AlarmStateName(AlarmState s) noexcept;  // "ok", "pending", "firing", "resolved"
QCLOUD_EXPORT const char* ActionKindName(ActionKind k) noexcept;  // "scale_out", "scale_in", "set_size", ...

// The HPA's rule (see the header comment).
struct TargetTracking {
  std::string metric;                                                  // per-instance gauge, averaged
  double target = 0;                                                   // > 0
  double tolerance = 0.1;                                              // no change within ±10%
  std::chrono::milliseconds scale_down_stabilization = std::chrono::minutes(5);
  int scale_up_instances = 4;                                          // per scale_up_period at most
  double scale_up_percent = 100;                                       //   max(these two) more
  std::chrono::milliseconds scale_up_period = std::chrono::seconds(15);
};

// Predictive scaling (beyond the anchors): the group's load (the tracked
// metric's average times the instances reporting it) is learned per
// `bucket` of a recurring `season` (wall-clock aligned: a day, or a week),
// each new season blended in with `learning_rate`. Once a whole season is
// learned, target tracking also asks for ceil(forecast / target), the
// forecast being the largest learned load over the next `lead` (so
// instances are warm when the peak comes), and the group gets the larger
// of that and the reactive size. The forecast's error is kept (a moving
// average of |actual - forecast| / actual per bucket); above `max_error`
// the group falls back to reactive alone until the error is under half of
// it again.
struct Predictive {
  std::chrono::milliseconds season = std::chrono::hours(24);
  std::chrono::milliseconds bucket = std::chrono::minutes(5);
  std::chrono::milliseconds lead = std::chrono::minutes(10);
  double learning_rate = 0.5;  // (0, 1]
  double max_error = 0.25;     // > 0
};

struct GroupSpec {
  std::string name;
  int min_size = 1;
  int max_size = 10;
  int initial_size = 1;                                               // clamped into [min, max]
  std::chrono::milliseconds warmup = std::chrono::minutes(2);         // new instances' samples ignored this long
  std::optional<TargetTracking> target_tracking;                      // none = alarms only
  std::optional<Predictive> predictive;                               // needs target_tracking; none = reactive
};

struct AlarmPolicy {
  std::string name;
  std::string group;
  std::string metric;
  Aggregation aggregation = Aggregation::kAvg;
  std::chrono::milliseconds window = std::chrono::minutes(1);         // samples aggregated
  Comparison comparison = Comparison::kGreater;
  double threshold = 0;                                               // >= 0
  std::chrono::milliseconds duration = std::chrono::minutes(3);       // held this long -> firing
  double hysteresis = 0;                                              // >= 0; see the header comment
  bool per_instance = false;                                          // one state per instance
};

struct ActionPolicy {
  std::string name;
  std::string alarm;                                                  // acts while this one fires
  ActionKind kind = ActionKind::kScaleOut;
  Adjustment adjustment_type = Adjustment::kCount;                    // scale out / in
  double adjustment = 1;                                              // count, percent, or kSetSize's size
  std::chrono::milliseconds cooldown = std::chrono::minutes(5);       // scaling: after any scaling of the group;
                                                                      // others: per target (group or instance)
  std::string trigger;                                                // kTrigger: the action policy to run
};

struct EngineOptions {
  Clock* clock = nullptr;              // not owned; null = RealClock()
  std::vector<std::string> metrics;    // known metric names; empty = any
  size_t max_decisions = 1000;         // recent decisions kept for Decisions()
  size_t max_instances = 1'000'000;    // instances known at once, over all groups
};

struct Decision {
  int64_t at_ms = 0;        // wall clock, ms since the epoch
  std::string group;
  std::string policy;       // action policy, or "target-tracking"
  std::string alarm;        // "" for target tracking
  ActionKind kind = ActionKind::kScaleOut;
  int from = 0, to = 0;     // group size before and after (equal for migrate, notify, trigger)
  std::string instance;     // per-instance alarms: the instance
  std::string trigger;      // kTrigger: the trigger's name
  std::string explanation;  // policy, samples, arithmetic
};

// One line of JSON with every field.
QCLOUD_EXPORT std::string DecisionToJson(const Decision& d);

struct InstanceInfo {
  std::string name;
  MonoTime started{};  // for the warm-up
};

struct EngineStats {
  uint64_t samples = 0;           // taken
  uint64_t nan_samples = 0;       // ignored: NaN or infinite
  uint64_t unknown_samples = 0;   // ignored: unknown group, or over max_instances
  uint64_t decisions = 0;
  uint64_t suppressed = 0;        // actions held back by a cooldown
  uint64_t ticks = 0;
};

class EngineImpl;

class QCLOUD_EXPORT Engine {
 public:
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options, std::vector<GroupSpec> groups,
                                              std::vector<AlarmPolicy> alarms, std::vector<ActionPolicy> actions);
  ~Engine();

  void Observe(std::span<const MetricSample> samples);
  // The group's instances as they are now (others are forgotten).
  // kNotFound for an unknown group.
  Status SetInstances(std::string_view group, std::span<const InstanceInfo> instances);
  // Evaluates every policy at the clock's time; the decisions made.
  std::vector<Decision> Tick();

  // The group's size as the engine last decided it (kNotFound: unknown).
  Result<int> Size(std::string_view group) const;
  // The size the group actually has (a hook that failed, a manual change):
  // the engine goes on from it. Clamped into [min, max].
  Status SetSize(std::string_view group, int size);
  Result<AlarmState> State(std::string_view alarm, std::string_view instance = {}) const;
  // Whether the group's forecast is in use now (learned and accurate).
  Result<bool> Predicting(std::string_view group) const;
  // The last max_decisions decisions, oldest first.
  std::vector<Decision> Decisions() const;
  EngineStats stats() const;

  std::string SaveState() const;
  // kInvalidArgument for a state that is not one of this engine's.
  Status RestoreState(std::string_view json);

 private:
  explicit Engine(std::unique_ptr<EngineImpl> impl);
  std::unique_ptr<EngineImpl> impl_;
};

}  // namespace qcloud::sched
