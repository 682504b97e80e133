#include "qcloud/sched/placement.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::sched {
namespace {

constexpr Strategy kAll[] = {Strategy::kFirstFitDecreasing, Strategy::kBestFit, Strategy::kSpread,
                             Strategy::kDotProduct, Strategy::kLocalSearch};

std::vector<Host> Hosts(int n, double cpu, double mem, int racks = 1) {
  std::vector<Host> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({.name = "h" + std::to_string(i),
                   .capacity = {{"cpu", cpu}, {"mem", mem}},
                   .labels = {{"rack", "r" + std::to_string(i % racks)}}});
  }
  return out;
}

TEST_CASE("sched placement packs by every resource and reports what does not fit") {
  std::vector<Host> hosts = Hosts(2, 8, 32);
  std::vector<Instance> vms = {{.name = "cpu-heavy", .demand = {{"cpu", 6}, {"mem", 4}}},
                               {.name = "mem-heavy", .demand = {{"cpu", 1}, {"mem", 28}}},
                               {.name = "small", .demand = {{"cpu", 1}, {"mem", 1}}},
                               {.name = "huge", .demand = {{"cpu", 16}}},
                               {.name = "gpu", .demand = {{"gpu", 1}}}};
  for (Strategy s : kAll) {
    CAPTURE(StrategyName(s));
    Placement p = REQUIRE_VALUE(Place(hosts, vms, {.strategy = s}));
    REQUIRE_OK(Check(hosts, vms, p));
    CHECK(p.placements.size() == 3);
    REQUIRE(p.unplaced.size() == 2);
    CHECK(p.unplaced[0].name == "huge");
    CHECK(p.unplaced[0].reason == "needs cpu 16: the largest host has 8");
    CHECK(p.unplaced[1].name == "gpu");
    CHECK(p.unplaced[1].reason == "needs gpu 1: the largest host has 0");
  }
  // The three placed need 8 cpu and 33 mem: two hosts (memory).
  Placement p = REQUIRE_VALUE(Place(hosts, vms, {.strategy = Strategy::kFirstFitDecreasing}));
  CHECK(p.hosts_used == 2);
}

TEST_CASE("sched placement keeps anti-affinity per host and per rack") {
  std::vector<Host> hosts = Hosts(6, 16, 64, 3);  // racks r0 r1 r2, two hosts each
  std::vector<Instance> vms;
  for (int i = 0; i < 4; ++i) {
    vms.push_back({.name = "db" + std::to_string(i), .demand = {{"cpu", 1}}, .anti_affinity = "db", .spread_by = "rack"});
  }
  for (int i = 0; i < 7; ++i) {
    vms.push_back({.name = "web" + std::to_string(i), .demand = {{"cpu", 1}}, .anti_affinity = "web"});
  }
  for (Strategy s : kAll) {
    CAPTURE(StrategyName(s));
    Placement p = REQUIRE_VALUE(Place(hosts, vms, {.strategy = s}));
    REQUIRE_OK(Check(hosts, vms, p));
    // Three racks: the fourth db replica has nowhere to go; six hosts: the seventh web neither.
    CHECK(p.placements.size() == 9);
    REQUIRE(p.unplaced.size() == 2);
    CHECK(p.unplaced[0].name == "db3");
    CHECK(p.unplaced[0].reason.find("anti-affinity group \"db\": every rack with room holds one already") == 0);
    CHECK(p.unplaced[1].name == "web6");
    CHECK(p.unplaced[1].reason == "anti-affinity group \"web\": every host with room holds one already");
  }
}

TEST_CASE("sched placement puts an affinity group on one host and honours host labels and headroom") {
  std::vector<Host> hosts = Hosts(3, 10, 10);
  hosts[2].labels["ssd"] = "yes";
  std::vector<Instance> vms = {{.name = "app", .demand = {{"cpu", 4}}, .affinity = "pair"},
                               {.name = "cache", .demand = {{"cpu", 4}}, .affinity = "pair"},
                               {.name = "fast", .demand = {{"cpu", 1}}, .host_labels = {{"ssd", "yes"}}},
                               {.name = "nvme", .demand = {{"cpu", 1}}, .host_labels = {{"nvme", "yes"}}}};
  for (Strategy s : kAll) {
    CAPTURE(StrategyName(s));
    Placement p = REQUIRE_VALUE(Place(hosts, vms, {.strategy = s}));
    REQUIRE_OK(Check(hosts, vms, p));
    CHECK(p.placements.at("app") == p.placements.at("cache"));
    CHECK(p.placements.at("fast") == "h2");
    REQUIRE(p.unplaced.size() == 1);
    CHECK(p.unplaced[0].reason == "no host has the labels nvme=yes");
    // With 25% headroom a host offers 7.5 cpu: the pair (8) no longer fits.
    Placement q = REQUIRE_VALUE(Place(hosts, vms, {.strategy = s, .headroom = 0.25}));
    REQUIRE_OK(Check(hosts, vms, q, 0.25));
    CHECK(!q.placements.contains("app"));
    CHECK(!q.placements.contains("cache"));
    CHECK(q.unplaced.size() == 3);
  }
}

TEST_CASE("sched placement refuses invalid input with the offending name") {
  std::vector<Host> hosts = Hosts(1, 4, 4);
  auto place = [&](std::vector<Instance> vms) { return Place(hosts, vms).status(); };
  CHECK_ERRC(place({{.name = "a", .demand = {{"cpu", -1}}}}), Errc::kInvalidArgument);
  CHECK_ERRC(place({{.name = "a", .demand = {{"cpu", std::nan("")}}}}), Errc::kInvalidArgument);
  CHECK_ERRC(place({{.name = "a"}, {.name = "a"}}), Errc::kInvalidArgument);
  CHECK_ERRC(place({{.name = ""}}), Errc::kInvalidArgument);
  CHECK_ERRC(place({{.name = "a", .spread_by = "rack"}}), Errc::kInvalidArgument);
  CHECK_ERRC(place({{.name = "a", .anti_affinity = "g", .spread_by = "rack"}, {.name = "b", .anti_affinity = "g"}}),
             Errc::kInvalidArgument);
  CHECK_ERRC(place({{.name = "a", .anti_affinity = "g", .affinity = "x"}, {.name = "b", .anti_affinity = "g", .affinity = "x"}}),
             Errc::kInvalidArgument);
  std::vector<Instance> many(1);
  many[0].name = "wide";
  for (size_t i = 0; i <= kMaxResources; ++i) many[0].demand["r" + std::to_string(i)] = 1;
  CHECK_ERRC(place(many), Errc::kInvalidArgument);
  CHECK_ERRC(Place(hosts, {}, {.headroom = 1.0}).status(), Errc::kInvalidArgument);
  std::vector<Host> twice = {{.name = "h"}, {.name = "h"}};
  CHECK_ERRC(Place(twice, {}).status(), Errc::kInvalidArgument);
  CHECK_ERRC(ParseStrategy("random").status(), Errc::kInvalidArgument);
  CHECK(REQUIRE_VALUE(ParseStrategy("dot-product")) == Strategy::kDotProduct);
}

TEST_CASE("sched Check finds each kind of violation") {
  std::vector<Host> hosts = Hosts(2, 4, 4, 2);
  std::vector<Instance> vms = {{.name = "a", .demand = {{"cpu", 3}}, .anti_affinity = "g"},
                               {.name = "b", .demand = {{"cpu", 3}}, .anti_affinity = "g"}};
  Placement ok{.placements = {{"a", "h0"}, {"b", "h1"}}, .unplaced = {}, .hosts_used = 2};
  REQUIRE_OK(Check(hosts, vms, ok));
  Placement crowded{.placements = {{"a", "h0"}, {"b", "h0"}}, .unplaced = {}, .hosts_used = 1};
  CHECK_ERRC(Check(hosts, vms, crowded), Errc::kInvalidArgument);
  vms[1].anti_affinity = "";
  CHECK_ERRC(Check(hosts, vms, crowded), Errc::kInvalidArgument);  // capacity: 6 > 4
  Placement missing{.placements = {{"a", "h0"}}, .unplaced = {}, .hosts_used = 1};
  CHECK_ERRC(Check(hosts, vms, missing), Errc::kInvalidArgument);
  Placement nowhere{.placements = {{"a", "h9"}, {"b", "h1"}}, .unplaced = {}, .hosts_used = 2};
  CHECK_ERRC(Check(hosts, vms, nowhere), Errc::kInvalidArgument);
}

// Seeded random problems: no strategy ever violates a constraint; on small
// ones, whenever an exhaustive search finds a placement of everything,
// local search places everything too (instances small against hosts).
struct Random {
  std::vector<Host> hosts;
  std::vector<Instance> vms;
};

Random Generate(uint64_t seed, int n_hosts, int n_vms, bool small) {
  std::mt19937_64 rng(seed);
  auto uni = [&](double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); };
  Random r;
  for (int i = 0; i < n_hosts; ++i) {
    r.hosts.push_back({.name = "h" + std::to_string(i),
                       .capacity = {{"cpu", std::round(uni(16, 64))}, {"mem", std::round(uni(32, 256))}, {"disk", 1000}},
                       .labels = {{"rack", "r" + std::to_string(rng() % 3)}}});
  }
  for (int i = 0; i < n_vms; ++i) {
    const double scale = small ? 0.15 : 0.5;
    Instance in{.name = "i" + std::to_string(i),
                .demand = {{"cpu", std::round(uni(1, 16 * scale * 4))}, {"mem", std::round(uni(1, 64 * scale * 4))},
                           {"disk", std::round(uni(0, 100))}}};
    if (rng() % 4 == 0) in.anti_affinity = "svc" + std::to_string(rng() % 3);
    r.vms.push_back(std::move(in));
  }
  // spread_by must agree within a group: groups svc0 spread by rack.
  for (Instance& in : r.vms) {
    if (in.anti_affinity == "svc0") in.spread_by = "rack";
  }
  return r;
}

bool ExactFits(const Random& r) {
  // Depth-first over instances, each to any host (constraints of the library).
  std::vector<std::string> at(r.vms.size());
  std::function<bool(size_t)> go = [&](size_t i) -> bool {
    if (i == r.vms.size()) return true;
    for (const Host& h : r.hosts) {
      at[i] = h.name;
      Placement p;
      for (size_t k = 0; k <= i; ++k) p.placements[r.vms[k].name] = at[k];
      std::vector<Instance> prefix(r.vms.begin(), r.vms.begin() + static_cast<long>(i) + 1);
      if (Check(r.hosts, prefix, p).ok() && go(i + 1)) return true;
    }
    return false;
  };
  return go(0);
}

TEST_CASE("sched placement on seeded random problems never violates a constraint") {
  int exact_cases = 0;
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    const bool small_case = seed <= 30;
    Random r = small_case ? Generate(seed, 3, 6, false) : Generate(seed, 40, 300, seed % 2 == 0);
    for (Strategy s : kAll) {
      CAPTURE(seed);
      CAPTURE(StrategyName(s));
      Placement p = REQUIRE_VALUE(Place(r.hosts, r.vms, {.strategy = s}));
      REQUIRE_OK(Check(r.hosts, r.vms, p));
      CHECK(p.placements.size() + p.unplaced.size() == r.vms.size());
      if (p.unplaced.empty()) CHECK(p.hosts_used >= LowerBound(r.hosts, r.vms));
    }
    if (small_case) {
      Random easy = Generate(seed + 1000, 3, 6, true);
      if (ExactFits(easy)) {
        ++exact_cases;
        Placement p = REQUIRE_VALUE(Place(easy.hosts, easy.vms));
        CHECK(p.unplaced.empty());
      }
    }
  }
  CHECK(exact_cases >= 20);
}

TEST_CASE("sched local search uses no more hosts than first-fit-decreasing") {
  int fewer = 0;
  for (uint64_t seed = 1; seed <= 10; ++seed) {
    Random r = Generate(seed, 200, 300, false);
    Placement ffd = REQUIRE_VALUE(Place(r.hosts, r.vms, {.strategy = Strategy::kFirstFitDecreasing}));
    Placement ls = REQUIRE_VALUE(Place(r.hosts, r.vms, {.strategy = Strategy::kLocalSearch}));
    REQUIRE_OK(Check(r.hosts, r.vms, ls));
    CAPTURE(seed);
    CHECK(ls.placements.size() == ffd.placements.size());  // the same ones left out: svc0's past three racks
    CHECK(ls.hosts_used <= ffd.hosts_used);
    fewer += ls.hosts_used < ffd.hosts_used;
    CHECK(ls.hosts_used >= LowerBound(r.hosts, r.vms));
  }
  CHECK(fewer >= 5);  // and fewer on most of them
}

TEST_CASE("sched LowerBound is the per-resource bound over the largest hosts") {
  std::vector<Host> hosts = Hosts(10, 10, 100);
  std::vector<Instance> vms;
  for (int i = 0; i < 25; ++i) vms.push_back({.name = "i" + std::to_string(i), .demand = {{"cpu", 1}, {"mem", 15}}});
  CHECK(LowerBound(hosts, vms) == 4);  // mem: 375 / 100
  hosts[0].capacity["mem"] = 400;
  CHECK(LowerBound(hosts, vms) == 3);  // cpu: 25 / 10
  CHECK(LowerBound(hosts, vms, 0.5) == 5);  // cpu: 25 / 5
}

Placement Apply(const std::map<std::string, std::string>& current, const RebalancePlan& plan) {
  Placement p;
  p.placements = current;
  for (const Migration& m : plan.moves) {
    REQUIRE(p.placements.at(m.instance) == m.from);
    p.placements[m.instance] = m.to;
  }
  return p;
}

TEST_CASE("sched rebalance frees hosts and lowers the peak within constraints") {
  std::vector<Host> hosts = Hosts(4, 10, 100);
  std::vector<Instance> vms = {{.name = "a", .demand = {{"cpu", 6}}},
                               {.name = "b", .demand = {{"cpu", 3}}},
                               {.name = "c", .demand = {{"cpu", 3}}},
                               {.name = "d", .demand = {{"cpu", 2}}}};
  std::map<std::string, std::string> current = {{"a", "h0"}, {"b", "h1"}, {"c", "h2"}, {"d", "h3"}};
  RebalancePlan free = REQUIRE_VALUE(Rebalance(hosts, vms, current));
  CHECK(free.hosts_before == 4);
  CHECK(free.hosts_after == 2);
  CHECK(free.moves.size() == 2);
  double freed = 0;
  for (const Migration& m : free.moves) freed += m.gain;
  CHECK(freed == 2);
  CHECK_OK(Check(hosts, vms, Apply(current, free)));
  // Bounded: one move allowed frees one host.
  RebalancePlan one = REQUIRE_VALUE(Rebalance(hosts, vms, current, {}, {.max_moves = 1}));
  CHECK(one.moves.size() == 1);

  // The peak: h0 at 9 of 10, h1 at 1.
  std::vector<Instance> hot = {{.name = "x", .demand = {{"cpu", 3}}},
                               {.name = "y", .demand = {{"cpu", 3}}},
                               {.name = "z", .demand = {{"cpu", 3}}},
                               {.name = "w", .demand = {{"cpu", 1}}}};
  std::vector<Host> two = Hosts(2, 10, 100);
  std::map<std::string, std::string> skewed = {{"x", "h0"}, {"y", "h0"}, {"z", "h0"}, {"w", "h1"}};
  RebalancePlan level = REQUIRE_VALUE(Rebalance(two, hot, skewed, {}, {.goal = RebalanceGoal::kLowerPeak}));
  REQUIRE(level.moves.size() == 1);
  CHECK(level.peak_before == doctest::Approx(0.9));
  CHECK(level.peak_after == doctest::Approx(0.6));
  CHECK(level.moves[0].gain == doctest::Approx(0.3));
  CHECK(level.moves[0].why == "peak 0.9 -> 0.6 (h0 cpu)");

  // Anti-affinity and pins hold: x and y may not share a host, z stays.
  hot[0].anti_affinity = hot[1].anti_affinity = "g";
  hot[2].pinned_host = "h0";
  std::vector<Host> three = Hosts(3, 10, 100);
  std::map<std::string, std::string> spread = {{"x", "h0"}, {"y", "h1"}, {"z", "h0"}, {"w", "h0"}};
  RebalancePlan kept = REQUIRE_VALUE(Rebalance(three, hot, spread, {}, {.goal = RebalanceGoal::kLowerPeak}));
  CHECK_FALSE(kept.moves.empty());
  CHECK_OK(Check(three, hot, Apply(spread, kept)));
  for (const Migration& m : kept.moves) {
    CHECK(m.instance != "z");
    if (m.instance == "x") CHECK(m.to != "h1");
  }
  // A current placement that already breaks a constraint is refused.
  std::map<std::string, std::string> bad = {{"x", "h0"}, {"y", "h0"}, {"z", "h1"}, {"w", "h1"}};
  CHECK_ERRC(Rebalance(two, hot, bad), Errc::kInvalidArgument);
}

TEST_CASE("sched rebalance sizes instances by their usage history") {
  // Four VMs asking 8 cpu each on four hosts of 10, using about 2.
  std::vector<Host> hosts = Hosts(4, 10, 100);
  std::vector<Instance> vms;
  std::map<std::string, std::string> current;
  std::map<std::string, std::vector<std::map<std::string, double>>> usage;
  for (int i = 0; i < 4; ++i) {
    const std::string n = "v" + std::to_string(i);
    vms.push_back({.name = n, .demand = {{"cpu", 8}}});
    current[n] = "h" + std::to_string(i);
    for (int k = 0; k < 100; ++k) usage[n].push_back({{"cpu", 1.5 + (k % 10) * 0.05}});
  }
  RebalancePlan declared = REQUIRE_VALUE(Rebalance(hosts, vms, current));
  CHECK(declared.moves.empty());  // 8 + 8 > 10
  RebalancePlan used = REQUIRE_VALUE(Rebalance(hosts, vms, current, usage));
  CHECK(used.hosts_after == 1);   // p95 of use is under 2
  CHECK(used.moves.size() == 3);
}

TEST_CASE("sched rebalance on seeded random placements keeps every constraint") {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    CAPTURE(seed);
    Random r = Generate(seed, 30, 90, true);
    Placement spread = REQUIRE_VALUE(Place(r.hosts, r.vms, {.strategy = Strategy::kSpread}));
    std::vector<Instance> running;
    for (const Instance& in : r.vms) {
      if (spread.placements.contains(in.name)) running.push_back(in);
    }
    for (RebalanceGoal goal : {RebalanceGoal::kFreeHosts, RebalanceGoal::kLowerPeak}) {
      RebalancePlan plan = REQUIRE_VALUE(Rebalance(r.hosts, running, spread.placements, {}, {.goal = goal, .max_moves = 40}));
      CHECK(plan.moves.size() <= 40);
      CHECK_OK(Check(r.hosts, running, Apply(spread.placements, plan)));
      if (goal == RebalanceGoal::kFreeHosts) {
        CHECK(plan.hosts_after <= plan.hosts_before);
      } else {
        CHECK(plan.peak_after <= plan.peak_before + 1e-9);
      }
    }
  }
}

}  // namespace
}  // namespace qcloud::sched

namespace qcloud::sched {
namespace {

TEST_CASE("sched review fixes: local search leftovers and rebalance without resources") {
  std::vector<Host> hosts = {{.name = "h0", .capacity = {{"cpu", 3}}}, {.name = "h1", .capacity = {{"cpu", 7}}}};
  std::vector<Instance> vms = {{.name = "i0", .demand = {{"cpu", 2}}, .anti_affinity = "A"},
                               {.name = "i1", .demand = {{"cpu", 3}}},
                               {.name = "i2", .demand = {{"cpu", 4}}, .anti_affinity = "A"}};
  Placement p = REQUIRE_VALUE(Place(hosts, vms));
  CHECK(p.unplaced.empty());
  REQUIRE_OK(Check(hosts, vms, p));
  std::vector<Host> bare = {{.name = "h1"}};
  std::vector<Instance> empty = {{.name = "a"}};
  RebalancePlan r = REQUIRE_VALUE(Rebalance(bare, empty, {{"a", "h1"}}, {}, {.goal = RebalanceGoal::kLowerPeak}));
  CHECK(r.moves.empty());
  CHECK_ERRC(Rebalance(bare, empty, {{"a", "h1"}}, {}, {.percentile = std::nan("")}), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::sched
