#include "qcloud/net/planes.h"

#include <doctest/doctest.h>

#include <random>

using namespace qcloud;
using namespace qcloud::net;
using namespace std::chrono_literals;

namespace {

// Two hosts probing each other over two planes on one ManualClock; a plane
// can be cut or made lossy. Each step delivers what was sent (after 1 ms).
struct TwoHosts {
  ManualClock clock;
  PlaneMonitor a{{.clock = &clock, .host_id = 1}};
  PlaneMonitor b{{.clock = &clock, .host_id = 2}};
  bool cut[2] = {false, false};
  double loss[2] = {0, 0};
  std::mt19937 rng{7};
  std::vector<PlaneChange> a_changes;

  TwoHosts() {
    a.AddPeer(2);
    b.AddPeer(1);
  }
  bool Lost(Plane p) {
    int i = static_cast<int>(p);
    return cut[i] || std::uniform_real_distribution<double>(0, 1)(rng) < loss[i];
  }
  void Step(std::chrono::milliseconds d = 10ms) {
    for (auto [from, to] : {std::pair{&a, &b}, std::pair{&b, &a}}) {
      for (const PlaneProbe& p : from->Due()) {
        uint8_t wire[kProbeLen];
        EncodeProbe(p, wire);
        if (Lost(p.plane)) continue;
        auto req = DecodeProbe(wire);
        REQUIRE(req);
        auto ans = to->Answer(*req);
        REQUIRE(ans);
        if (Lost(ans->plane)) continue;
        EncodeProbe(*ans, wire);
        from->OnReply(*DecodeProbe(wire));
      }
    }
    clock.Advance(d);
    for (const PlaneChange& c : a.Changes()) a_changes.push_back(c);
    b.Changes();
  }
  void Run(std::chrono::milliseconds total) {
    for (auto t = 0ms; t < total; t += 10ms) Step();
  }
};

}  // namespace

TEST_CASE("net planes probe codec round trip and refusals") {
  PlaneProbe p{PlaneProbe::kReply, Plane::kStorage, 7, 9, 123456789012ull, 42};
  uint8_t wire[kProbeLen];
  EncodeProbe(p, wire);
  auto d = DecodeProbe(wire);
  REQUIRE(d);
  CHECK(d->kind == PlaneProbe::kReply);
  CHECK(d->plane == Plane::kStorage);
  CHECK(d->from == 7);
  CHECK(d->to == 9);
  CHECK(d->seq == 123456789012ull);
  CHECK(d->sent_ns == 42);
  CHECK_FALSE(DecodeProbe(std::span(wire, kProbeLen - 1)));
  for (size_t at : {0, 4, 5, 6, 7}) {
    uint8_t bad[kProbeLen];
    std::memcpy(bad, wire, kProbeLen);
    bad[at] = 0x7f;
    CHECK_MESSAGE(!DecodeProbe(bad), "byte " << at);
  }
}

TEST_CASE("net planes a cut service plane is left within 0.6 s and taken back") {
  TwoHosts net;
  net.Run(1s);
  CHECK(net.a.Active(2) == Plane::kService);
  CHECK(net.a_changes.empty());
  net.cut[0] = true;
  auto cut_at = net.clock.MonotonicNow();
  while (net.a_changes.empty() && net.clock.MonotonicNow() - cut_at < 5s) net.Step();
  REQUIRE(net.a_changes.size() == 1);
  CHECK(net.a_changes[0].plane == Plane::kStorage);
  auto took = net.clock.MonotonicNow() - cut_at;
  MESSAGE("switched after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took <= 600ms);
  CHECK_FALSE(net.a.Path(2, Plane::kService).up);
  CHECK(net.b.Active(1) == Plane::kStorage);
  // Restored: back on the service plane after recover_after replies.
  net.cut[0] = false;
  auto back_at = net.clock.MonotonicNow();
  while (net.a_changes.size() < 2 && net.clock.MonotonicNow() - back_at < 5s) net.Step();
  REQUIRE(net.a_changes.size() == 2);
  CHECK(net.a_changes[1].plane == Plane::kService);
  CHECK(net.clock.MonotonicNow() - back_at <= 500ms);
  CHECK(net.a.switches() == 2);
}

TEST_CASE("net planes a lossy plane does not flap and both down stays put") {
  TwoHosts net;
  net.loss[0] = 0.05;  // each way: a round trip fails one time in ten
  net.Run(60s);
  CHECK(net.a_changes.empty());
  CHECK(net.a.Path(2, Plane::kService).replies > 400);
  // Cut the storage plane first: nothing changes (service is still up).
  net.cut[1] = true;
  net.Run(2s);
  CHECK(net.a_changes.empty());
  CHECK_FALSE(net.a.Path(2, Plane::kStorage).up);
  // Both down: no plane to go to, the choice stays.
  net.cut[0] = true;
  net.Run(2s);
  CHECK(net.a_changes.empty());
  // Storage back first: it is taken.
  net.cut[1] = false;
  net.Run(1s);
  REQUIRE(net.a_changes.size() == 1);
  CHECK(net.a_changes[0].plane == Plane::kStorage);
}

TEST_CASE("net planes ignore replies they did not ask for") {
  ManualClock clock;
  PlaneMonitor a({.clock = &clock, .host_id = 1, .dead_after = 300ms});
  a.AddPeer(2);
  auto probes = a.Due();
  REQUIRE(probes.size() == 2);
  clock.Advance(1s);
  // Forged: a seq never sent, a reply for another host, a request.
  a.OnReply({PlaneProbe::kReply, Plane::kService, 2, 1, 999, 0});
  a.OnReply({PlaneProbe::kReply, Plane::kService, 2, 5, 1, 0});
  a.OnReply({PlaneProbe::kRequest, Plane::kService, 2, 1, 1, 0});
  a.OnReply({PlaneProbe::kReply, Plane::kService, 3, 1, 1, 0});
  auto changes = a.Changes();
  CHECK_FALSE(a.Path(2, Plane::kService).up);
  CHECK(a.Path(2, Plane::kService).replies == 0);
  CHECK(changes.empty());  // both planes down: stays on service
  // A host with one plane never leaves it.
  a.AddPeer(4, false);
  CHECK(a.Due().size() == 3);  // 2's two paths came due again, 4's one
  clock.Advance(2s);
  CHECK(a.Changes().empty());
  CHECK(a.Active(4) == Plane::kService);
  CHECK_FALSE(a.Answer({PlaneProbe::kRequest, Plane::kService, 2, 9, 1, 0}));
}

TEST_CASE("net planes review cases: the controller repeating itself, replies in a row") {
  TwoHosts net;
  net.Run(1s);
  net.cut[0] = true;
  net.Run(1s);
  REQUIRE(net.a.Active(2) == Plane::kStorage);
  // The controller sends the same host again: the failover stands.
  net.a.AddPeer(2);
  net.Run(200ms);
  CHECK(net.a.Active(2) == Plane::kStorage);
  CHECK(net.a_changes.size() == 1);
  // A recovering plane that answers every other probe is not taken back:
  // recover_after means replies in a row.
  net.cut[0] = false;
  net.loss[0] = 0;
  bool drop = false;
  for (int i = 0; i < 200; ++i) {  // 2 s
    drop = !drop;
    net.cut[0] = drop;  // every other round trip on the service plane fails
    net.Step();
  }
  CHECK(net.a.Active(2) == Plane::kStorage);
  net.cut[0] = false;
  net.Run(1s);
  CHECK(net.a.Active(2) == Plane::kService);
}
