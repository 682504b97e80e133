#include "qcloud/net/htb.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::net {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

constexpr uint32_t kPkt = 1500;

int64_t Ns(MonoTime t) {
  return std::chrono::duration_cast<nanoseconds>(t.time_since_epoch()).count();
}

// A simulated data path on a ManualClock: the leaves in `busy` are kept
// backlogged with 1500-byte packets, every packet HTB lets go is taken at
// once, and the clock jumps to NextReady() in between.
struct Sim {
  explicit Sim(std::vector<HtbClass> classes, HtbOptions options = {}) {
    options.clock = &clock;
    htb = REQUIRE_VALUE(Htb::Open(options, std::move(classes)));
  }

  int64_t now() const { return Ns(clock.MonotonicNow()); }

  void Fill(uint32_t leaf) {
    while (queued[leaf] < 4) {
      REQUIRE(htb->Enqueue(leaf, pkt, ++cookie));
      ++queued[leaf];
    }
  }

  // Dequeues everything allowed now; bytes per leaf into `sent`.
  size_t DrainNow(std::map<uint32_t, uint64_t>& sent) {
    size_t n = 0;
    while (auto s = htb->Dequeue()) {
      ++n;
      sent[s->leaf] += s->bytes;
      --queued[s->leaf];
      if (busy.count(s->leaf)) Fill(s->leaf);
    }
    return n;
  }

  // Runs `d` of simulated time; bytes sent per leaf in it (packets that
  // go at the very end of the interval belong to the next one).
  std::map<uint32_t, uint64_t> Run(nanoseconds d) {
    std::map<uint32_t, uint64_t> sent;
    const int64_t end = now() + d.count();
    for (bool first = true;; first = false) {
      for (uint32_t l : busy) Fill(l);
      const size_t n = DrainNow(sent);
      ++wakeups;
      if (n == 0 && !first) ++empty_wakeups;  // NextReady() woke us for nothing
      const int64_t next = Ns(htb->NextReady());
      REQUIRE(next > now());  // nothing could go, so not before later
      if (next >= end) {
        clock.Advance(nanoseconds(end - now()));
        return sent;
      }
      clock.Advance(nanoseconds(next - now()));
    }
  }

  ManualClock clock;
  std::unique_ptr<Htb> htb;
  uint32_t pkt = kPkt;  // the busy leaves' packets
  std::set<uint32_t> busy;
  std::map<uint32_t, uint64_t> queued;
  uint64_t cookie = 0;
  uint64_t wakeups = 0;
  uint64_t empty_wakeups = 0;
};

double PerSecond(uint64_t bytes, nanoseconds d) {
  return static_cast<double>(bytes) / std::chrono::duration<double>(d).count();
}

doctest::Approx Within2(double expected) { return doctest::Approx(expected).epsilon(0.02); }

TEST_CASE("htb single leaf is held to its rate") {
  Sim s({{.id = 1, .rate = 12'500'000}});  // 100 Mbit/s
  s.busy = {1};
  auto sent = s.Run(seconds(10));
  CHECK(PerSecond(sent[1], seconds(10)) == Within2(12'500'000));
  // The bucket holds 1,600 B: 10 s of rate and at most the bucket and one packet.
  CHECK(sent[1] <= 125'000'000 + 1600 + kPkt);
  const HtbClassStats st = REQUIRE_VALUE(s.htb->Stats(1));
  CHECK(st.sent_bytes == sent[1]);
  CHECK(st.sent_packets == sent[1] / kPkt);
  CHECK(st.borrowed == 0);
  CHECK(st.backlog == 4);
  // Every wake-up at NextReady() had a packet to send.
  CHECK(s.empty_wakeups == 0);
}

TEST_CASE("htb leaf never exceeds its ceil") {
  // A 1 Gbit/s root; the leaf is guaranteed 10 Mbit/s and may borrow to 100.
  Sim s({{.id = 1, .rate = 125'000'000},
         {.id = 10, .parent = 1, .rate = 1'250'000, .ceil = 12'500'000}});
  s.busy = {10};
  uint64_t total = 0;
  for (int i = 1; i <= 100; ++i) {  // checked every 100 ms
    total += s.Run(milliseconds(100))[10];
    const double t = 0.1 * i;
    CHECK(static_cast<double>(total) <= 12'500'000 * t + 1600 + kPkt);
  }
  CHECK(PerSecond(total, seconds(10)) == Within2(12'500'000));
  CHECK(s.empty_wakeups == 0);
  const HtbClassStats leaf = REQUIRE_VALUE(s.htb->Stats(10));
  const HtbClassStats root = REQUIRE_VALUE(s.htb->Stats(1));
  CHECK(leaf.borrowed > leaf.sent_packets * 8 / 10);  // 90% of it is borrowed
  CHECK(root.lent == leaf.borrowed);
  CHECK(root.sent_bytes == leaf.sent_bytes);
}

TEST_CASE("htb two leaves share the parent's excess in proportion to quanta") {
  SUBCASE("explicit quanta under a parent that borrows to its ceil") {
    // Root 1 Gbit/s; parent 40 Mbit/s guaranteed, ceil 100 Mbit/s; leaves
    // 1 and 2 MB/s guaranteed with quanta 3000 and 1500.
    Sim s({{.id = 1, .rate = 125'000'000},
           {.id = 2, .parent = 1, .rate = 5'000'000, .ceil = 12'500'000},
           {.id = 10, .parent = 2, .rate = 1'000'000, .ceil = 12'500'000, .quantum = 3000},
           {.id = 11, .parent = 2, .rate = 2'000'000, .ceil = 12'500'000, .quantum = 1500}});
    s.busy = {10, 11};
    auto sent = s.Run(seconds(10));
    const double excess = 12'500'000 - 3'000'000;
    CHECK(PerSecond(sent[10], seconds(10)) == Within2(1'000'000 + excess * 2 / 3));
    CHECK(PerSecond(sent[11], seconds(10)) == Within2(2'000'000 + excess / 3));
    CHECK(PerSecond(sent[10] + sent[11], seconds(10)) == Within2(12'500'000));
  }
  SUBCASE("default quanta are rate over r2q clamped to 200000") {
    // Quanta 100,000 and 200,000 (3 MB/s / 10 clamped): the excess 1:2.
    Sim s({{.id = 1, .rate = 10'000'000},
           {.id = 10, .parent = 1, .rate = 1'000'000, .ceil = 10'000'000},
           {.id = 11, .parent = 1, .rate = 3'000'000, .ceil = 10'000'000}});
    s.busy = {10, 11};
    auto sent = s.Run(seconds(10));
    CHECK(PerSecond(sent[10], seconds(10)) == Within2(1'000'000 + 6'000'000 / 3));
    CHECK(PerSecond(sent[11], seconds(10)) == Within2(3'000'000 + 6'000'000 * 2 / 3));
  }
}

// Shares measured on this machine's kernel (6.18, iproute2 6.1): the same
// classes on a veth in a network namespace (`tc qdisc add dev v0 root handle
// 1: htb`, `tc class add dev v0 parent 1:2 classid 1:10 htb rate 500000bps
// ceil 20000000bps quantum 3000`...), one UDP sender per leaf classified by
// SO_PRIORITY = classid, 1472-byte payloads (1514-byte frames as the qdisc
// counts them), bytes from `tc -s class show` over 8-10 s. Ids here are the
// classids' minors, so the round robin's classid order is the same.
TEST_CASE("htb borrowers share as the kernel measured") {
  SUBCASE("two tenants of two leaves each borrowing from the root") {
    Sim s({{.id = 1, .rate = 20'000'000},
           {.id = 2, .parent = 1, .rate = 2'000'000, .ceil = 20'000'000},
           {.id = 3, .parent = 1, .rate = 2'000'000, .ceil = 20'000'000},
           {.id = 0x10, .parent = 2, .rate = 500'000, .ceil = 20'000'000, .quantum = 3000},
           {.id = 0x11, .parent = 2, .rate = 500'000, .ceil = 20'000'000, .quantum = 1500},
           {.id = 0x12, .parent = 3, .rate = 500'000, .ceil = 20'000'000, .quantum = 1500},
           {.id = 0x13, .parent = 3, .rate = 500'000, .ceil = 20'000'000, .quantum = 6000}});
    s.pkt = 1514;
    s.busy = {0x10, 0x11, 0x12, 0x13};
    auto sent = s.Run(seconds(10));
    // The kernel: 4,964,028 / 2,751,127 / 2,774,594 / 9,476,315 B/s. A
    // tenant's turn lasts one round of its own leaves' quanta, so tenant 3
    // (7,500 B a round) gets more of the excess than tenant 2 (4,500 B).
    CHECK(PerSecond(sent[0x10], seconds(10)) == Within2(4'964'028));
    CHECK(PerSecond(sent[0x11], seconds(10)) == Within2(2'751'127));
    CHECK(PerSecond(sent[0x12], seconds(10)) == Within2(2'774'594));
    CHECK(PerSecond(sent[0x13], seconds(10)) == Within2(9'476'315));
    CHECK(s.empty_wakeups == 0);
  }
  SUBCASE("two leaves borrowing through a parent with a ceil") {
    Sim s({{.id = 1, .rate = 125'000'000},
           {.id = 2, .parent = 1, .rate = 5'000'000, .ceil = 12'500'000},
           {.id = 0x10, .parent = 2, .rate = 1'000'000, .ceil = 12'500'000, .quantum = 3000},
           {.id = 0x11, .parent = 2, .rate = 2'000'000, .ceil = 12'500'000, .quantum = 1500}});
    s.pkt = 1514;
    s.busy = {0x10, 0x11};
    auto sent = s.Run(seconds(10));
    CHECK(PerSecond(sent[0x10], seconds(10)) == Within2(7'298'540));
    CHECK(PerSecond(sent[0x11], seconds(10)) == Within2(5'183'633));
  }
  SUBCASE("default quanta and the default one-mtu cburst") {
    // Leaves go red at their ceil between two packets; their DRR turn must
    // survive it (the kernel's last_ptr_id), or the excess is split per
    // packet (5 and 5 MB/s) instead of 1:2 by the quanta.
    Sim s({{.id = 1, .rate = 10'000'000},
           {.id = 0x10, .parent = 1, .rate = 1'000'000, .ceil = 10'000'000},
           {.id = 0x11, .parent = 1, .rate = 3'000'000, .ceil = 10'000'000}});
    s.pkt = 1514;
    s.busy = {0x10, 0x11};
    auto sent = s.Run(seconds(10));
    CHECK(PerSecond(sent[0x10], seconds(10)) == Within2(3'010'286));
    CHECK(PerSecond(sent[0x11], seconds(10)) == Within2(7'003'158));
  }
}

TEST_CASE("htb idle sibling bandwidth is borrowed and given back") {
  Sim s({{.id = 1, .rate = 10'000'000},
         {.id = 10, .parent = 1, .rate = 5'000'000, .ceil = 10'000'000},
         {.id = 11, .parent = 1, .rate = 5'000'000, .ceil = 10'000'000}});
  s.busy = {10};
  auto a = s.Run(seconds(5));
  CHECK(PerSecond(a[10], seconds(5)) == Within2(10'000'000));
  CHECK(a[11] == 0);
  s.busy = {10, 11};
  auto b = s.Run(seconds(5));
  CHECK(PerSecond(b[10], seconds(5)) == Within2(5'000'000));
  CHECK(PerSecond(b[11], seconds(5)) == Within2(5'000'000));
  s.busy = {10};
  auto c = s.Run(seconds(5));
  CHECK(PerSecond(c[10], seconds(5)) == Within2(10'000'000));
  CHECK(s.empty_wakeups == 0);
}

TEST_CASE("htb lower prio borrower gets the excess first") {
  // 11 (prio 0) borrows first, up to its ceil; 10 (prio 1) gets the rest.
  Sim s({{.id = 1, .rate = 10'000'000},
         {.id = 10, .parent = 1, .rate = 2'000'000, .ceil = 10'000'000, .prio = 1},
         {.id = 11, .parent = 1, .rate = 2'000'000, .ceil = 6'000'000, .prio = 0}});
  s.busy = {10, 11};
  auto sent = s.Run(seconds(10));
  CHECK(PerSecond(sent[11], seconds(10)) == Within2(6'000'000));
  CHECK(PerSecond(sent[10], seconds(10)) == Within2(4'000'000));

  // Prio changed by Update while both are backlogged: 10 now goes first.
  REQUIRE_OK(s.htb->Update({.id = 10, .rate = 2'000'000, .ceil = 10'000'000, .prio = 0}));
  REQUIRE_OK(s.htb->Update({.id = 11, .rate = 2'000'000, .ceil = 6'000'000, .prio = 3}));
  sent = s.Run(seconds(10));
  CHECK(PerSecond(sent[10], seconds(10)) == Within2(8'000'000));
  CHECK(PerSecond(sent[11], seconds(10)) == Within2(2'000'000));
}

TEST_CASE("htb burst goes at once after idleness and then the rate holds") {
  Sim s({{.id = 1, .rate = 1'000'000, .burst = 30'000, .cburst = 30'000}});
  for (int i = 0; i < 40; ++i) REQUIRE(s.htb->Enqueue(1, kPkt, i));
  s.queued[1] = 40;
  std::map<uint32_t, uint64_t> sent;
  // Sends while the bucket is >= 0: 20 packets empty it, the 21st takes it to -1500.
  CHECK(s.DrainNow(sent) == 21);
  CHECK(Ns(s.htb->NextReady()) - s.now() == 1'500'000);  // 1500 B at 1 MB/s

  s.busy = {1};
  auto held = s.Run(seconds(5));
  CHECK(PerSecond(held[1], seconds(5)) == Within2(1'000'000));
  CHECK(held[1] <= 5'000'000 + kPkt);

  s.busy.clear();
  s.Run(seconds(1));  // drains what is queued, then idle: the bucket refills
  REQUIRE(s.htb->backlog() == 0);
  for (int i = 0; i < 40; ++i) REQUIRE(s.htb->Enqueue(1, kPkt, i));
  s.queued[1] = 40;
  sent.clear();
  CHECK(s.DrainNow(sent) == 21);
  s.busy = {1};
  held = s.Run(seconds(5));
  CHECK(PerSecond(held[1], seconds(5)) == Within2(1'000'000));
}

TEST_CASE("htb default bursts are what tc gives the kernel") {
  // tc: rate / 1e9 (psched's clock resolution, not HZ) + mtu bytes, sent to
  // the kernel in whole microseconds of 64-ns ticks.
  auto at_once = [](HtbClass c, HtbOptions o = {}) {
    Sim s({c}, o);
    for (int i = 0; i < 10; ++i) REQUIRE(s.htb->Enqueue(c.id, kPkt, i));
    std::map<uint32_t, uint64_t> sent;
    const size_t n = s.DrainNow(sent);
    return std::pair<size_t, int64_t>(n, Ns(s.htb->NextReady()) - s.now());
  };
  // 100 Mbit/s: 1600 B; 1600 -> 100 -> -1400.
  CHECK(at_once({.id = 1, .rate = 12'500'000}) == std::pair<size_t, int64_t>(2, 112'000));
  // 1 Gbit/s: 12.8 us truncated to 12 -> 187 ticks = 11,968 ns = 1,496 B; -4 B = 32 ns.
  CHECK(at_once({.id = 1, .rate = 125'000'000}) == std::pair<size_t, int64_t>(1, 32));
  // mtu 3000 at 1 MB/s: 3000 -> 1500 -> 0 -> -1500.
  CHECK(at_once({.id = 1, .rate = 1'000'000}, {.mtu = 3000}) ==
        std::pair<size_t, int64_t>(3, 1'500'000));
  // An explicit burst is exact: 1499 -> -1 B, 1 us at 1 MB/s.
  CHECK(at_once({.id = 1, .rate = 1'000'000, .burst = 1499}) ==
        std::pair<size_t, int64_t>(1, 1000));
}

TEST_CASE("htb Open rejects each invalid configuration") {
  auto open = [](std::vector<HtbClass> classes, HtbOptions o = {}) {
    ManualClock clock;
    o.clock = &clock;
    return Htb::Open(o, std::move(classes)).status();
  };
  CHECK_OK(open({{.id = 1, .rate = 1000}, {.id = 2, .parent = 1, .rate = 1000}}));
  CHECK_OK(open({}));
  CHECK_ERRC(open({{.id = 0, .rate = 1000}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .rate = 1000}, {.id = 1, .rate = 1000}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .parent = 7, .rate = 1000}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .parent = 1, .rate = 1000}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .parent = 3, .rate = 1000},
                   {.id = 2, .parent = 1, .rate = 1000},
                   {.id = 3, .parent = 2, .rate = 1000}}),
             Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .rate = 0}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .rate = 2000, .ceil = 1999}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .rate = 1000, .prio = 8}}), Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .rate = 1000, .ceil = 5000}, {.id = 2, .parent = 1, .rate = 5001}}),
             Errc::kInvalidArgument);
  CHECK_OK(open({{.id = 1, .rate = 1000, .ceil = 5000}, {.id = 2, .parent = 1, .rate = 5000}}));
  CHECK_ERRC(open({{.id = 1, .rate = 1000}}, {.r2q = 0}), Errc::kInvalidArgument);
  CHECK_ERRC(open({{.id = 1, .rate = 1000}}, {.queue_limit = 0}), Errc::kInvalidArgument);

  // Depth: 8 levels (the kernel's TC_HTB_MAXDEPTH) and no more.
  std::vector<HtbClass> chain;
  for (uint32_t id = 1; id <= 8; ++id) chain.push_back({.id = id, .parent = id - 1, .rate = 1000});
  CHECK_OK(open(chain));
  chain.push_back({.id = 9, .parent = 8, .rate = 1000});
  CHECK_ERRC(open(chain), Errc::kInvalidArgument);

  // 65,536 classes and no more.
  std::vector<HtbClass> many;
  for (uint32_t id = 1; id <= 65536; ++id) many.push_back({.id = id, .parent = id > 1, .rate = 1000});
  CHECK_OK(open(many));
  many.push_back({.id = 65537, .parent = 1, .rate = 1000});
  CHECK_ERRC(open(many), Errc::kInvalidArgument);
}

TEST_CASE("htb full queue drops are counted and unknown leaves refused") {
  Sim s({{.id = 1, .rate = 1'000'000}, {.id = 10, .parent = 1, .rate = 1'000'000}},
        {.queue_limit = 3});
  CHECK(s.htb->Enqueue(10, kPkt, 1));
  CHECK(s.htb->Enqueue(10, kPkt, 2));
  CHECK(s.htb->Enqueue(10, kPkt, 3));
  CHECK_FALSE(s.htb->Enqueue(10, kPkt, 4));
  CHECK_FALSE(s.htb->Enqueue(10, kPkt, 5));
  HtbClassStats leaf = REQUIRE_VALUE(s.htb->Stats(10));
  CHECK(leaf.dropped == 2);
  CHECK(leaf.backlog == 3);
  const HtbClassStats root = REQUIRE_VALUE(s.htb->Stats(1));
  CHECK(root.dropped == 2);  // inner classes count their subtree
  CHECK(root.backlog == 3);
  CHECK(s.htb->backlog() == 3);
  CHECK(s.htb->unknown_drops() == 0);

  CHECK_FALSE(s.htb->Enqueue(1, kPkt, 6));   // inner class
  CHECK_FALSE(s.htb->Enqueue(99, kPkt, 7));  // no such class
  CHECK_FALSE(s.htb->Enqueue(10, 0, 8));     // empty packet
  CHECK(s.htb->unknown_drops() == 3);
  CHECK(s.htb->backlog() == 3);
  CHECK_ERRC(s.htb->Stats(99), Errc::kNotFound);

  // The queue is FIFO and frees up as packets go.
  auto a = s.htb->Dequeue();
  REQUIRE(a);
  CHECK(a->cookie == 1);
  CHECK(a->leaf == 10);
  CHECK(a->bytes == kPkt);
  CHECK(s.htb->Enqueue(10, kPkt, 9));
  leaf = REQUIRE_VALUE(s.htb->Stats(10));
  CHECK(leaf.backlog == 3);
  CHECK(leaf.sent_packets == 1);
}

TEST_CASE("htb Update changes the rate and the new rate holds") {
  Sim s({{.id = 1, .rate = 10'000'000},
         {.id = 10, .parent = 1, .rate = 1'000'000, .ceil = 1'000'000}});
  s.busy = {10};
  auto sent = s.Run(seconds(5));
  CHECK(PerSecond(sent[10], seconds(5)) == Within2(1'000'000));
  REQUIRE_OK(s.htb->Update({.id = 10, .rate = 3'000'000}));
  sent = s.Run(seconds(5));
  CHECK(PerSecond(sent[10], seconds(5)) == Within2(3'000'000));
  REQUIRE_OK(s.htb->Update({.id = 10, .parent = 1, .rate = 500'000, .ceil = 800'000}));
  sent = s.Run(seconds(5));
  CHECK(PerSecond(sent[10], seconds(5)) == Within2(800'000));
  // The root's rate bounds the leaf's borrowing.
  REQUIRE_OK(s.htb->Update({.id = 10, .rate = 500'000, .ceil = 10'000'000}));
  REQUIRE_OK(s.htb->Update({.id = 1, .rate = 2'000'000, .ceil = 10'000'000}));
  sent = s.Run(seconds(5));
  CHECK(PerSecond(sent[10], seconds(5)) == Within2(2'000'000));

  CHECK_ERRC(s.htb->Update({.id = 99, .rate = 1000}), Errc::kNotFound);
  CHECK_ERRC(s.htb->Update({.id = 10, .rate = 0}), Errc::kInvalidArgument);
  CHECK_ERRC(s.htb->Update({.id = 10, .rate = 2000, .ceil = 1000}), Errc::kInvalidArgument);
  CHECK_ERRC(s.htb->Update({.id = 10, .rate = 2000, .prio = 8}), Errc::kInvalidArgument);
  CHECK_ERRC(s.htb->Update({.id = 10, .rate = 20'000'000}), Errc::kInvalidArgument);  // > root ceil
  CHECK_ERRC(s.htb->Update({.id = 1, .rate = 100'000}), Errc::kInvalidArgument);  // ceil < child rate
  CHECK_ERRC(s.htb->Update({.id = 10, .parent = 5, .rate = 2000}), Errc::kInvalidArgument);
}

TEST_CASE("htb NextReady is exact") {
  SUBCASE("one leaf") {
    Sim s({{.id = 1, .rate = 1'000'000}});  // 1,600-B buckets
    CHECK(s.htb->NextReady() == MonoTime::max());
    for (int i = 0; i < 3; ++i) REQUIRE(s.htb->Enqueue(1, kPkt, i));
    CHECK(Ns(s.htb->NextReady()) == s.now());
    CHECK(s.htb->Dequeue());
    CHECK(s.htb->Dequeue());  // 100 B of tokens left: >= 0 sends
    CHECK_FALSE(s.htb->Dequeue());
    const int64_t next = Ns(s.htb->NextReady());
    CHECK(next - s.now() == 1'400'000);  // -1400 B at 1 MB/s
    s.clock.Advance(nanoseconds(next - s.now() - 1));
    CHECK_FALSE(s.htb->Dequeue());
    CHECK(Ns(s.htb->NextReady()) == next);
    s.clock.Advance(nanoseconds(1));
    CHECK(s.htb->Dequeue());
    CHECK(s.htb->NextReady() == MonoTime::max());
  }
  SUBCASE("a borrowing leaf and its parent") {
    // Each wake-up: nothing 1 ns before NextReady, a packet at it.
    Sim s({{.id = 1, .rate = 1'000'000},
           {.id = 10, .parent = 1, .rate = 200'000, .ceil = 900'000},
           {.id = 11, .parent = 1, .rate = 300'000, .ceil = 1'000'000, .prio = 1}});
    uint64_t c = 0;
    for (int i = 0; i < 50; ++i) {
      REQUIRE(s.htb->Enqueue(10, kPkt, ++c));
      REQUIRE(s.htb->Enqueue(11, 700, ++c));
    }
    int packets = 0;
    while (s.htb->backlog() > 0) {
      while (s.htb->Dequeue()) ++packets;
      if (s.htb->backlog() == 0) break;
      const int64_t next = Ns(s.htb->NextReady());
      REQUIRE(next > s.now());
      s.clock.Advance(nanoseconds(next - 1 - s.now()));
      CHECK_FALSE(s.htb->Dequeue());
      s.clock.Advance(nanoseconds(1));
      REQUIRE(s.htb->Dequeue());
      ++packets;
    }
    CHECK(packets == 100);
  }
}

// ---- random operations ------------------------------------------------------

struct ModelClass {
  HtbClass cfg;
  std::vector<uint32_t> children;
  uint64_t child_rates = 0;
  uint64_t sent_bytes = 0;
  uint64_t sent_packets = 0;
  uint64_t dropped = 0;
  std::deque<std::pair<uint32_t, uint64_t>> queue;  // leaves: (bytes, cookie)
};

uint64_t Bucket(uint64_t given, uint64_t rate) { return given ? given : rate / 1'000'000'000 + 1600; }

TEST_CASE("htb random operations keep every class under its ceil and the stats add up") {
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto uniform = [&](uint64_t lo, uint64_t hi) {
      return std::uniform_int_distribution<uint64_t>(lo, hi)(rng);
    };

    // A random tree, depth up to 4, the children's rates summing to at most
    // their parent's (so that the kernel's guarantees hold).
    std::map<uint32_t, ModelClass> m;
    std::map<uint32_t, int> depth;
    const uint64_t root_rate = uniform(2'000'000, 50'000'000);
    m[1].cfg = {.id = 1, .rate = root_rate, .ceil = root_rate};
    depth[1] = 0;
    const int n = static_cast<int>(uniform(2, 24));
    for (uint32_t id = 2; id <= static_cast<uint32_t>(n); ++id) {
      std::vector<uint32_t> parents;
      for (auto& [pid, pc] : m) {
        if (depth[pid] < 3 && pc.cfg.rate - pc.child_rates >= 4000) parents.push_back(pid);
      }
      if (parents.empty()) break;
      const uint32_t pid = parents[uniform(0, parents.size() - 1)];
      ModelClass& p = m[pid];
      const uint64_t rate = uniform(1000, (p.cfg.rate - p.child_rates) / 2);
      HtbClass c{.id = id, .parent = pid, .rate = rate, .ceil = uniform(rate, p.cfg.ceil)};
      if (uniform(0, 1)) c.burst = uniform(1500, 60'000);
      if (uniform(0, 1)) c.cburst = uniform(1500, 60'000);
      c.prio = static_cast<uint32_t>(uniform(0, 7));
      if (uniform(0, 1)) c.quantum = static_cast<uint32_t>(uniform(300, 20'000));
      p.children.push_back(id);
      p.child_rates += rate;
      m[id].cfg = c;
      depth[id] = depth[pid] + 1;
    }
    std::vector<HtbClass> classes;
    std::vector<uint32_t> leaves;
    for (auto& [id, c] : m) {
      classes.push_back(c.cfg);
      if (c.children.empty()) leaves.push_back(id);
    }
    auto ancestors = [&](uint32_t id) {
      std::vector<uint32_t> path;
      for (uint32_t x = id; x != 0; x = m[x].cfg.parent) path.push_back(x);
      return path;
    };
    // Slack of a class over ceil * T + cburst: the packet it may overdraw by,
    // and for an inner class the bursts its descendants may send on their
    // own tokens while it is red.
    std::map<uint32_t, double> slack;
    for (auto& [id, c] : m) {
      slack[id] += kPkt;
      for (uint32_t x = c.cfg.parent; x != 0; x = m[x].cfg.parent) {
        slack[x] += static_cast<double>(Bucket(c.cfg.burst, 50'000'000) + kPkt);
      }
    }

    const size_t limit = uniform(1, 30);
    ManualClock clock;
    clock.Advance(seconds(1000));
    auto htb = REQUIRE_VALUE(Htb::Open({.clock = &clock, .queue_limit = limit}, classes));
    const int64_t t0 = Ns(clock.MonotonicNow());
    auto now = [&] { return Ns(clock.MonotonicNow()); };
    uint64_t cookie = 0, unknown = 0, backlog = 0;

    auto on_sent = [&](const Htb::Sent& s) {
      ModelClass& leaf = m[s.leaf];
      REQUIRE_FALSE(leaf.queue.empty());
      CHECK(leaf.queue.front().first == s.bytes);
      CHECK(leaf.queue.front().second == s.cookie);  // FIFO per leaf
      leaf.queue.pop_front();
      --backlog;
      const double t = static_cast<double>(now() - t0) / 1e9;
      for (uint32_t x : ancestors(s.leaf)) {
        ModelClass& c = m[x];
        c.sent_bytes += s.bytes;
        ++c.sent_packets;
        const double bound = static_cast<double>(c.cfg.ceil) * t +
                             static_cast<double>(Bucket(c.cfg.cburst, c.cfg.ceil)) + slack[x];
        CHECK_MESSAGE(static_cast<double>(c.sent_bytes) <= bound, "class ", x, " at ", t, " s");
      }
    };

    for (int op = 0; op < 20'000; ++op) {
      const uint64_t dice = uniform(0, 99);
      if (dice < 40) {  // enqueue, mostly on leaves
        uint32_t id = leaves[uniform(0, leaves.size() - 1)];
        if (uniform(0, 30) == 0) id = static_cast<uint32_t>(uniform(0, n + 2));
        const uint32_t bytes = uniform(0, 50) == 0 ? 0 : static_cast<uint32_t>(uniform(64, kPkt));
        const bool ok = htb->Enqueue(id, bytes, ++cookie);
        auto it = m.find(id);
        if (it == m.end() || !it->second.children.empty() || bytes == 0) {
          CHECK_FALSE(ok);
          ++unknown;
        } else if (it->second.queue.size() >= limit) {
          CHECK_FALSE(ok);
          for (uint32_t x : ancestors(id)) ++m[x].dropped;
        } else {
          CHECK(ok);
          it->second.queue.emplace_back(bytes, cookie);
          ++backlog;
        }
      } else if (dice < 70) {  // dequeue a few
        for (uint64_t k = uniform(1, 8); k > 0; --k) {
          auto s = htb->Dequeue();
          if (!s) {
            const MonoTime next = htb->NextReady();
            if (backlog == 0) {
              CHECK(next == MonoTime::max());
            } else {
              CHECK(Ns(next) > now());
            }
            break;
          }
          on_sent(*s);
        }
      } else if (dice < 90) {  // time passes
        clock.Advance(nanoseconds(uniform(0, 10) == 0 ? uniform(0, 300'000'000)
                                                      : uniform(0, 3'000'000)));
      } else if (dice < 97) {  // NextReady is exact
        const MonoTime next = htb->NextReady();
        if (next == MonoTime::max()) {
          CHECK(backlog == 0);
        } else {
          if (Ns(next) > now()) {  // nothing goes before it...
            clock.Advance(nanoseconds(uniform(0, Ns(next) - now() - 1)));
            CHECK_FALSE(htb->Dequeue());
            CHECK(htb->NextReady() == next);
            clock.Advance(nanoseconds(Ns(next) - now()));
          }
          auto s = htb->Dequeue();  // ...and something at it
          CHECK(s);
          if (s) on_sent(*s);
        }
      } else {  // Update a random class, keeping the rates' sums
        const uint32_t id = static_cast<uint32_t>(uniform(1, m.size()));
        ModelClass& c = m[id];
        HtbClass u = c.cfg;
        uint64_t hi = c.cfg.ceil;
        if (u.parent != 0) {
          ModelClass& p = m[u.parent];
          hi = std::min(hi, p.cfg.rate - p.child_rates + c.cfg.rate);
        }
        const uint64_t lo = std::max<uint64_t>(c.child_rates, 1000);
        if (lo <= hi) u.rate = uniform(lo, hi);
        u.prio = static_cast<uint32_t>(uniform(0, 7));
        u.quantum = uniform(0, 1) ? 0 : static_cast<uint32_t>(uniform(300, 20'000));
        REQUIRE_OK(htb->Update(u));
        if (u.parent != 0) m[u.parent].child_rates += u.rate - c.cfg.rate;
        c.cfg = u;
      }

      // The stats add up.
      CHECK(htb->backlog() == backlog);
      CHECK(htb->unknown_drops() == unknown);
      if (op % 50 == 0 || op == 19'999) {
        uint64_t borrowed = 0, lent = 0;
        for (auto& [id, c] : m) {
          const HtbClassStats st = REQUIRE_VALUE(htb->Stats(id));
          CHECK(st.sent_bytes == c.sent_bytes);
          CHECK(st.sent_packets == c.sent_packets);
          CHECK(st.dropped == c.dropped);
          size_t queued = c.queue.size();
          uint64_t child_bytes = 0;
          for (uint32_t ch : c.children) {
            queued += REQUIRE_VALUE(htb->Stats(ch)).backlog;
            child_bytes += m[ch].sent_bytes;
          }
          CHECK(st.backlog == queued);
          if (!c.children.empty()) CHECK(st.sent_bytes == child_bytes);
          CHECK(st.borrowed <= st.sent_packets);
          if (c.children.empty()) {
            borrowed += st.borrowed;
          } else {
            CHECK(st.lent <= st.sent_packets);
          }
          lent += st.lent;
        }
        CHECK(borrowed == lent);  // every borrowed packet was lent by one class
      }
    }
    // Everything queued can still go.
    for (int guard = 0; backlog > 0 && guard < 1'000'000; ++guard) {
      while (auto s = htb->Dequeue()) on_sent(*s);
      if (backlog == 0) break;
      const MonoTime next = htb->NextReady();
      REQUIRE(Ns(next) > now());
      clock.Advance(nanoseconds(Ns(next) - now()));
    }
    CHECK(backlog == 0);
    CHECK(htb->NextReady() == MonoTime::max());
    CHECK(m[1].sent_packets > 1000);  // the run did send
  }
}

}  // namespace
}  // namespace qcloud::net
