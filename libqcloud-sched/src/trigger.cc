#include "qcloud/sched/trigger.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

namespace qcloud::sched {

namespace json = boost::json;

const char* AlarmStateName(AlarmState s) noexcept {
  switch (s) {
    case AlarmState::kOk: return "ok";
    case AlarmState::kPending: return "pending";
    case AlarmState::kFiring: return "firing";
    case AlarmState::kResolved: return "resolved";
  }
  return "?";
}

const char* ActionKindName(ActionKind k) noexcept {
  switch (k) {
    case ActionKind::kScaleOut: return "scale_out";
    case ActionKind::kScaleIn: return "scale_in";
    case ActionKind::kSetSize: return "set_size";
    case ActionKind::kMigrate: return "migrate";
    case ActionKind::kNotify: return "notify";
    case ActionKind::kTrigger: return "trigger";
  }
  return "?";
}

std::string DecisionToJson(const Decision& d) {
  json::object o;
  o["at_ms"] = d.at_ms;
  o["group"] = d.group;
  o["policy"] = d.policy;
  o["alarm"] = d.alarm;
  o["kind"] = ActionKindName(d.kind);
  o["from"] = d.from;
  o["to"] = d.to;
  o["instance"] = d.instance;
  o["trigger"] = d.trigger;
  o["explanation"] = d.explanation;
  return json::serialize(o);
}

namespace {

using Ms = std::chrono::milliseconds;

const char* AggName(Aggregation a) {
  switch (a) {
    case Aggregation::kAvg: return "avg";
    case Aggregation::kMax: return "max";
    case Aggregation::kMin: return "min";
  }
  return "?";
}

const char* CmpName(Comparison c) {
  switch (c) {
    case Comparison::kGreater: return ">";
    case Comparison::kGreaterOrEqual: return ">=";
    case Comparison::kLess: return "<";
    case Comparison::kLessOrEqual: return "<=";
  }
  return "?";
}

bool Holds(Comparison c, double v, double t) {
  switch (c) {
    case Comparison::kGreater: return v > t;
    case Comparison::kGreaterOrEqual: return v >= t;
    case Comparison::kLess: return v < t;
    case Comparison::kLessOrEqual: return v <= t;
  }
  return false;
}

std::string Dur(Ms d) {
  const int64_t ms = d.count();
  if (ms % 60000 == 0) return fmt::format("{}m", ms / 60000);
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  return fmt::format("{}ms", ms);
}

bool Finite(double v) { return std::isfinite(v); }

// A group size from arithmetic in doubles: rounded up, kept in [0, 1e9]
// before the cast (a sample of 1e300 must not wrap a size negative).
int CeilSize(double x) {
  if (!(x > 0)) return 0;
  if (x >= 1e9) return 1'000'000'000;
  return static_cast<int>(std::ceil(x - 1e-9));
}

// The longest window, duration or cooldown taken (about 100 years): time
// arithmetic in nanoseconds stays far from overflow.
constexpr int64_t kMaxSpanMs = int64_t{100} * 365 * 24 * 3600 * 1000;

struct Point {
  MonoTime t;
  double v;
};

struct InstanceData {
  MonoTime started{};
  bool started_known = false;
  std::unordered_map<std::string, std::deque<Point>> series;  // metric -> samples, oldest first
};

struct AlarmRuntime {
  AlarmState state = AlarmState::kOk;
  MonoTime since{};
};

struct PredictState {
  std::vector<double> profile;  // per bucket of the season: learned load
  std::vector<uint32_t> seen;   // seasons learned per bucket
  size_t learned = 0;           // buckets with seen > 0
  int64_t bucket_id = -1;       // the bucket being observed (wall ms / bucket)
  double acc = 0;               // its load samples so far
  int n = 0;
  double error = 0;             // moving average of the relative error
  bool error_known = false;
  bool active = false;
};

struct GroupRuntime {
  GroupSpec spec;
  int size = 0;
  std::optional<MonoTime> last_scale;
  std::map<std::string, InstanceData, std::less<>> instances;
  std::deque<std::pair<MonoTime, int>> recommendations;  // target tracking, for the stabilization window
  std::deque<std::pair<MonoTime, int>> sizes;            // size changes (time, delta), for the scale-up limit
  Ms keep{0};                                            // the longest window a policy reads
  PredictState predict;
  double predict_forecast = 0;  // the last forecast, for the explanation
};

}  // namespace

class EngineImpl {
 public:
  EngineOptions options;
  Clock* clock = nullptr;
  std::map<std::string, GroupRuntime, std::less<>> groups;
  std::vector<AlarmPolicy> alarms;
  std::vector<ActionPolicy> actions;
  std::map<std::string, size_t, std::less<>> alarm_index, action_index;
  // Per alarm: the group state ("" key) or one per instance.
  std::vector<std::map<std::string, AlarmRuntime, std::less<>>> alarm_state;
  std::deque<Decision> recent;
  // Per action policy: when it last acted on each target ("" = the group).
  std::vector<std::map<std::string, MonoTime, std::less<>>> last_done;
  EngineStats st;
  size_t instance_count = 0;

  int64_t WallMs() const {
    return std::chrono::duration_cast<Ms>(clock->WallNow().time_since_epoch()).count();
  }

  Status Validate() {
    std::set<std::string> metric_names(options.metrics.begin(), options.metrics.end());
    auto known_metric = [&](const std::string& m) { return metric_names.empty() || metric_names.contains(m); };
    for (auto& [name, g] : groups) {
      const GroupSpec& s = g.spec;
      if (s.min_size < 0 || s.min_size > s.max_size) {
        return InvalidArgument(fmt::format("group \"{}\": min_size {} and max_size {} (need 0 <= min <= max)", name,
                                           s.min_size, s.max_size));
      }
      if (s.warmup.count() < 0 || s.warmup.count() > kMaxSpanMs) {
        return InvalidArgument(fmt::format("group \"{}\": warmup out of range", name));
      }
      if (s.target_tracking) {
        const TargetTracking& t = *s.target_tracking;
        if (!Finite(t.target) || t.target <= 0) {
          return InvalidArgument(fmt::format("group \"{}\": target tracking target {} (must be > 0)", name, t.target));
        }
        if (!Finite(t.tolerance) || t.tolerance < 0 || t.tolerance >= 1) {
          return InvalidArgument(fmt::format("group \"{}\": tolerance {} (0 <= t < 1)", name, t.tolerance));
        }
        if (!known_metric(t.metric)) {
          return InvalidArgument(fmt::format("group \"{}\": unknown metric \"{}\"", name, t.metric));
        }
        if (t.scale_up_instances < 0 || t.scale_up_instances > 1'000'000'000 || !Finite(t.scale_up_percent) ||
            t.scale_up_percent < 0 || t.scale_up_percent > 1e9 || t.scale_up_period.count() <= 0 ||
            t.scale_up_period.count() > kMaxSpanMs || t.scale_down_stabilization.count() < 0 ||
            t.scale_down_stabilization.count() > kMaxSpanMs) {
          return InvalidArgument(fmt::format("group \"{}\": invalid target tracking limits", name));
        }
        g.keep = std::max(g.keep, Ms(std::chrono::minutes(1)));
      }
      if (s.predictive) {
        const Predictive& pr = *s.predictive;
        if (!s.target_tracking) return InvalidArgument(fmt::format("group \"{}\": predictive needs target_tracking", name));
        if (pr.bucket.count() <= 0 || pr.season.count() <= 0 || pr.season.count() % pr.bucket.count() != 0 ||
            pr.season / pr.bucket > 100000) {
          return InvalidArgument(fmt::format("group \"{}\": the season must be a whole number (<= 100000) of buckets", name));
        }
        if (pr.season.count() > kMaxSpanMs || pr.lead.count() < 0 || pr.lead > pr.season) {
          return InvalidArgument(fmt::format("group \"{}\": lead must be in [0, season]", name));
        }
        if (!(pr.learning_rate > 0 && pr.learning_rate <= 1) || !(pr.max_error > 0) || !Finite(pr.max_error)) {
          return InvalidArgument(fmt::format("group \"{}\": learning_rate in (0, 1] and max_error > 0", name));
        }
        const size_t buckets = static_cast<size_t>(pr.season / pr.bucket);
        g.predict.profile.assign(buckets, 0.0);
        g.predict.seen.assign(buckets, 0);
      }
    }
    for (const AlarmPolicy& a : alarms) {
      auto g = groups.find(a.group);
      if (g == groups.end()) return InvalidArgument(fmt::format("alarm \"{}\": unknown group \"{}\"", a.name, a.group));
      if (!known_metric(a.metric)) return InvalidArgument(fmt::format("alarm \"{}\": unknown metric \"{}\"", a.name, a.metric));
      if (!Finite(a.threshold) || a.threshold < 0) {
        return InvalidArgument(fmt::format("alarm \"{}\": threshold {} (must be >= 0)", a.name, a.threshold));
      }
      if (!Finite(a.hysteresis) || a.hysteresis < 0) {
        return InvalidArgument(fmt::format("alarm \"{}\": hysteresis {} (must be >= 0)", a.name, a.hysteresis));
      }
      if (a.window.count() <= 0 || a.window.count() > kMaxSpanMs) {
        return InvalidArgument(fmt::format("alarm \"{}\": window must be positive (and under 100 years)", a.name));
      }
      if (a.duration.count() < 0 || a.duration.count() > kMaxSpanMs) {
        return InvalidArgument(fmt::format("alarm \"{}\": duration out of range", a.name));
      }
      g->second.keep = std::max(g->second.keep, a.window);
    }
    for (const ActionPolicy& p : actions) {
      auto a = alarm_index.find(p.alarm);
      if (a == alarm_index.end()) return InvalidArgument(fmt::format("action \"{}\": unknown alarm \"{}\"", p.name, p.alarm));
      if (!Finite(p.adjustment) || p.adjustment < 0 || p.adjustment > 1e9) {
        return InvalidArgument(fmt::format("action \"{}\": adjustment {} (must be in [0, 1e9])", p.name, p.adjustment));
      }
      if (p.cooldown.count() < 0 || p.cooldown.count() > kMaxSpanMs) {
        return InvalidArgument(fmt::format("action \"{}\": cooldown out of range", p.name));
      }
      const GroupSpec& gs = groups.at(alarms[a->second].group).spec;
      if (p.kind == ActionKind::kSetSize &&
          (p.adjustment != std::floor(p.adjustment) || p.adjustment < gs.min_size || p.adjustment > gs.max_size)) {
        return InvalidArgument(fmt::format("action \"{}\": size {} is not a whole number in [{}, {}]", p.name,
                                           p.adjustment, gs.min_size, gs.max_size));
      }
      if (p.kind == ActionKind::kTrigger && !action_index.contains(p.trigger)) {
        return InvalidArgument(fmt::format("action \"{}\": triggers unknown action \"{}\"", p.name, p.trigger));
      }
      if (p.kind != ActionKind::kTrigger && !p.trigger.empty()) {
        return InvalidArgument(fmt::format("action \"{}\": \"trigger\" is for trigger actions only", p.name));
      }
    }
    // Trigger chains: follow each; a policy met twice is a cycle.
    for (const ActionPolicy& p : actions) {
      std::set<std::string> seen = {p.name};
      const ActionPolicy* at = &p;
      while (at->kind == ActionKind::kTrigger) {
        const ActionPolicy& next = actions[action_index.at(at->trigger)];
        if (!seen.insert(next.name).second) {
          return InvalidArgument(fmt::format("action \"{}\": trigger cycle through \"{}\"", p.name, next.name));
        }
        at = &next;
      }
    }
    return Status::Ok();
  }

  void Observe(std::span<const MetricSample> samples) {
    const MonoTime now = clock->MonotonicNow();
    for (const MetricSample& s : samples) {
      if (!Finite(s.value)) {
        ++st.nan_samples;
        continue;
      }
      auto g = groups.find(s.group);
      if (g == groups.end()) {
        ++st.unknown_samples;
        continue;
      }
      auto it = g->second.instances.find(s.instance);
      if (it == g->second.instances.end()) {
        if (instance_count >= options.max_instances) {
          ++st.unknown_samples;
          continue;
        }
        it = g->second.instances.emplace(s.instance, InstanceData{}).first;
        ++instance_count;
      }
      std::deque<Point>& series = it->second.series[s.metric];
      series.push_back({now, s.value});
      ++st.samples;
    }
  }

  bool Warm(const GroupRuntime& g, const InstanceData& in, MonoTime now) const {
    return !in.started_known || now - in.started >= g.spec.warmup;
  }

  // Drops samples older than the group's longest window.
  void Prune(GroupRuntime& g, MonoTime now) {
    const MonoTime floor = now - g.keep;
    for (auto& [name, in] : g.instances) {
      for (auto& [metric, series] : in.series) {
        while (!series.empty() && series.front().t < floor) series.pop_front();
      }
    }
  }

  struct Aggregate {
    double value = 0;
    size_t samples = 0;
    size_t instances = 0;
  };

  static void Fold(Aggregation agg, const std::deque<Point>& series, MonoTime from, Aggregate& a, bool& any) {
    bool counted = false;
    for (auto it = series.rbegin(); it != series.rend() && it->t >= from; ++it) {
      if (a.samples == 0) {
        a.value = agg == Aggregation::kAvg ? 0 : it->v;
      }
      if (agg == Aggregation::kAvg) a.value += it->v;
      if (agg == Aggregation::kMax) a.value = std::max(a.value, it->v);
      if (agg == Aggregation::kMin) a.value = std::min(a.value, it->v);
      ++a.samples;
      counted = true;
    }
    if (counted) ++a.instances;
    any = any || counted;
  }

  Decision Make(const GroupRuntime& g, const std::string& policy, const std::string& alarm, ActionKind kind, int to,
                std::string explanation) const {
    return Decision{.at_ms = WallMs(),
                    .group = g.spec.name,
                    .policy = policy,
                    .alarm = alarm,
                    .kind = kind,
                    .from = g.size,
                    .to = to,
                    .instance = {},
                    .trigger = {},
                    .explanation = std::move(explanation)};
  }

  void Record(GroupRuntime& g, MonoTime now, Decision d, std::vector<Decision>& out) {
    if (d.to != d.from) {
      g.size = d.to;
      g.last_scale = now;
      g.sizes.emplace_back(now, d.to - d.from);
    }
    ++st.decisions;
    recent.push_back(d);
    while (recent.size() > options.max_decisions) recent.pop_front();
    out.push_back(std::move(d));
  }

  // One action policy, for its alarm's reason text; chains through triggers.
  void Act(const ActionPolicy& p, const AlarmPolicy& a, const std::string& instance, const std::string& why, MonoTime now,
           std::vector<Decision>& out, int depth) {
    GroupRuntime& g = groups.find(a.group)->second;
    const bool scaling = p.kind == ActionKind::kScaleOut || p.kind == ActionKind::kScaleIn || p.kind == ActionKind::kSetSize;
    if (scaling) {
      if (g.last_scale && now - *g.last_scale < p.cooldown) {
        ++st.suppressed;
        return;
      }
      int to = g.size;
      std::string math;
      if (p.kind == ActionKind::kSetSize) {
        to = static_cast<int>(p.adjustment);
        math = fmt::format("set size {}", to);
      } else {
        const double sign = p.kind == ActionKind::kScaleOut ? 1 : -1;
        double step = 0;
        if (p.adjustment_type == Adjustment::kCount) {
          step = std::ceil(p.adjustment);
          math = fmt::format("{} by {}", ActionKindName(p.kind), step);
        } else {
          step = std::max(1.0, std::ceil(g.size * p.adjustment / 100.0));
          math = fmt::format("{} by {}% of {} = {}", ActionKindName(p.kind), p.adjustment, g.size, step);
        }
        // In doubles, then into [min, max]: no int overflow either way.
        const double want = static_cast<double>(g.size) + sign * step;
        to = static_cast<int>(std::clamp(want, -1e9, 1e9));
      }
      const int clamped = std::clamp(to, g.spec.min_size, g.spec.max_size);
      if (clamped != to) math += fmt::format(" -> {} clamped to [{}, {}]", to, g.spec.min_size, g.spec.max_size);
      if (clamped == g.size) {
        ++st.suppressed;  // already at the bound
        return;
      }
      Record(g, now, Make(g, p.name, a.name, p.kind, clamped,
                          fmt::format("{}; action {}: {}: {} -> {}", why, p.name, math, g.size, clamped)),
             out);
      return;
    }
    // Migrate, notify, trigger: once per cooldown per target (the group, or
    // the instance of a per-instance alarm), not on every tick it fires.
    auto& last = last_done[action_index.at(p.name)];
    auto done = last.find(instance);
    if (done != last.end() && now - done->second < p.cooldown) {
      ++st.suppressed;
      return;
    }
    last[instance] = now;
    Decision d = Make(g, p.name, a.name, p.kind, g.size, fmt::format("{}; action {}: {}", why, p.name, ActionKindName(p.kind)));
    d.instance = instance;
    if (p.kind == ActionKind::kTrigger) {
      d.trigger = p.trigger;
      d.explanation += " " + p.trigger;
    }
    Record(g, now, std::move(d), out);
    if (p.kind == ActionKind::kTrigger && depth < 64) {
      Act(actions[action_index.at(p.trigger)], a, instance, why + "; triggered by " + p.name, now, out, depth + 1);
    }
  }

  // Steps one alarm state; true when it is firing after.
  static bool Step(const AlarmPolicy& a, AlarmRuntime& rt, bool have, double value, MonoTime now) {
    const double clear = a.comparison == Comparison::kGreater || a.comparison == Comparison::kGreaterOrEqual
                             ? a.threshold - a.hysteresis
                             : a.threshold + a.hysteresis;
    const bool holds = have && Holds(a.comparison, value, a.threshold);
    switch (rt.state) {
      case AlarmState::kOk:
      case AlarmState::kResolved:
        if (holds) {
          rt = {a.duration.count() == 0 ? AlarmState::kFiring : AlarmState::kPending, now};
        } else {
          rt = {AlarmState::kOk, rt.state == AlarmState::kOk ? rt.since : now};
        }
        break;
      case AlarmState::kPending:
        if (!holds) {
          rt = {AlarmState::kOk, now};
        } else if (now - rt.since >= a.duration) {
          rt = {AlarmState::kFiring, now};
        }
        break;
      case AlarmState::kFiring:
        if (!(have && Holds(a.comparison, value, clear))) rt = {AlarmState::kResolved, now};
        break;
    }
    return rt.state == AlarmState::kFiring;
  }

  std::string Why(const AlarmPolicy& a, const Aggregate& agg, double value, const std::string& instance) const {
    return fmt::format("alarm {}: {}({}) over {} of {}{} = {:.6g} ({} samples) {} {:.6g} for {}", a.name,
                       AggName(a.aggregation), a.metric, Dur(a.window),
                       instance.empty() ? fmt::format("{} instances", agg.instances) : "instance ", instance, value,
                       agg.samples, CmpName(a.comparison), a.threshold, Dur(a.duration));
  }

  std::vector<Decision> Tick() {
    const MonoTime now = clock->MonotonicNow();
    ++st.ticks;
    std::vector<Decision> out;
    for (auto& [name, g] : groups) Prune(g, now);
    for (size_t k = 0; k < alarms.size(); ++k) {
      const AlarmPolicy& a = alarms[k];
      GroupRuntime& g = groups.find(a.group)->second;
      const MonoTime from = now - a.window;
      // The action policies of this alarm.
      std::vector<const ActionPolicy*> mine;
      for (const ActionPolicy& p : actions) {
        if (p.alarm == a.name) mine.push_back(&p);
      }
      if (!a.per_instance) {
        Aggregate agg;
        bool any = false;
        for (auto& [iname, in] : g.instances) {
          if (!Warm(g, in, now)) continue;
          auto s = in.series.find(a.metric);
          if (s != in.series.end()) Fold(a.aggregation, s->second, from, agg, any);
        }
        const double value = any && a.aggregation == Aggregation::kAvg ? agg.value / static_cast<double>(agg.samples) : agg.value;
        AlarmRuntime& rt = alarm_state[k][""];
        if (Step(a, rt, any, value, now)) {
          const std::string why = Why(a, agg, value, "");
          for (const ActionPolicy* p : mine) Act(*p, a, "", why, now, out, 0);
        }
        continue;
      }
      auto& states = alarm_state[k];
      for (auto& [iname, in] : g.instances) {
        Aggregate agg;
        bool any = false;
        if (Warm(g, in, now)) {
          auto s = in.series.find(a.metric);
          if (s != in.series.end()) Fold(a.aggregation, s->second, from, agg, any);
        }
        const double value = any && a.aggregation == Aggregation::kAvg ? agg.value / static_cast<double>(agg.samples) : agg.value;
        auto st_it = states.find(iname);
        if (st_it == states.end()) {
          if (!any) continue;  // no state to keep for an instance with nothing to say
          st_it = states.emplace(iname, AlarmRuntime{AlarmState::kOk, now}).first;
        }
        if (Step(a, st_it->second, any, value, now)) {
          const std::string why = Why(a, agg, value, iname);
          for (const ActionPolicy* p : mine) Act(*p, a, iname, why, now, out, 0);
        }
      }
      std::erase_if(states, [&](const auto& kv) { return !g.instances.contains(kv.first); });
    }
    for (auto& [name, g] : groups) {
      if (g.spec.target_tracking) Track(g, now, out);
    }
    for (size_t k = 0; k < actions.size(); ++k) {  // past their cooldown, forgotten
      std::erase_if(last_done[k], [&](const auto& kv) { return now - kv.second >= actions[k].cooldown; });
    }
    return out;
  }

  // Learns the load `load` at this tick; the size the forecast asks for
  // when it is in use.
  std::optional<int> Predict(GroupRuntime& g, double load, MonoTime now) {
    (void)now;
    if (!g.spec.predictive) return std::nullopt;
    const Predictive& pr = *g.spec.predictive;
    PredictState& ps = g.predict;
    const int64_t bucket_ms = pr.bucket.count();
    const size_t buckets = ps.profile.size();
    const int64_t wall = WallMs();
    const int64_t id = wall >= 0 ? wall / bucket_ms : -((-wall + bucket_ms - 1) / bucket_ms);
    auto index = [&](int64_t bucket_id) {
      const int64_t m = bucket_id % static_cast<int64_t>(buckets);
      return static_cast<size_t>(m < 0 ? m + static_cast<int64_t>(buckets) : m);
    };
    if (ps.bucket_id != id) {
      if (ps.bucket_id >= 0 && ps.n > 0) {
        // The bucket that ended: its error against what was learned, then learned.
        const double actual = ps.acc / ps.n;
        const size_t b = index(ps.bucket_id);
        if (ps.seen[b] > 0) {
          const double err = std::abs(actual - ps.profile[b]) / std::max(actual, 1e-9);
          ps.error = ps.error_known ? 0.7 * ps.error + 0.3 * err : err;
          ps.error_known = true;
        }
        if (ps.seen[b] == 0) {
          ps.profile[b] = actual;
          ++ps.learned;
        } else {
          ps.profile[b] = (1 - pr.learning_rate) * ps.profile[b] + pr.learning_rate * actual;
        }
        ps.seen[b] = std::min<uint32_t>(ps.seen[b] + 1, 1u << 30);
      }
      ps.bucket_id = id;
      ps.acc = 0;
      ps.n = 0;
    }
    ps.acc += load;
    ++ps.n;
    // In use once a whole season is learned, while accurate (hysteresis: off
    // above max_error, on again under half of it).
    if (ps.learned < buckets) {
      ps.active = false;
    } else if (ps.active && ps.error_known && ps.error > pr.max_error) {
      ps.active = false;
    } else if (!ps.active && (!ps.error_known || ps.error <= pr.max_error / 2)) {
      ps.active = true;
    }
    if (!ps.active) return std::nullopt;
    double peak = 0;
    const int64_t ahead = pr.lead.count() / bucket_ms;
    for (int64_t k = 0; k <= ahead; ++k) peak = std::max(peak, ps.profile[index(id + k)]);
    g.predict_forecast = peak;
    const TargetTracking& t = *g.spec.target_tracking;
    return std::clamp(CeilSize(peak / t.target), g.spec.min_size, g.spec.max_size);
  }

  void Track(GroupRuntime& g, MonoTime now, std::vector<Decision>& out) {
    const TargetTracking& t = *g.spec.target_tracking;
    // The current value: the average over warm instances of each one's newest sample.
    double sum = 0;
    size_t n = 0;
    for (const auto& [iname, in] : g.instances) {
      if (!Warm(g, in, now)) continue;
      auto s = in.series.find(t.metric);
      if (s == in.series.end() || s->second.empty()) continue;
      sum += s->second.back().v;
      ++n;
    }
    if (n == 0 || g.size == 0) return;
    const double value = sum / static_cast<double>(n);
    const std::optional<int> predicted = Predict(g, sum, now);
    const double ratio = value / t.target;
    int recommendation = g.size;
    std::string math;
    // Instances of the group not reporting (booting, warming up) count as
    // the HPA counts pods not ready: 0 when scaling out (their capacity is
    // coming), the target when scaling in (do not shrink on their silence).
    const int missing = std::max(0, g.size - static_cast<int>(n));
    if (std::abs(ratio - 1) <= t.tolerance) {
      math = fmt::format("ratio {:.4g} within tolerance {}: keep {}", ratio, t.tolerance, g.size);
    } else if (missing == 0) {
      recommendation = CeilSize(static_cast<double>(g.size) * ratio);
      math = fmt::format("ceil({} * {:.6g} / {:.6g}) = {}", g.size, value, t.target, recommendation);
    } else {
      const double assumed = ratio > 1 ? 0.0 : t.target;
      const double total = sum + assumed * missing;
      const double new_ratio = total / (t.target * g.size);
      if (std::abs(new_ratio - 1) <= t.tolerance || (ratio > 1) != (new_ratio > 1)) {
        math = fmt::format("ratio {:.4g}, {:.4g} counting {} instances not reporting as {}: keep {}", ratio, new_ratio,
                           missing, assumed, g.size);
      } else {
        recommendation = CeilSize(static_cast<double>(g.size) * new_ratio);
        math = fmt::format("ceil({} * ({:.6g} + {} * {:.6g}) / ({} * {:.6g})) = {} ({} not reporting)", g.size, sum,
                           missing, assumed, g.size, t.target, recommendation, missing);
      }
    }
    g.recommendations.emplace_back(now, recommendation);
    while (!g.recommendations.empty() && now - g.recommendations.front().first > t.scale_down_stabilization) {
      g.recommendations.pop_front();
    }
    int desired = recommendation;
    if (predicted && *predicted > desired) {
      desired = *predicted;
      math += fmt::format("; predictive: forecast load {:.6g} over the next {} (error {:.3g}) / target {:.6g} -> {}",
                          g.predict_forecast, Dur(g.spec.predictive->lead), g.predict.error, t.target, *predicted);
    }
    if (desired < g.size) {
      int highest = desired;
      for (const auto& [when, r] : g.recommendations) highest = std::max(highest, r);
      if (highest != desired) {
        math += fmt::format("; scale-in stabilized over {} to the highest recommendation {}", Dur(t.scale_down_stabilization), highest);
      }
      desired = std::min(highest, g.size);
    } else if (desired > g.size) {
      // The HPA's scale-up limit: the size at the start of the last period
      // (now minus the changes made since) plus max(n, p%) of it.
      while (!g.sizes.empty() && now - g.sizes.front().first >= t.scale_up_period) g.sizes.pop_front();
      int64_t base64 = g.size;
      for (const auto& [when, delta] : g.sizes) base64 -= delta;
      const int base = static_cast<int>(std::clamp<int64_t>(base64, 0, 1'000'000'000));
      const int limit = CeilSize(std::max(static_cast<double>(base) + t.scale_up_instances,
                                          static_cast<double>(base) * (1 + t.scale_up_percent / 100.0)));
      if (desired > limit) {
        math += fmt::format("; scale-up limited to max({} + {}, {} * {}%) = {}", base, t.scale_up_instances, base,
                            100 + t.scale_up_percent, limit);
        desired = limit;
      }
    }
    const int clamped = std::clamp(desired, g.spec.min_size, g.spec.max_size);
    if (clamped != desired) math += fmt::format("; clamped to [{}, {}]", g.spec.min_size, g.spec.max_size);
    if (clamped == g.size) return;
    Record(g, now,
           Make(g, "target-tracking", "", clamped > g.size ? ActionKind::kScaleOut : ActionKind::kScaleIn, clamped,
                fmt::format("target tracking: avg({}) of {} instances = {:.6g}, target {:.6g}: {}: {} -> {}", t.metric, n,
                            value, t.target, math, g.size, clamped)),
           out);
  }

  // ---- state ----

  int64_t ToWallMs(MonoTime t, MonoTime now_mono, int64_t now_wall) const {
    return now_wall - std::chrono::duration_cast<Ms>(now_mono - t).count();
  }
  MonoTime FromWallMs(int64_t ms, MonoTime now_mono, int64_t now_wall) const {
    return now_mono - Ms(now_wall - ms);
  }

  std::string Save() const {
    const MonoTime now = clock->MonotonicNow();
    const int64_t wall = WallMs();
    json::object root;
    root["version"] = 1;
    root["saved_ms"] = wall;
    json::object gs;
    for (const auto& [name, g] : groups) {
      json::object o;
      o["size"] = g.size;
      if (g.last_scale) o["last_scale_ms"] = ToWallMs(*g.last_scale, now, wall);
      json::array recs;
      for (const auto& [t, r] : g.recommendations) recs.push_back(json::array{ToWallMs(t, now, wall), r});
      o["recommendations"] = std::move(recs);
      json::array sizes;
      for (const auto& [t, s] : g.sizes) sizes.push_back(json::array{ToWallMs(t, now, wall), s});
      o["sizes"] = std::move(sizes);
      if (g.spec.predictive) {
        json::array profile, seen;
        for (double v : g.predict.profile) profile.push_back(v);
        for (uint32_t v : g.predict.seen) seen.push_back(v);
        o["profile"] = std::move(profile);
        o["seen"] = std::move(seen);
        o["error"] = g.predict.error;
        o["error_known"] = g.predict.error_known;
      }
      gs[name] = std::move(o);
    }
    root["groups"] = std::move(gs);
    json::object as;
    for (size_t k = 0; k < alarms.size(); ++k) {
      json::object per;
      for (const auto& [inst, rt] : alarm_state[k]) {
        per[inst] = json::array{AlarmStateName(rt.state), ToWallMs(rt.since, now, wall)};
      }
      as[alarms[k].name] = std::move(per);
    }
    root["alarms"] = std::move(as);
    // Per action policy, when it last acted on each target: its cooldown.
    json::object cs;
    for (size_t k = 0; k < actions.size(); ++k) {
      if (last_done[k].empty()) continue;
      json::object per;
      for (const auto& [target, t] : last_done[k]) per[target] = ToWallMs(t, now, wall);
      cs[actions[k].name] = std::move(per);
    }
    root["cooldowns"] = std::move(cs);
    return json::serialize(root);
  }

  Status Restore(std::string_view text) {
    if (text.size() > (size_t{64} << 20)) return InvalidArgument("state: larger than 64 MiB");
    boost::system::error_code ec;
    json::parse_options po;
    po.max_depth = 8;
    json::value doc = json::parse(text, ec, {}, po);
    if (ec) return InvalidArgument("state: not JSON: " + ec.message());
    auto bad = [](const std::string& what) { return InvalidArgument("state: " + what); };
    if (!doc.is_object()) return bad("not an object");
    const json::object& root = doc.get_object();
    const json::value* version = root.if_contains("version");
    if (!version || !version->is_int64() || version->get_int64() != 1) return bad("unknown version");
    const json::value* groups_v = root.if_contains("groups");
    const json::value* alarms_v = root.if_contains("alarms");
    if (!groups_v || !groups_v->is_object() || !alarms_v || !alarms_v->is_object()) return bad("no groups or alarms");
    const MonoTime now = clock->MonotonicNow();
    const int64_t wall = WallMs();
    auto ms_of = [](const json::value& v) -> std::optional<int64_t> {
      if (v.is_int64()) return v.get_int64();
      return std::nullopt;
    };
    // Times no older than kMaxSpanMs before now, none in the future.
    auto time_ok = [&](std::optional<int64_t> t) { return t && *t <= wall && *t >= wall - kMaxSpanMs; };
    auto pairs = [&](const json::value* v, std::deque<std::pair<MonoTime, int>>& out, bool signed_values) -> bool {
      out.clear();
      if (v == nullptr) return true;
      if (!v->is_array()) return false;
      for (const json::value& e : v->get_array()) {
        if (!e.is_array() || e.get_array().size() != 2) return false;
        auto t = ms_of(e.get_array()[0]);
        auto s = ms_of(e.get_array()[1]);
        if (!time_ok(t) || !s || *s < (signed_values ? -1'000'000'000 : 0) || *s > 1'000'000'000) return false;
        out.emplace_back(FromWallMs(*t, now, wall), static_cast<int>(*s));
      }
      return true;
    };
    // Checked whole before anything changes.
    std::map<std::string, GroupRuntime, std::less<>> next_groups = groups;
    for (const auto& kv : groups_v->get_object()) {
      auto g = next_groups.find(std::string_view(kv.key()));
      if (g == next_groups.end()) return bad(fmt::format("unknown group \"{}\"", std::string_view(kv.key())));
      if (!kv.value().is_object()) return bad("group not an object");
      const json::object& o = kv.value().get_object();
      const json::value* size = o.if_contains("size");
      if (!size || !ms_of(*size) || *ms_of(*size) < 0 || *ms_of(*size) > INT32_MAX) return bad("group size");
      g->second.size = std::clamp(static_cast<int>(*ms_of(*size)), g->second.spec.min_size, g->second.spec.max_size);
      g->second.last_scale.reset();
      if (const json::value* ls = o.if_contains("last_scale_ms")) {
        auto t = ms_of(*ls);
        if (!time_ok(t)) return bad("last_scale_ms");
        g->second.last_scale = FromWallMs(*t, now, wall);
      }
      if (!pairs(o.if_contains("recommendations"), g->second.recommendations, false) ||
          !pairs(o.if_contains("sizes"), g->second.sizes, true)) {
        return bad("group history");
      }
      if (g->second.spec.predictive && o.contains("profile")) {
        PredictState& ps = g->second.predict;
        const json::value* profile = o.if_contains("profile");
        const json::value* seen = o.if_contains("seen");
        const json::value* error = o.if_contains("error");
        if (!profile->is_array() || !seen || !seen->is_array() || profile->get_array().size() != ps.profile.size() ||
            seen->get_array().size() != ps.seen.size() || !error || !error->is_number()) {
          return bad("group profile");
        }
        ps.learned = 0;
        for (size_t b = 0; b < ps.profile.size(); ++b) {
          const json::value& pv = profile->get_array()[b];
          const json::value& sv = seen->get_array()[b];
          if (!pv.is_number() || !sv.is_int64() || sv.get_int64() < 0 || sv.get_int64() > (int64_t{1} << 30)) {
            return bad("group profile");
          }
          ps.profile[b] = pv.to_number<double>();
          if (!Finite(ps.profile[b]) || ps.profile[b] < 0) return bad("group profile");
          ps.seen[b] = static_cast<uint32_t>(sv.get_int64());
          ps.learned += ps.seen[b] > 0;
        }
        ps.error = error->to_number<double>();
        if (!Finite(ps.error) || ps.error < 0) return bad("group profile error");
        const json::value* known = o.if_contains("error_known");
        ps.error_known = known && known->is_bool() && known->get_bool();
        ps.bucket_id = -1;
      }
    }
    std::vector<std::map<std::string, AlarmRuntime, std::less<>>> next_alarms(alarms.size());
    for (const auto& kv : alarms_v->get_object()) {
      auto k = alarm_index.find(std::string_view(kv.key()));
      if (k == alarm_index.end()) return bad(fmt::format("unknown alarm \"{}\"", std::string_view(kv.key())));
      if (!kv.value().is_object()) return bad("alarm not an object");
      for (const auto& inst : kv.value().get_object()) {
        const json::value& e = inst.value();
        if (!e.is_array() || e.get_array().size() != 2 || !e.get_array()[0].is_string()) return bad("alarm state");
        auto t = ms_of(e.get_array()[1]);
        if (!time_ok(t)) return bad("alarm time");
        const std::string_view name = e.get_array()[0].get_string();
        AlarmRuntime rt{AlarmState::kOk, FromWallMs(*t, now, wall)};
        bool found = false;
        for (AlarmState s : {AlarmState::kOk, AlarmState::kPending, AlarmState::kFiring, AlarmState::kResolved}) {
          if (name == AlarmStateName(s)) {
            rt.state = s;
            found = true;
          }
        }
        if (!found) return bad("alarm state name");
        next_alarms[k->second][std::string(inst.key())] = rt;
      }
    }
    std::vector<std::map<std::string, MonoTime, std::less<>>> next_done(actions.size());
    if (const json::value* cs = root.if_contains("cooldowns")) {
      if (!cs->is_object()) return bad("cooldowns not an object");
      for (const auto& kv : cs->get_object()) {
        auto k = action_index.find(std::string_view(kv.key()));
        if (k == action_index.end()) return bad(fmt::format("unknown action \"{}\"", std::string_view(kv.key())));
        if (!kv.value().is_object()) return bad("cooldown not an object");
        for (const auto& target : kv.value().get_object()) {
          auto t = ms_of(target.value());
          if (!time_ok(t)) return bad("cooldown time");
          next_done[k->second][std::string(target.key())] = FromWallMs(*t, now, wall);
        }
      }
    }
    groups = std::move(next_groups);
    alarm_state = std::move(next_alarms);
    last_done = std::move(next_done);
    return Status::Ok();
  }
};

Engine::Engine(std::unique_ptr<EngineImpl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options, std::vector<GroupSpec> groups,
                                             std::vector<AlarmPolicy> alarms, std::vector<ActionPolicy> actions) {
  auto impl = std::make_unique<EngineImpl>();
  impl->options = options;
  impl->clock = options.clock ? options.clock : &RealClock();
  for (GroupSpec& g : groups) {
    if (g.name.empty()) return InvalidArgument("a group needs a name");
    const std::string name = g.name;
    GroupRuntime rt;
    rt.size = std::max(std::max(g.min_size, 0), std::min(g.initial_size, std::max(g.max_size, 0)));  // validated below
    rt.spec = std::move(g);
    if (!impl->groups.emplace(name, std::move(rt)).second) {
      return InvalidArgument(fmt::format("group \"{}\" appears twice", name));
    }
  }
  for (size_t k = 0; k < alarms.size(); ++k) {
    if (alarms[k].name.empty()) return InvalidArgument("an alarm needs a name");
    if (!impl->alarm_index.emplace(alarms[k].name, k).second) {
      return InvalidArgument(fmt::format("alarm \"{}\" appears twice", alarms[k].name));
    }
  }
  for (size_t k = 0; k < actions.size(); ++k) {
    if (actions[k].name.empty()) return InvalidArgument("an action needs a name");
    if (!impl->action_index.emplace(actions[k].name, k).second) {
      return InvalidArgument(fmt::format("action \"{}\" appears twice", actions[k].name));
    }
  }
  impl->alarms = std::move(alarms);
  impl->actions = std::move(actions);
  impl->alarm_state.resize(impl->alarms.size());
  impl->last_done.resize(impl->actions.size());
  QCLOUD_RETURN_IF_ERROR(impl->Validate());
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

void Engine::Observe(std::span<const MetricSample> samples) { impl_->Observe(samples); }

Status Engine::SetInstances(std::string_view group, std::span<const InstanceInfo> instances) {
  auto g = impl_->groups.find(group);
  if (g == impl_->groups.end()) return Status(Errc::kNotFound, fmt::format("unknown group \"{}\"", group));
  std::map<std::string, InstanceData, std::less<>> next;
  for (const InstanceInfo& info : instances) {
    if (next.contains(info.name)) continue;  // named twice: the first counts
    auto old = g->second.instances.find(info.name);
    InstanceData d = old != g->second.instances.end() ? std::move(old->second) : InstanceData{};
    d.started = info.started;
    d.started_known = true;
    next[info.name] = std::move(d);
  }
  impl_->instance_count -= g->second.instances.size();
  impl_->instance_count += next.size();
  g->second.instances = std::move(next);
  return Status::Ok();
}

std::vector<Decision> Engine::Tick() { return impl_->Tick(); }

Result<int> Engine::Size(std::string_view group) const {
  auto g = impl_->groups.find(group);
  if (g == impl_->groups.end()) return Status(Errc::kNotFound, fmt::format("unknown group \"{}\"", group));
  return g->second.size;
}

Status Engine::SetSize(std::string_view group, int size) {
  auto g = impl_->groups.find(group);
  if (g == impl_->groups.end()) return Status(Errc::kNotFound, fmt::format("unknown group \"{}\"", group));
  g->second.size = std::clamp(size, g->second.spec.min_size, g->second.spec.max_size);
  return Status::Ok();
}

Result<AlarmState> Engine::State(std::string_view alarm, std::string_view instance) const {
  auto k = impl_->alarm_index.find(alarm);
  if (k == impl_->alarm_index.end()) return Status(Errc::kNotFound, fmt::format("unknown alarm \"{}\"", alarm));
  const auto& states = impl_->alarm_state[k->second];
  auto it = states.find(instance);
  return it == states.end() ? AlarmState::kOk : it->second.state;
}

Result<bool> Engine::Predicting(std::string_view group) const {
  auto g = impl_->groups.find(group);
  if (g == impl_->groups.end()) return Status(Errc::kNotFound, fmt::format("unknown group \"{}\"", group));
  return g->second.predict.active;
}

std::vector<Decision> Engine::Decisions() const { return {impl_->recent.begin(), impl_->recent.end()}; }
EngineStats Engine::stats() const { return impl_->st; }
std::string Engine::SaveState() const { return impl_->Save(); }
Status Engine::RestoreState(std::string_view json) { return impl_->Restore(json); }

}  // namespace qcloud::sched
