#pragma once

// qcloud::net HTB — per-VM bandwidth by the rules of Linux's Hierarchical
// Token Bucket (sch_htb, `tc class add ... htb rate R ceil C burst B`), so
// that a rate written for the kernel means the same here:
//
//   auto htb = Htb::Open({.clock = &clock}, {
//       {.id = 1, .rate = 125'000'000},                           // the host's link: 1 Gbit/s
//       {.id = 10, .parent = 1, .rate = 12'500'000, .ceil = 125'000'000},  // VM a: 100 Mbit/s, may borrow to 1 Gbit/s
//       {.id = 11, .parent = 1, .rate = 25'000'000, .ceil = 125'000'000},  // VM b: 200 Mbit/s
//   }).value();
//   htb->Enqueue(10, frame_len, cookie);           // false: that VM's queue is full (dropped, counted)
//   while (auto sent = htb->Dequeue()) transmit(sent->cookie);
//   sleep_until(htb->NextReady());                  // nothing may go before then
//
// Semantics (as sch_htb): each class has two token buckets, one filled at
// `rate` holding at most `burst` bytes, one at `ceil` holding `cburst`. A
// class is green (can send) while both hold tokens, yellow (may borrow)
// when only the ceil bucket does, red when neither. A packet of a leaf goes
// when the leaf is green, or when it is yellow and the nearest ancestor that
// is green lends (every class between them yellow). A class may send while
// its tokens are >= 0 and is then charged, so a bucket goes below zero by up
// to one packet. Sending charges the ceil buckets of the leaf and of every
// ancestor, and the rate buckets of the lender and its ancestors (the
// kernel's htb_charge_class: the borrowers below the lender keep their rate
// tokens). Leaves sending on their own rate go before any borrower, and a
// borrower from a nearer ancestor before one from a farther; among those, a
// lower `prio` goes first; leaves of equal prio share by deficit round
// robin with their `quantum` (deficits carried while idle). So a leaf gets
// its rate whenever it has the traffic, idle bandwidth is shared among the
// borrowers in proportion to their quanta, and no leaf exceeds its ceil
// (ceil x T + cburst + one packet). An inner class is held to its ceil
// (give or take its descendants' bursts) only if its children's rates add
// up to no more than its own, as in the kernel: a child sending on its own
// rate does not ask its parent. The round robin (classid order, the turn
// kept across a class's short absences) follows the kernel's, so shares
// measured on this machine's kernel with 1514-byte frames are reproduced
// to about 1% where they do not hinge on sub-microsecond timing
// (htb_test.cc).
//
// Units: bytes and bytes per second (tc's "mbit" is 125,000 B/s). Time from
// the injected Clock only: tests on ManualClock never sleep. Token
// arithmetic is exact (integers, no rounding).
//
// Errors at Open(): kInvalidArgument for a class with id 0, a duplicate id,
// an unknown parent, a cycle, rate 0, ceil < rate, prio > 7, a child whose
// rate exceeds its parent's ceil, more than 65,536 classes, more than 8
// levels (the kernel's TC_HTB_MAXDEPTH), r2q 0 or queue_limit 0. Enqueue
// on an unknown or inner class is refused by its return value (false) and
// counted in unknown_drops(). Each leaf queue holds `queue_limit` packets.
//
// Thread safety: one thread at a time (the data path's), like a qdisc.

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::net {

struct HtbClass {
  uint32_t id = 0;        // nonzero, unique
  uint32_t parent = 0;    // 0 = a root class
  uint64_t rate = 0;      // guaranteed bytes per second, > 0
  uint64_t ceil = 0;      // at most this many bytes per second, borrowing included; 0 = rate
  // Bytes the rate / ceil bucket holds. 0 = what `tc` gives the kernel by
  // default: rate / 1e9 + mtu bytes (tc divides by the clock resolution in
  // /proc/net/psched, 1e9 on high-resolution-timer kernels, not by HZ), in
  // whole microseconds of 64-ns ticks: 1,600 B at 100 Mbit/s, 1,496 B at
  // 1 Gbit/s. Explicit values are taken exactly.
  uint64_t burst = 0;
  uint64_t cburst = 0;
  uint32_t prio = 0;      // 0 (first) .. 7, among borrowers
  uint32_t quantum = 0;   // DRR bytes per turn; 0 = rate / r2q, clamped to [1,000, 200,000] as the kernel does
};

struct HtbOptions {
  Clock* clock = nullptr;    // not owned; null = RealClock()
  uint32_t r2q = 10;         // tc's r2q: default quantum = rate / r2q
  uint32_t mtu = 1600;       // the default bursts' size, as tc's mtu
  size_t queue_limit = 1000; // packets waiting per leaf; more are dropped
};

// For an inner class sent, dropped and backlog are its subtree's totals.
struct HtbClassStats {
  uint64_t sent_bytes = 0;
  uint64_t sent_packets = 0;
  uint64_t dropped = 0;       // refused by Enqueue (queue full)
  uint64_t borrowed = 0;      // packets sent through this class on an ancestor's tokens
  uint64_t lent = 0;          // packets of descendants sent on this class's tokens
                              // (unlike tc's "lended", not the leaf's own)
  size_t backlog = 0;         // packets queued now
};

class QCLOUD_EXPORT Htb {
 public:
  static Result<std::unique_ptr<Htb>> Open(const HtbOptions& options, std::vector<HtbClass> classes);
  ~Htb();
  Htb(const Htb&) = delete;
  Htb& operator=(const Htb&) = delete;

  // Queues a packet of `bytes` (> 0) with the caller's `cookie` on leaf
  // `leaf`. False when the leaf's queue is full, or `leaf` is not a leaf
  // class or `bytes` is 0 (both counted as drops; the latter in
  // unknown_drops()). O(depth).
  bool Enqueue(uint32_t leaf, uint32_t bytes, uint64_t cookie);

  struct Sent {
    uint32_t leaf = 0;
    uint32_t bytes = 0;
    uint64_t cookie = 0;
  };
  // The next packet allowed to go at the clock's current time, charged to
  // the buckets; nullopt when none may go now. O(depth x log classes).
  std::optional<Sent> Dequeue();

  // The earliest time a Dequeue() can return a packet: now when one may go
  // at once, MonoTime::max() when nothing is queued. Exact: nothing goes
  // before it, and a Dequeue() at that time returns a packet (unless an
  // Update() in between lowered a rate). The kernel's watchdog, by
  // contrast, wakes at the next mode change, which may let nothing go.
  MonoTime NextReady() const;

  // Changes a class's rate, ceil, bursts, prio or quantum (not its place in
  // the tree: `parent` must be 0 or the current parent) and keeps its queue
  // and deficits. Fields left 0 take their defaults from the new rates.
  // Tokens earned so far count at the old rates; the buckets keep their
  // bytes (cut to the new sizes). kNotFound, or kInvalidArgument as at
  // Open() (also for a ceil below a child's rate).
  Status Update(const HtbClass& cls);

  // Counters of class `id`; kNotFound for an unknown id.
  Result<HtbClassStats> Stats(uint32_t id) const;
  uint64_t unknown_drops() const noexcept;
  size_t backlog() const noexcept;  // packets queued in all leaves

 private:
  struct Impl;
  explicit Htb(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::net
