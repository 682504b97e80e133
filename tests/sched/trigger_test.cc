#include "qcloud/sched/trigger.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "qcloud/testing/doctest_helpers.h"
#include "trace_sim.h"

namespace qcloud::sched {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

// A group "web" of `n` warm instances reporting `metric`.
struct Rig {
  ManualClock clock;
  std::unique_ptr<Engine> engine;
  int instances = 4;

  Rig(std::vector<GroupSpec> groups, std::vector<AlarmPolicy> alarms, std::vector<ActionPolicy> actions) {
    engine = REQUIRE_VALUE(Engine::Open({.clock = &clock}, std::move(groups), std::move(alarms), std::move(actions)));
  }
  // Every instance reports `v` (or per-instance values), then a tick 5 s later.
  std::vector<Decision> Step(double v, const std::string& metric = "cpu") {
    std::vector<MetricSample> s;
    for (int i = 0; i < instances; ++i) s.push_back({"web", "web-" + std::to_string(i), metric, v});
    engine->Observe(s);
    clock.Advance(seconds(5));
    return engine->Tick();
  }
  // Steps for `d` at value v; every decision made.
  std::vector<Decision> Hold(double v, std::chrono::milliseconds d) {
    std::vector<Decision> all;
    for (auto t = std::chrono::milliseconds(0); t < d; t += seconds(5)) {
      for (Decision& x : Step(v)) all.push_back(std::move(x));
    }
    return all;
  }
  int Size() { return REQUIRE_VALUE(engine->Size("web")); }
  AlarmState State(const std::string& alarm) { return REQUIRE_VALUE(engine->State(alarm)); }
};

GroupSpec Web(int min = 2, int max = 10, int initial = 4) {
  return {.name = "web", .min_size = min, .max_size = max, .initial_size = initial, .warmup = seconds(0)};
}
AlarmPolicy CpuHigh(double threshold = 0.8, std::chrono::milliseconds duration = minutes(3), double hysteresis = 0) {
  return {.name = "cpu-high", .group = "web", .metric = "cpu", .window = minutes(1), .threshold = threshold,
          .duration = duration, .hysteresis = hysteresis};
}

TEST_CASE("sched alarm goes ok pending firing resolved ok") {
  Rig r({Web()}, {CpuHigh()}, {});
  CHECK(r.State("cpu-high") == AlarmState::kOk);
  r.Hold(0.5, minutes(2));  // the window holds only low samples now
  CHECK(r.State("cpu-high") == AlarmState::kOk);
  r.Hold(0.99, minutes(1));  // the 1-minute average crosses 0.8 within the minute
  CHECK(r.State("cpu-high") == AlarmState::kPending);
  r.Hold(0.99, minutes(2));
  CHECK(r.State("cpu-high") == AlarmState::kPending);  // not yet 3 minutes past the crossing
  r.Hold(0.99, minutes(1) + seconds(5));
  CHECK(r.State("cpu-high") == AlarmState::kFiring);
  // The 1-minute average sinks under 0.8 within a few ticks: resolved, then ok.
  int ticks = 0;
  while (r.State("cpu-high") == AlarmState::kFiring && ticks < 12) {
    r.Step(0.1);
    ++ticks;
  }
  CHECK(ticks > 1);
  CHECK(r.State("cpu-high") == AlarmState::kResolved);
  r.Step(0.1);
  CHECK(r.State("cpu-high") == AlarmState::kOk);
}

TEST_CASE("sched alarm pending falls back to ok when the condition breaks") {
  Rig r({Web()}, {CpuHigh(0.8, minutes(3))}, {});
  r.Hold(0.99, minutes(2));
  CHECK(r.State("cpu-high") == AlarmState::kPending);
  r.Hold(0.0, minutes(1));
  CHECK(r.State("cpu-high") == AlarmState::kOk);
}

TEST_CASE("sched scale out by count and percent within max and cooldown") {
  SUBCASE("count") {
    Rig r({Web(2, 10, 4)}, {CpuHigh(0.8, seconds(0))},
          {{.name = "add", .alarm = "cpu-high", .kind = ActionKind::kScaleOut, .adjustment = 4, .cooldown = minutes(5)}});
    auto d = r.Step(0.95);
    REQUIRE(d.size() == 1);
    CHECK(d[0].from == 4);
    CHECK(d[0].to == 8);
    CHECK(d[0].kind == ActionKind::kScaleOut);
    CHECK(d[0].explanation.find("alarm cpu-high: avg(cpu) over 1m of 4 instances = 0.95") == 0);
    CHECK(d[0].explanation.find("scale_out by 4: 4 -> 8") != std::string::npos);
    // Still firing: nothing for 5 minutes (cooldown), then once more, clamped to max.
    auto more = r.Hold(0.95, minutes(5) - seconds(5));
    CHECK(more.empty());
    more = r.Step(0.95);
    REQUIRE(more.size() == 1);
    CHECK(more[0].to == 10);
    CHECK(more[0].explanation.find("scale_out by 4 -> 12 clamped to [2, 10]: 8 -> 10") != std::string::npos);
    // At max: no more decisions, however long it fires.
    CHECK(r.Hold(0.95, minutes(20)).empty());
    CHECK(r.Size() == 10);
    CHECK(r.engine->stats().suppressed > 0);
  }
  SUBCASE("percent rounds up, at least one") {
    Rig r({Web(1, 100, 10)}, {CpuHigh(0.8, seconds(0))},
          {{.name = "grow", .alarm = "cpu-high", .kind = ActionKind::kScaleOut, .adjustment_type = Adjustment::kPercent,
            .adjustment = 25, .cooldown = minutes(1)}});
    auto d = r.Step(0.9);
    REQUIRE(d.size() == 1);
    CHECK(d[0].to == 13);  // ceil(10 * 0.25) = 3
    r.Hold(0.9, minutes(1));
    CHECK(r.Size() == 17);  // ceil(13 * 0.25) = 4
  }
}

TEST_CASE("sched scale in stops at min and set size is exact") {
  AlarmPolicy low{.name = "cpu-low", .group = "web", .metric = "cpu", .comparison = Comparison::kLess,
                  .threshold = 0.2, .duration = seconds(0)};
  Rig r({Web(2, 10, 5)}, {low},
        {{.name = "shrink", .alarm = "cpu-low", .kind = ActionKind::kScaleIn, .adjustment = 2, .cooldown = minutes(1)}});
  r.Hold(0.05, minutes(10));
  CHECK(r.Size() == 2);
  Rig s({Web(2, 10, 5)}, {CpuHigh(0.8, seconds(0))},
        {{.name = "burst", .alarm = "cpu-high", .kind = ActionKind::kSetSize, .adjustment = 8}});
  auto d = s.Step(0.9);
  REQUIRE(d.size() == 1);
  CHECK(d[0].to == 8);
  CHECK(d[0].kind == ActionKind::kSetSize);
}

TEST_CASE("sched flapping input makes no oscillation") {
  // Out at > 0.8 for 1 min, in at < 0.3 for 1 min; the metric jumps between
  // 0.1 and 0.95 every 15 s: neither condition holds for a minute.
  AlarmPolicy high = CpuHigh(0.8, minutes(1));
  high.window = seconds(10);
  AlarmPolicy low{.name = "cpu-low", .group = "web", .metric = "cpu", .window = seconds(10),
                  .comparison = Comparison::kLess, .threshold = 0.3, .duration = minutes(1)};
  Rig r({Web(2, 10, 4)}, {high, low},
        {{.name = "out", .alarm = "cpu-high", .kind = ActionKind::kScaleOut, .adjustment = 1, .cooldown = minutes(3)},
         {.name = "in", .alarm = "cpu-low", .kind = ActionKind::kScaleIn, .adjustment = 1, .cooldown = minutes(3)}});
  std::vector<Decision> all;
  for (int k = 0; k < 240; ++k) {  // 20 minutes
    for (Decision& d : r.Step((k / 3) % 2 == 0 ? 0.1 : 0.95)) all.push_back(d);
  }
  CHECK(all.empty());
  CHECK(r.Size() == 4);
}

TEST_CASE("sched hysteresis keeps an alarm firing near the threshold") {
  Rig r({Web()}, {CpuHigh(0.8, seconds(0), 0.1)}, {});
  r.Hold(0.9, minutes(1));
  CHECK(r.State("cpu-high") == AlarmState::kFiring);
  r.Hold(0.75, minutes(2));  // under the threshold, above 0.8 - 0.1
  CHECK(r.State("cpu-high") == AlarmState::kFiring);
  r.Hold(0.65, minutes(2));
  CHECK(r.State("cpu-high") != AlarmState::kFiring);
}

TEST_CASE("sched warm-up instances are left out of the metric") {
  Rig r({{.name = "web", .min_size = 1, .max_size = 10, .initial_size = 2, .warmup = minutes(2)}}, {CpuHigh(0.8, seconds(0))}, {});
  const MonoTime t0 = r.clock.MonotonicNow();
  std::vector<InstanceInfo> in = {{"web-0", t0 - minutes(10)}, {"web-1", t0}};
  REQUIRE_OK(r.engine->SetInstances("web", in));
  // The new one boots at 100% CPU; the old one idles.
  for (int k = 0; k < 12; ++k) {
    std::vector<MetricSample> s = {{"web", "web-0", "cpu", 0.3}, {"web", "web-1", "cpu", 1.0}};
    r.engine->Observe(s);
    r.clock.Advance(seconds(5));
    r.engine->Tick();
  }
  CHECK(r.State("cpu-high") == AlarmState::kOk);
  for (int k = 0; k < 24; ++k) {  // past the warm-up, web-1 counts
    std::vector<MetricSample> s = {{"web", "web-0", "cpu", 0.9}, {"web", "web-1", "cpu", 1.0}};
    r.engine->Observe(s);
    r.clock.Advance(seconds(5));
    r.engine->Tick();
  }
  CHECK(r.State("cpu-high") == AlarmState::kFiring);
}

TEST_CASE("sched NaN samples are ignored and counted") {
  Rig r({Web()}, {CpuHigh(0.8, seconds(0))}, {});
  r.Step(std::nan(""));
  r.Step(HUGE_VAL);
  CHECK(r.engine->stats().nan_samples == 8);
  CHECK(r.engine->stats().samples == 0);
  CHECK(r.State("cpu-high") == AlarmState::kOk);
}

TEST_CASE("sched per-instance alarms migrate and notify per instance and triggers chain") {
  AlarmPolicy hot{.name = "hot", .group = "web", .metric = "cpu", .window = seconds(30), .threshold = 0.95,
                  .duration = seconds(0), .per_instance = true};
  Rig r({Web()}, {hot},
        {{.name = "move", .alarm = "hot", .kind = ActionKind::kMigrate},
         {.name = "page", .alarm = "hot", .kind = ActionKind::kTrigger, .trigger = "tell"},
         {.name = "tell", .alarm = "hot", .kind = ActionKind::kNotify}});
  std::vector<MetricSample> s = {{"web", "web-0", "cpu", 0.5}, {"web", "web-1", "cpu", 0.99}};
  r.engine->Observe(s);
  r.clock.Advance(seconds(5));
  auto d = r.engine->Tick();
  // move (migrate web-1), page (trigger tell), tell via page; tell's own
  // turn finds it done for web-1 within its cooldown.
  REQUIRE(d.size() == 3);
  for (const Decision& x : d) CHECK(x.instance == "web-1");
  CHECK(d[0].kind == ActionKind::kMigrate);
  CHECK(d[1].kind == ActionKind::kTrigger);
  CHECK(d[1].trigger == "tell");
  CHECK(d[2].kind == ActionKind::kNotify);
  CHECK(d[2].explanation.find("triggered by page") != std::string::npos);
  CHECK(REQUIRE_VALUE(r.engine->State("hot", "web-1")) == AlarmState::kFiring);
  CHECK(REQUIRE_VALUE(r.engine->State("hot", "web-0")) == AlarmState::kOk);
  CHECK(DecisionToJson(d[0]).find("\"kind\":\"migrate\"") != std::string::npos);
  // Still firing: nothing more until the cooldown (5 min) has passed.
  int again = 0;
  for (int k = 0; k < 59; ++k) {
    r.engine->Observe(s);
    r.clock.Advance(seconds(5));
    again += static_cast<int>(r.engine->Tick().size());
  }
  CHECK(again == 0);
  r.engine->Observe(s);
  r.clock.Advance(seconds(5));
  CHECK(r.engine->Tick().size() == 3);
}

TEST_CASE("sched invalid policies are refused at load") {
  auto open = [](std::vector<GroupSpec> g, std::vector<AlarmPolicy> a, std::vector<ActionPolicy> p,
                 std::vector<std::string> metrics = {}) {
    return Engine::Open({.metrics = std::move(metrics)}, std::move(g), std::move(a), std::move(p)).status();
  };
  CHECK_ERRC(open({Web(5, 2, 3)}, {}, {}), Errc::kInvalidArgument);  // min > max
  CHECK_ERRC(open({Web(), Web()}, {}, {}), Errc::kInvalidArgument);
  CHECK_ERRC(open({Web()}, {CpuHigh(-1)}, {}), Errc::kInvalidArgument);  // negative threshold
  CHECK_ERRC(open({Web()}, {CpuHigh(0.8, minutes(1), -0.1)}, {}), Errc::kInvalidArgument);
  CHECK_ERRC(open({Web()}, {CpuHigh()}, {}, {"mem"}), Errc::kInvalidArgument);  // unknown metric
  CHECK_OK(open({Web()}, {CpuHigh()}, {}, {"cpu", "mem"}));
  AlarmPolicy other = CpuHigh();
  other.group = "db";
  CHECK_ERRC(open({Web()}, {other}, {}), Errc::kInvalidArgument);  // unknown group
  CHECK_ERRC(open({Web()}, {CpuHigh()}, {{.name = "x", .alarm = "nope"}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({Web()}, {CpuHigh()}, {{.name = "x", .alarm = "cpu-high", .adjustment = -1}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({Web(2, 10)}, {CpuHigh()}, {{.name = "x", .alarm = "cpu-high", .kind = ActionKind::kSetSize, .adjustment = 11}}),
             Errc::kInvalidArgument);
  // Trigger cycle: a -> b -> a.
  CHECK_ERRC(open({Web()}, {CpuHigh()},
                  {{.name = "a", .alarm = "cpu-high", .kind = ActionKind::kTrigger, .trigger = "b"},
                   {.name = "b", .alarm = "cpu-high", .kind = ActionKind::kTrigger, .trigger = "a"}}),
             Errc::kInvalidArgument);
  CHECK_ERRC(open({Web()}, {CpuHigh()}, {{.name = "a", .alarm = "cpu-high", .kind = ActionKind::kTrigger, .trigger = "a"}}),
             Errc::kInvalidArgument);
  GroupSpec tt = Web();
  tt.target_tracking = TargetTracking{.metric = "cpu", .target = 0};
  CHECK_ERRC(open({tt}, {}, {}), Errc::kInvalidArgument);
}

// The HPA's rule, written out independently: desired = ceil(current *
// value / target) outside the tolerance; scale-in to the highest
// recommendation of the last 5 minutes; scale-up by at most max(4, 100%)
// per 15 s; [min, max].
TEST_CASE("sched target tracking equals the HPA rule on a replayed trace") {
  GroupSpec g = Web(1, 50, 3);
  g.target_tracking = TargetTracking{.metric = "cpu", .target = 0.5};
  Rig r({g}, {}, {});
  // A trace: per 5 s tick, the total load (in instance-CPUs); each
  // instance's cpu = load / size.
  std::vector<double> load;
  for (int k = 0; k < 720; ++k) {  // one hour
    const double t = k / 720.0;
    load.push_back(1.0 + 9.0 * std::max(0.0, std::sin(t * 3.14159 * 2)) + (k % 7) * 0.05);
  }
  int size = 3;
  std::vector<std::pair<int, int>> recs;  // (tick, recommendation)
  std::vector<std::pair<int, int>> ups;   // (tick, delta)
  int mismatches = 0, changes = 0;
  for (int k = 0; k < static_cast<int>(load.size()); ++k) {
    const double v = load[static_cast<size_t>(k)] / size;
    r.instances = size;
    std::vector<InstanceInfo> now;  // the group as it is: removed instances report no more
    for (int i = 0; i < size; ++i) now.push_back({"web-" + std::to_string(i), r.clock.MonotonicNow() - minutes(60)});
    REQUIRE_OK(r.engine->SetInstances("web", now));
    r.Step(v);
    // The rule.
    const double ratio = v / 0.5;
    int rec = std::abs(ratio - 1) <= 0.1 ? size : static_cast<int>(std::ceil(size * ratio - 1e-9));
    recs.emplace_back(k, rec);
    int desired = rec;
    if (desired < size) {
      int highest = desired;
      for (auto& [tick, x] : recs) {
        if ((k - tick) * 5 <= 300) highest = std::max(highest, x);
      }
      desired = std::min(highest, size);
    } else if (desired > size) {
      int base = size;
      for (auto& [tick, delta] : ups) {
        if ((k - tick) * 5 < 15) base -= delta;
      }
      desired = std::min(desired, std::max(base + 4, static_cast<int>(std::ceil(base * 2.0))));
    }
    desired = std::clamp(desired, 1, 50);
    if (desired != size) {
      ups.emplace_back(k, desired - size);
      size = desired;
      ++changes;
    }
    if (r.Size() != size) ++mismatches;
  }
  CHECK(mismatches == 0);
  CHECK(changes >= 10);
  MESSAGE("HPA trace: ", changes, " changes, final size ", size);
}

TEST_CASE("sched engine state survives a restart") {
  auto make = [](ManualClock& clock) {
    return REQUIRE_VALUE(Engine::Open({.clock = &clock}, {Web(2, 10, 4)}, {CpuHigh(0.8, minutes(3))},
                                      {{.name = "add", .alarm = "cpu-high", .adjustment = 1, .cooldown = minutes(10)}}));
  };
  ManualClock clock;
  auto a = make(clock);
  std::vector<MetricSample> hot;
  for (int i = 0; i < 4; ++i) hot.push_back({"web", "web-" + std::to_string(i), "cpu", 0.9});
  for (int k = 0; k < 40; ++k) {  // 3 min 20 s: fired, scaled to 5
    a->Observe(hot);
    clock.Advance(seconds(5));
    a->Tick();
  }
  REQUIRE(REQUIRE_VALUE(a->Size("web")) == 5);
  const std::string saved = a->SaveState();
  a.reset();
  clock.Advance(minutes(1));
  auto b = make(clock);
  REQUIRE_OK(b->RestoreState(saved));
  CHECK(REQUIRE_VALUE(b->Size("web")) == 5);
  CHECK(REQUIRE_VALUE(b->State("cpu-high")) == AlarmState::kFiring);
  // The cooldown (10 min from the scale at 3 min 5 s) still holds after
  // the restart.
  int decisions = 0;
  for (int k = 0; k < 60; ++k) {  // to 9 min 20 s
    b->Observe(hot);
    clock.Advance(seconds(5));
    decisions += static_cast<int>(b->Tick().size());
  }
  CHECK(decisions == 0);
  for (int k = 0; k < 60; ++k) {  // to 14 min 20 s
    b->Observe(hot);
    clock.Advance(seconds(5));
    decisions += static_cast<int>(b->Tick().size());
  }
  CHECK(decisions == 1);
  CHECK_ERRC(b->RestoreState("{"), Errc::kInvalidArgument);
  CHECK_ERRC(b->RestoreState(R"({"version":1,"groups":{"db":{"size":1}},"alarms":{}})"), Errc::kInvalidArgument);
  CHECK(REQUIRE_VALUE(b->Size("web")) == 6);  // a refused state changes nothing
}

TEST_CASE("sched predictive learns a season scales ahead and falls back when wrong") {
  GroupSpec g = Web(1, 500, 20);
  g.target_tracking = TargetTracking{.metric = "cpu", .target = 0.5};
  g.predictive = Predictive{.season = minutes(60), .bucket = minutes(5), .lead = minutes(10)};
  Rig r({g}, {}, {});
  // Load (instance-CPUs) at minute m of the hour: 10, then 40 from minute 30.
  auto load_at = [](int second) { return (second / 60) % 60 < 30 ? 10.0 : 40.0; };
  int second = 0;
  auto run = [&](int seconds_to_run, const std::function<double(int)>& load) {
    for (int end = second + seconds_to_run; second < end; second += 5) {
      const int size = r.Size();
      r.instances = size;
      std::vector<InstanceInfo> now;
      for (int i = 0; i < size; ++i) now.push_back({"web-" + std::to_string(i), r.clock.MonotonicNow() - minutes(60)});
      REQUIRE_OK(r.engine->SetInstances("web", now));
      r.Step(load(second) / size);
    }
  };
  run(3600, load_at);
  CHECK(REQUIRE_VALUE(r.engine->Predicting("web")));
  // The next hour: by minute 25, ahead of the ramp at 30, the group is
  // already sized for it (40 / 0.5 = 80); reactive alone would be at 20.
  run(25 * 60, load_at);
  CHECK(r.Size() >= 80);
  bool explained = false;
  for (const Decision& d : r.engine->Decisions()) explained = explained || d.explanation.find("predictive: forecast load") != std::string::npos;
  CHECK(explained);
  // Saved and restored: the profile comes back.
  const std::string saved = r.engine->SaveState();
  Rig back({g}, {}, {});
  back.clock.Advance(r.clock.MonotonicNow() - back.clock.MonotonicNow());
  REQUIRE_OK(back.engine->RestoreState(saved));
  auto profile = [](const std::string& state) {
    const size_t at = state.find("\"profile\":[");
    return at == std::string::npos ? std::string() : state.substr(at, state.find(']', at) - at);
  };
  CHECK(profile(saved).size() > 20);
  CHECK(profile(back.engine->SaveState()) == profile(saved));
  // Then the load stops following the profile: the forecast is dropped.
  run(40 * 60, [](int) { return 150.0; });
  CHECK_FALSE(REQUIRE_VALUE(r.engine->Predicting("web")));
}

// The trace of tests/sched/data (four days) in the three modes.
TEST_CASE("sched trace replay: predictive scales ahead of the daily ramps") {
  const auto trace = sim::LoadTrace(QCLOUD_SCHED_TRACE);
  REQUIRE(trace.size() == 1152);
  sim::Result res[3];
  for (sim::Mode m : {sim::Mode::kReactive, sim::Mode::kTargetTracking, sim::Mode::kPredictive}) {
    const sim::Result r = sim::Replay(trace, m);
    MESSAGE(std::string(sim::ModeName(m)), ": ", r.actions, " actions, ", r.slo_minutes, " SLO minutes (", r.slo_minutes_after_day1,
            " after day 1), ", r.instance_hours, " instance-hours, peak ", r.peak_size);
    res[static_cast<int>(m)] = r;
  }
  const sim::Result& reactive = res[0];
  const sim::Result& tracking = res[1];
  const sim::Result& predictive = res[2];
  // Day 1 is learned, not predicted: from day 2 on, the forecast must pay.
  CHECK(predictive.slo_minutes_after_day1 < tracking.slo_minutes_after_day1);
  CHECK(predictive.slo_minutes_after_day1 < reactive.slo_minutes_after_day1);
  CHECK(tracking.slo_minutes < reactive.slo_minutes);
  // Not by running everything all the time.
  CHECK(predictive.instance_hours < 1.3 * tracking.instance_hours);
}
}  // namespace
}  // namespace qcloud::sched

namespace qcloud::sched {
namespace {

TEST_CASE("sched review fixes: huge values, adjustments, duplicates, restored cooldowns and times") {
  GroupSpec g = Web(1, 20, 10);
  g.target_tracking = TargetTracking{.metric = "cpu", .target = 0.5};
  Rig r({g}, {}, {});
  r.instances = 1;
  auto d = r.Step(1e12);  // must not wrap to a scale-in
  REQUIRE(d.size() == 1);
  CHECK(d[0].to > 10);
  CHECK_ERRC(Engine::Open({}, {Web()}, {CpuHigh()}, {{.name = "x", .alarm = "cpu-high", .adjustment = 1e10}}).status(),
             Errc::kInvalidArgument);
  CHECK_ERRC(Engine::Open({}, {Web()}, {CpuHigh(0.8, std::chrono::milliseconds(int64_t{1} << 52))}, {}).status(),
             Errc::kInvalidArgument);
  CHECK_ERRC(Engine::Open({}, {Web(5, 3, 4)}, {}, {}).status(), Errc::kInvalidArgument);

  // A name given twice keeps its samples.
  Rig dup({Web()}, {CpuHigh(0.8, seconds(0))}, {});
  std::vector<InstanceInfo> twice = {{"web-0", dup.clock.MonotonicNow() - minutes(10)},
                                     {"web-0", dup.clock.MonotonicNow() - minutes(10)}};
  std::vector<MetricSample> s = {{"web", "web-0", "cpu", 0.99}};
  dup.engine->Observe(s);
  REQUIRE_OK(dup.engine->SetInstances("web", twice));
  dup.clock.Advance(seconds(5));
  dup.engine->Tick();
  CHECK(dup.State("cpu-high") == AlarmState::kFiring);

  // A notify's cooldown survives a restart.
  auto make = [](ManualClock& clock) {
    return REQUIRE_VALUE(Engine::Open({.clock = &clock}, {Web()}, {CpuHigh(0.8, seconds(0))},
                                      {{.name = "tell", .alarm = "cpu-high", .kind = ActionKind::kNotify,
                                        .cooldown = std::chrono::hours(1)}}));
  };
  ManualClock clock;
  auto a = make(clock);
  a->Observe(s);
  clock.Advance(seconds(5));
  CHECK(a->Tick().size() == 1);
  const std::string saved = a->SaveState();
  auto b = make(clock);
  REQUIRE_OK(b->RestoreState(saved));
  b->Observe(s);
  clock.Advance(seconds(5));
  CHECK(b->Tick().empty());
  // Times from before 100 years ago, or overflowing, are refused.
  CHECK_ERRC(b->RestoreState(R"({"version":1,"groups":{"web":{"size":3,"last_scale_ms":-9223372036854775807}},"alarms":{}})"),
             Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::sched
