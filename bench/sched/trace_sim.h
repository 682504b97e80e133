#pragma once

// Replays a load trace (tests/sched/data/load_trace.csv) against a group
// scaled by qcloud::sched::Engine in one of three modes, on a ManualClock
// ticking every 5 s, and counts what an operator would: scaling actions,
// minutes in violation of the SLO, and instance-hours paid.
//
// The model: the load L (instance-CPUs) spreads over the ready instances;
// each reports cpu = min(1, L / ready). A scale-out's instances are ready
// `boot` later (3 min) and report nothing before; a scale-in removes at
// once. A minute violates the SLO when the cpu in any of its ticks is
// above `slo_cpu` (0.85): the service is saturated.
//
// Modes (the group: min 2, max 200, starts at 8):
//   reactive         alarms: avg cpu > 0.75 for 1 min -> +25% (cooldown 3
//                    min); avg cpu < 0.35 for 15 min -> -10% (cooldown 10 min)
//   target-tracking  the HPA rule at target 0.6
//   predictive       target tracking at 0.6 plus the daily profile (lead
//                    10 min; learned during day 1)
// Used by tests/sched/trigger_test.cc and bench/sched/sched_bench.cc.

#include <algorithm>
#include <cmath>
#include <deque>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/sched/trigger.h"

namespace qcloud::sched::sim {

enum class Mode { kReactive, kTargetTracking, kPredictive };

inline const char* ModeName(Mode m) {
  switch (m) {
    case Mode::kReactive: return "reactive";
    case Mode::kTargetTracking: return "target-tracking";
    case Mode::kPredictive: return "predictive";
  }
  return "?";
}

struct TracePoint {
  int minute = 0;
  double load = 0;
};

// The CSV: "minute,load" lines; '#' lines are comments. Empty on error.
inline std::vector<TracePoint> LoadTrace(const std::string& path) {
  std::vector<TracePoint> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    TracePoint p;
    char comma = 0;
    if (!(ls >> p.minute >> comma >> p.load) || comma != ',') return {};
    out.push_back(p);
  }
  return out;
}

struct Result {
  int actions = 0;
  int slo_minutes = 0;              // over the whole trace
  int slo_minutes_after_day1 = 0;   // days 2.. (the profile learned)
  double instance_hours = 0;
  int peak_size = 0;
};

inline Result Replay(const std::vector<TracePoint>& trace, Mode mode, double slo_cpu = 0.85) {
  using std::chrono::minutes;
  using std::chrono::seconds;
  ManualClock clock;  // midnight UTC: the trace's minute 0
  GroupSpec g{.name = "web", .min_size = 2, .max_size = 200, .initial_size = 8, .warmup = seconds(0)};
  std::vector<AlarmPolicy> alarms;
  std::vector<ActionPolicy> actions;
  if (mode == Mode::kReactive) {
    alarms = {{.name = "hot", .group = "web", .metric = "cpu", .window = minutes(1), .threshold = 0.75, .duration = minutes(1)},
              {.name = "cold", .group = "web", .metric = "cpu", .window = minutes(1), .comparison = Comparison::kLess,
               .threshold = 0.35, .duration = minutes(15)}};
    actions = {{.name = "out", .alarm = "hot", .kind = ActionKind::kScaleOut, .adjustment_type = Adjustment::kPercent,
                .adjustment = 25, .cooldown = minutes(3)},
               {.name = "in", .alarm = "cold", .kind = ActionKind::kScaleIn, .adjustment_type = Adjustment::kPercent,
                .adjustment = 10, .cooldown = minutes(10)}};
  } else {
    g.target_tracking = TargetTracking{.metric = "cpu", .target = 0.6};
    if (mode == Mode::kPredictive) g.predictive = Predictive{.lead = minutes(10)};
  }
  auto engine = Engine::Open({.clock = &clock}, {g}, alarms, actions).value();
  const auto boot = minutes(3);
  std::deque<MonoTime> booting;  // ready times of instances not yet ready
  int ready = 8;
  int size = 8;
  Result r;
  r.peak_size = size;
  const int end_minute = trace.empty() ? 0 : trace.back().minute + 5;
  std::vector<MetricSample> samples;
  int last_bad = -1;  // the last minute counted as a violation
  for (int tick = 0; tick * 5 < end_minute * 60; ++tick) {
    const double t_min = tick * 5 / 60.0;
    // Linear between points (5 minutes apart).
    const size_t i = std::min(static_cast<size_t>(t_min / 5), trace.size() - 1);
    const size_t j = std::min(i + 1, trace.size() - 1);
    const double f = std::clamp((t_min - trace[i].minute) / 5.0, 0.0, 1.0);
    const double load = trace[i].load * (1 - f) + trace[j].load * f;
    const MonoTime now = clock.MonotonicNow();
    while (!booting.empty() && booting.front() <= now) {
      booting.pop_front();
      ++ready;
    }
    const double cpu = ready > 0 ? std::min(1.0, load / ready) : 1.0;
    if (ready == 0 || load / ready > slo_cpu) {
      // One violation per minute: count the minute at its first bad tick.
      const int minute = tick * 5 / 60;
      if (minute != last_bad) {
        ++r.slo_minutes;
        if (minute >= 1440) ++r.slo_minutes_after_day1;
        last_bad = minute;
      }
    }
    samples.clear();
    for (int k = 0; k < ready; ++k) samples.push_back({"web", "i" + std::to_string(k), "cpu", cpu});
    engine->Observe(samples);
    clock.Advance(seconds(5));
    for (const Decision& d : engine->Tick()) {
      if (d.to == d.from) continue;
      ++r.actions;
      if (d.to > size) {
        for (int k = size; k < d.to; ++k) booting.push_back(clock.MonotonicNow() + boot);
      } else {
        // Scale in: booting instances go first, then ready ones.
        int drop = size - d.to;
        while (drop > 0 && !booting.empty()) {
          booting.pop_back();
          --drop;
        }
        ready -= drop;
      }
      size = d.to;
      r.peak_size = std::max(r.peak_size, size);
    }
    r.instance_hours += size * 5.0 / 3600.0;
  }
  return r;
}

}  // namespace qcloud::sched::sim
