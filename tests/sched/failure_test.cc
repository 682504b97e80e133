#include "qcloud/sched/failure.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "failure_sim.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::sched {
namespace {

using std::chrono::milliseconds;

TEST_CASE("sched phi rises with silence and falls with a heartbeat") {
  ManualClock clock;
  PathMonitor mon({.clock = &clock, .acceptable_pause = milliseconds(0), .max_paths = 2});
  for (int k = 0; k < 20; ++k) {
    mon.Heartbeat("a", 0);
    mon.Heartbeat("a", 1);
    clock.Advance(milliseconds(250));
  }
  CHECK(mon.Phi("a", 0) < 1);
  CHECK_FALSE(mon.Suspects("a"));
  clock.Advance(milliseconds(1000));
  CHECK(mon.Phi("a", 0) > 8);
  CHECK(mon.Suspects("a"));
  CHECK(mon.Suspected() == std::vector<std::string>{"a"});
  // One path heard again: the peer is not suspect.
  mon.Heartbeat("a", 1);
  CHECK_FALSE(mon.Suspects("a"));
  CHECK(mon.Phi("a", 0) > 8);
  CHECK_FALSE(mon.Suspects("never"));
  mon.Heartbeat("a", 9);  // beyond max_paths: ignored
}

TEST_CASE("sched heartbeat datagrams round-trip and bad ones are refused") {
  const HeartbeatMessage m{.sender = "host-7.rack_2", .path = 2, .seq = 0x0102030405060708ULL, .sent_ms = 1700000000123};
  const std::string d = EncodeHeartbeat(m);
  CHECK(d.size() == 6 + m.sender.size() + 16);
  HeartbeatMessage back = REQUIRE_VALUE(DecodeHeartbeat(d));
  CHECK(back.sender == m.sender);
  CHECK(back.path == 2);
  CHECK(back.seq == m.seq);
  CHECK(back.sent_ms == m.sent_ms);
  CHECK_ERRC(DecodeHeartbeat(d.substr(0, d.size() - 1)), Errc::kInvalidArgument);
  CHECK_ERRC(DecodeHeartbeat(d + "x"), Errc::kInvalidArgument);
  CHECK_ERRC(DecodeHeartbeat("QHB2" + d.substr(4)), Errc::kInvalidArgument);
  std::string bad_name = d;
  bad_name[6] = ' ';
  CHECK_ERRC(DecodeHeartbeat(bad_name), Errc::kInvalidArgument);
  CHECK_ERRC(DecodeHeartbeat(""), Errc::kInvalidArgument);
}

TEST_CASE("sched suspicion reports round-trip and bad ones are refused") {
  const SuspicionReport r{.observer = "h1", .peer = "h-22", .suspect = true, .sent_ms = 1700000000000};
  const std::string d = EncodeSuspicion(r);
  SuspicionReport back = REQUIRE_VALUE(DecodeSuspicion(d));
  CHECK(back.observer == "h1");
  CHECK(back.peer == "h-22");
  CHECK(back.suspect);
  CHECK(back.sent_ms == r.sent_ms);
  CHECK_ERRC(DecodeSuspicion(d.substr(0, d.size() - 1)), Errc::kInvalidArgument);
  std::string bad = d;
  bad[4] = 2;
  CHECK_ERRC(DecodeSuspicion(bad), Errc::kInvalidArgument);
  CHECK_ERRC(DecodeSuspicion(EncodeHeartbeat({.sender = "h1"})), Errc::kInvalidArgument);
}

TEST_CASE("sched arbiter needs a quorum and ignores one partitioned observer") {
  Arbiter arb({.quorum = 3}, {"a", "b", "c", "d", "x"});
  arb.Report("x", "a", true);  // x is cut off: it suspects everyone
  arb.Report("x", "b", true);
  CHECK(arb.Dead().empty());
  arb.Report("b", "a", true);
  CHECK_FALSE(arb.IsDead("a"));
  arb.Report("c", "a", true);
  CHECK(arb.IsDead("a"));
  CHECK(arb.Dead() == std::vector<std::string>{"a"});
  arb.Report("d", "a", false);  // heard again
  CHECK_FALSE(arb.IsDead("a"));
}

sim::NetOptions Net1000() { return {.nodes = 1000, .jitter = milliseconds(100), .seed = 11}; }

TEST_CASE("sched failure detection on 1000 simulated nodes: deaths within 3 s and no false positives") {
  sim::Net net(Net1000());
  std::map<std::string, int64_t> declared;
  net.RunUntil(10'000, [&](const std::string& h, int64_t ms) { declared[h] = ms; });
  CHECK(declared.empty());  // 10 s of jitter: nobody
  const std::vector<int> victims = {3, 141, 592, 653, 999};
  for (int v : victims) net.Kill(v);
  net.RunUntil(20'000, [&](const std::string& h, int64_t ms) { declared[h] = ms; });
  REQUIRE(declared.size() == victims.size());
  int64_t worst = 0;
  for (int v : victims) {
    REQUIRE(declared.contains(sim::Net::Name(v)));
    worst = std::max(worst, declared[sim::Net::Name(v)] - 10'000);
  }
  MESSAGE("slowest detection ", worst, " ms");
  CHECK(worst <= 3000);
}

TEST_CASE("sched failure detection: a lossy path and a network plane cut are not deaths") {
  sim::NetOptions o = Net1000();
  o.loss = {0.3, 0.01, 0.0};  // the service network drops 30%
  sim::Net net(o);
  for (int n = 0; n < 100; ++n) net.Cut(n, 1, true);  // management network down for 100 hosts
  int declared = 0;
  net.RunUntil(30'000, [&](const std::string&, int64_t) { ++declared; });
  CHECK(declared == 0);
}

TEST_CASE("sched failure detection: a deaf observer is outvoted and an isolated host is dead") {
  sim::Net net(Net1000());
  net.Deafen(7, true);  // hears nobody: suspects all it watches
  std::vector<std::string> dead;
  net.RunUntil(15'000, [&](const std::string& h, int64_t) { dead.push_back(h); });
  CHECK(dead.empty());
  for (int p = 0; p < 3; ++p) net.Cut(500, p, true);  // every network of host 500 cut
  net.RunUntil(25'000, [&](const std::string& h, int64_t) { dead.push_back(h); });
  CHECK(dead == std::vector<std::string>{"h500"});
}

TEST_CASE("sched evacuation re-places a dead host's instances within constraints") {
  std::vector<Host> hosts;
  for (int i = 0; i < 4; ++i) {
    hosts.push_back({.name = "h" + std::to_string(i), .capacity = {{"cpu", 8}}, .labels = {{"rack", i < 2 ? "r0" : "r1"}}});
  }
  std::vector<Instance> vms = {
      {.name = "db-0", .demand = {{"cpu", 2}}, .anti_affinity = "db"},
      {.name = "db-1", .demand = {{"cpu", 2}}, .anti_affinity = "db"},
      {.name = "web-0", .demand = {{"cpu", 4}}},
      {.name = "big", .demand = {{"cpu", 7}}},
      {.name = "idle", .demand = {{"cpu", 1}}},
  };
  std::map<std::string, std::string> current = {
      {"db-0", "h0"}, {"db-1", "h1"}, {"web-0", "h0"}, {"big", "h2"}, {"idle", "h3"}};
  Evacuation e = REQUIRE_VALUE(PlanEvacuation(hosts, vms, current, "h0"));
  // db-0 may not join db-1 on h1; big fills h2: db-0 and web-0 go to h3 (1 + 2 + 4 <= 8).
  CHECK(e.moves.size() == 2);
  CHECK(e.moves.at("db-0") == "h3");
  CHECK(e.moves.at("web-0") != "h2");
  CHECK(e.stranded.empty());
  // Every constraint holds for the whole cluster after the moves.
  Placement after;
  for (const auto& [inst, host] : current) after.placements[inst] = host;
  for (const auto& [inst, host] : e.moves) after.placements[inst] = host;
  std::vector<Host> live(hosts.begin() + 1, hosts.end());
  CHECK_OK(Check(live, vms, after));
  // With h3 gone as well, db-0 has nowhere to go.
  current["db-0"] = "h3";
  current["web-0"] = "h3";
  Evacuation e2 = REQUIRE_VALUE(PlanEvacuation(live, vms, current, "h3"));
  REQUIRE(e2.stranded.size() >= 1);
  CHECK_ERRC(PlanEvacuation(hosts, vms, current, "nope").status(), Errc::kNotFound);
}

}  // namespace
}  // namespace qcloud::sched

namespace qcloud::sched {
namespace {

TEST_CASE("sched review fixes: arbiter votes and evacuation overcommit") {
  Arbiter arb({.quorum = 1}, {"h1", "h2", "h3"});
  arb.Report("nobody", "h3", true);  // not a member: no vote
  CHECK_FALSE(arb.IsDead("h3"));
  arb.Report("h2", "h1", true);
  REQUIRE(arb.IsDead("h1"));
  arb.Report("h1", "h3", true);  // the dead do not vote
  CHECK_FALSE(arb.IsDead("h3"));
  // A survivor that no longer fits its own host (headroom): refused, not overcommitted.
  std::vector<Host> hosts = {{.name = "h1", .capacity = {{"cpu", 10}}}, {.name = "h2", .capacity = {{"cpu", 10}}}};
  std::vector<Instance> vms = {{.name = "run", .demand = {{"cpu", 10}}}, {.name = "e", .demand = {{"cpu", 5}}}};
  CHECK_ERRC(PlanEvacuation(hosts, vms, {{"run", "h1"}, {"e", "h2"}}, "h2", {.headroom = 0.1}), Errc::kInvalidArgument);
}

}  // namespace
}  // namespace qcloud::sched
