// HTB decision cost (htb.h): one Enqueue + one Dequeue per iteration, the
// clock a ManualClock moved on by one 1500-byte packet time of the link per
// iteration, so that the tree runs saturated as on a busy link. Run:
//   build/release/bench/net/net_bench --benchmark_filter=Htb
//
//   BM_HtbBacklogged/<leaves>  a 2-level tree: a 10 Gbit/s root, <leaves>
//                 leaves each guaranteed half of an equal share and allowed
//                 to borrow the whole link, every leaf backlogged (8
//                 packets); the dequeued packet is enqueued again on its
//                 leaf. Half of the packets go on the leaves' own rate
//                 (level 0), half borrowed from the root (level 7).
//   BM_HtbThreeLevel/<leaves>  the same leaves under 16 inner classes
//                 (tenants, each guaranteed 1/16 of the link, ceil the link)
//                 under the root.
//   BM_HtbIdleLeaves/<leaves>  a 2-level tree where each leaf holds one
//                 packet at a time: every Enqueue activates a leaf and
//                 every Dequeue deactivates one (the costlier path).
//
// Counters: waits = share of iterations where Dequeue() had nothing and the
// clock was moved to NextReady() (included in the time); borrowed = share of
// packets sent on an ancestor's tokens.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/net/htb.h"

namespace {
using namespace qcloud;
using namespace qcloud::net;

constexpr uint64_t kLink = 1'250'000'000;  // 10 Gbit/s
constexpr uint32_t kPkt = 1500;
constexpr std::chrono::nanoseconds kPacketTime(uint64_t{kPkt} * 1'000'000'000 / kLink);

std::vector<HtbClass> Tree(uint32_t leaves, uint32_t groups) {
  std::vector<HtbClass> classes{{.id = 1, .rate = kLink}};
  uint32_t parent_base = 1;
  if (groups > 0) {
    for (uint32_t g = 0; g < groups; ++g) {
      classes.push_back({.id = 10 + g, .parent = 1, .rate = kLink / groups, .ceil = kLink});
    }
    parent_base = 10;
  }
  for (uint32_t i = 0; i < leaves; ++i) {
    const uint32_t parent = groups > 0 ? parent_base + i % groups : 1;
    const uint64_t share = groups > 0 ? kLink / groups / ((leaves + groups - 1) / groups) : kLink / leaves;
    classes.push_back({.id = 1000 + i,
                       .parent = parent,
                       .rate = std::max<uint64_t>(share / 2, 1000),
                       .ceil = kLink});
  }
  return classes;
}

void Report(benchmark::State& state, Htb& htb, uint32_t leaves, uint64_t waits) {
  uint64_t sent = 0, borrowed = 0;
  for (uint32_t i = 0; i < leaves; ++i) {
    auto st = htb.Stats(1000 + i);
    sent += st->sent_packets;
    borrowed += st->borrowed;
  }
  const double iters = static_cast<double>(state.iterations());
  state.counters["waits"] = static_cast<double>(waits) / iters;
  state.counters["borrowed"] = sent ? static_cast<double>(borrowed) / static_cast<double>(sent) : 0;
  state.SetItemsProcessed(state.iterations());
}

void RunBacklogged(benchmark::State& state, uint32_t groups) {
  const auto leaves = static_cast<uint32_t>(state.range(0));
  ManualClock clock;
  auto htb = std::move(Htb::Open({.clock = &clock}, Tree(leaves, groups)).value());
  uint64_t cookie = 0;
  for (int k = 0; k < 8; ++k) {
    for (uint32_t i = 0; i < leaves; ++i) htb->Enqueue(1000 + i, kPkt, ++cookie);
  }
  uint64_t waits = 0;
  for (auto _ : state) {
    auto s = htb->Dequeue();
    while (!s) {
      ++waits;
      clock.Advance(htb->NextReady() - clock.MonotonicNow());
      s = htb->Dequeue();
    }
    htb->Enqueue(s->leaf, s->bytes, s->cookie);
    clock.Advance(kPacketTime);
  }
  Report(state, *htb, leaves, waits);
}

void BM_HtbBacklogged(benchmark::State& state) { RunBacklogged(state, 0); }
BENCHMARK(BM_HtbBacklogged)->Arg(2)->Arg(64)->Arg(1024)->Arg(65535);

void BM_HtbThreeLevel(benchmark::State& state) { RunBacklogged(state, 16); }
BENCHMARK(BM_HtbThreeLevel)->Arg(64)->Arg(1024)->Arg(65000);

void BM_HtbIdleLeaves(benchmark::State& state) {
  const auto leaves = static_cast<uint32_t>(state.range(0));
  ManualClock clock;
  auto htb = std::move(Htb::Open({.clock = &clock}, Tree(leaves, 0)).value());
  uint32_t next = 0;
  uint64_t waits = 0;
  for (auto _ : state) {
    htb->Enqueue(1000 + next, kPkt, next);
    next = next + 1 == leaves ? 0 : next + 1;
    auto s = htb->Dequeue();
    while (!s) {
      ++waits;
      clock.Advance(htb->NextReady() - clock.MonotonicNow());
      s = htb->Dequeue();
    }
    benchmark::DoNotOptimize(s);
    clock.Advance(kPacketTime);
  }
  Report(state, *htb, leaves, waits);
}
BENCHMARK(BM_HtbIdleLeaves)->Arg(2)->Arg(64)->Arg(1024);

}  // namespace
