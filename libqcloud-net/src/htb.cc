#include "qcloud/net/htb.h"

// The scheduler of Linux's sch_htb (net/sched/sch_htb.c), decision for
// decision, with exact token arithmetic. What is mirrored and where it
// differs is said at each place; in short:
//
//   * Levels are the kernel's: numbered top down, a root class with children
//     is level 7 (TC_HTB_MAXDEPTH - 1), an inner class one below its parent,
//     every leaf level 0. Dequeue looks at levels 0..7 in turn and at each
//     level at prios 0..7; the first (level, prio) with a class that can
//     send wins: a leaf on its own rate before any borrower, a borrower from
//     a near ancestor before one from a far ancestor, and, among borrowers
//     from the same level, the lower prio first.
//   * Per (level, prio) a "row" of the classes of that level that are green
//     (can send) and have backlogged leaves of that prio below them (or are
//     such a leaf); per (inner class, prio) a "feed" of the children that are
//     yellow (may borrow) and have such leaves below them (htb_activate_prios
//     / htb_deactivate_prios). Red classes hang nowhere. A Dequeue takes the
//     row's current class and walks feeds down to a leaf (htb_lookup_leaf),
//     O(depth).
//   * Round robin as the kernel: rows and feeds ordered by classid (the
//     kernel's rb-trees; here intrusive treaps, O(log n), no allocation),
//     each with a pointer to the class whose turn it is. The pointer of the
//     feed (or row) holding the leaf moves on when the leaf has spent its
//     quantum; a tree whose pointer runs past the last classid is rewound
//     and the pointer of the tree above moves on (htb_lookup_leaf). A class
//     leaving a feed while it has the turn leaves its classid behind
//     (last_ptr_id): the next lookup resumes at it if it is back, else at the
//     next classid. These details decide how borrowers share: with tc's
//     default one-mtu cburst, leaves go red and back between two packets,
//     and a simpler ring that lost the turn then split the excess per
//     packet instead of by quanta (checked against this machine's kernel,
//     see htb_test.cc).
//   * DRR as htb_dequeue_tree: a leaf keeps a deficit per level it is served
//     at; a packet goes, the deficit drops by its length, and when it is
//     below 0 the quantum is added and the pointer moves on. Deficits are
//     carried while a leaf is idle.
//   * Modes as htb_class_mode with htb_hysteresis = 0 (the default): red
//     when ceil tokens < 0, green when also rate tokens >= 0, else yellow.
//     A class may send while its tokens are >= 0 and is then charged, so
//     tokens go negative by up to one packet.
//   * Charging as htb_charge_class: every class from the leaf up has its ceil
//     bucket charged; the rate bucket is charged for the classes at or above
//     the level the packet was found at (the lender and its ancestors);
//     classes below it (the borrowers) only have their rate tokens refilled.
//     Refill per charge is capped at mbuffer = 60 s, tokens floored at
//     -mbuffer (as accnt_tokens / accnt_ctokens).
//   * Waiting classes are kept in one time-ordered heap (the kernel: one
//     rb-tree per level) keyed by when their mode next changes, and only
//     while they have backlogged leaves below them (the kernel keeps every
//     non-green class there); an idle class's mode is brought up to date
//     when a leaf below it becomes backlogged again. A red class at the top
//     of a chain of borrowers is keyed by the time its chain can next send
//     rather than by when it turns yellow. So NextReady() is exact: the
//     first time a Dequeue() returns a packet, not a wake-up at which
//     nothing can go (the kernel's watchdog takes the earliest mode change).
//
// Tokens are kept in nanobytes (1e-9 byte): refill = elapsed ns x bytes/s,
// charge = bytes x 1e9, both exact integers, in 128 bits (no rounding, no
// drift; the kernel keeps time in ns and rounds each packet's length to time
// with a multiply and shift).

#include <algorithm>
#include <bit>
#include <chrono>
#include <iterator>
#include <limits>
#include <unordered_map>
#include <utility>

#include <fmt/format.h>

namespace qcloud::net {
namespace {

__extension__ typedef __int128 Tokens;  // nanobytes

constexpr int kLevels = 8;  // TC_HTB_MAXDEPTH
constexpr int kPrios = 8;   // TC_HTB_NUMPRIO
constexpr size_t kMaxClasses = 65536;
constexpr uint32_t kNone = std::numeric_limits<uint32_t>::max();
constexpr int64_t kNsPerSec = 1'000'000'000;
constexpr int64_t kMbufferNs = 60 * kNsPerSec;  // sch_htb's mbuffer
constexpr int64_t kNever = std::numeric_limits<int64_t>::max();

// tc's default bucket, as the kernel ends up holding it. tc (iproute2
// q_htb.c) takes `rate / get_hz() + mtu` bytes; get_hz() reads the clock
// resolution from /proc/net/psched, which on any kernel with high-resolution
// timers is 1e9 (not HZ=100: checked on this machine's 6.x kernel, where
// `tc class add ... htb rate 100mbit` shows "burst 1600b", and only
// `HZ=100 tc ...` gives 126600b), so the default is about one mtu. tc then
// sends it as time: whole microseconds (truncated), then 64-ns psched ticks
// (15.625 per us, truncated), which the kernel keeps as ns. So 100 Mbit/s
// holds exactly 1,600 B, 1 Gbit/s 11,968 ns = 1,496 B (tc prints "1375b",
// its own rounding of the display), 100 Gbit/s 0 B. Explicit bursts are
// taken exactly, in bytes. Returns nanobytes.
Tokens TcDefaultBuffer(uint64_t rate, uint32_t mtu) {
  const Tokens bytes = Tokens(rate / kNsPerSec) + mtu;
  const Tokens us = bytes * 1'000'000 / rate;
  const Tokens ns = us * 1000 / 64 * 64;  // ticks of 64 ns, 1000/64 per us
  return ns * rate;
}

// ceil(a / b) for a > 0: ns until `a` nanobytes refill at b B/s. The
// quotient always fits (tokens are floored at -60 s worth).
int64_t CeilDiv(Tokens a, uint64_t b) {
  if ((a >> 64) == 0) {  // 64 bits do unless some 18 GB behind
    const auto ua = static_cast<uint64_t>(a);
    return static_cast<int64_t>(ua / b + (ua % b != 0));
  }
  return static_cast<int64_t>((a + b - 1) / b);
}

enum class Mode : uint8_t { kCanSend, kMayBorrow, kCantSend };  // green, yellow, red

// Rows and feeds are sets of classes ordered by classid, as the kernel's
// rb-trees: here intrusive treaps (each class has a left/right link per
// prio and a fixed random priority; no allocation, O(log n) expected).
// `ptr` is the class whose turn it is, kNone past the last one (the next
// lookup goes round, and up); `last_id` is the kernel's last_ptr_id: set
// when the class at `ptr` leaves a feed, so that the next lookup resumes at
// that class if it is back by then, else at the next classid.
struct IdTree {
  uint32_t root = kNone;
  uint32_t ptr = kNone;
  uint32_t last_id = 0;
};

struct Packet {
  uint32_t bytes;
  uint64_t cookie;
};

// A leaf's queue: a ring buffer allocated on first use and grown by
// doubling (std::deque allocates ~600 B per empty queue).
class Fifo {
 public:
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  const Packet& front() const { return buf_[head_]; }
  void push(const Packet& p) {
    if (size_ == buf_.size()) Grow();
    buf_[(head_ + size_) & (buf_.size() - 1)] = p;
    ++size_;
  }
  void pop() {
    head_ = (head_ + 1) & (buf_.size() - 1);
    --size_;
  }

 private:
  void Grow() {
    std::vector<Packet> bigger(std::max<size_t>(8, buf_.size() * 2));
    for (size_t i = 0; i < size_; ++i) bigger[i] = buf_[(head_ + i) & (buf_.size() - 1)];
    buf_.swap(bigger);
    head_ = 0;
  }
  std::vector<Packet> buf_;
  size_t head_ = 0;
  size_t size_ = 0;
};

struct Cls {
  Cls() {
    std::fill(std::begin(left), std::end(left), kNone);
    std::fill(std::begin(right), std::end(right), kNone);
  }

  // First, together: what the treap walks of rows and feeds read.
  uint32_t id = 0;
  uint32_t tree_prio = 0;  // treap priority
  uint32_t left[kPrios];   // links in the parent's feed or in a row, per prio
  uint32_t right[kPrios];

  uint32_t parent_id = 0;
  uint32_t parent = kNone;  // index
  uint64_t child_rate_max = 0;  // the largest rate among the children
  int level = 0;
  bool leaf = true;

  // Configuration, defaults filled in.
  uint64_t rate = 0;
  uint64_t ceil = 0;
  uint32_t prio = 0;
  int64_t quantum = 0;
  Tokens buffer = 0;   // bucket sizes, nanobytes
  Tokens cbuffer = 0;
  Tokens mbuf = 0;     // 60 s of rate, nanobytes
  Tokens cmbuf = 0;    // 60 s of ceil

  // State.
  Tokens tokens = 0;
  Tokens ctokens = 0;
  int64_t t_c = 0;  // ns; when the tokens were last brought up to date
  Mode mode = Mode::kCanSend;
  uint8_t activity = 0;  // prio_activity: prios with backlogged leaves hanging here
  uint32_t heap_pos = kNone;  // in the wait heap, or kNone
  IdTree feed[kPrios];  // inner classes: children that may borrow, per prio
  int64_t deficit[kLevels] = {};
  Fifo queue;
  HtbClassStats stats;
};

int64_t ToNs(MonoTime t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

struct Htb::Impl {
  explicit Impl(const HtbOptions& o)
      : clock(o.clock ? o.clock : &RealClock()), r2q(o.r2q), mtu(o.mtu),
        queue_limit(o.queue_limit) {}

  Clock* clock;
  uint32_t r2q;
  uint32_t mtu;
  size_t queue_limit;

  std::vector<Cls> cls;
  std::unordered_map<uint32_t, uint32_t> index;  // id -> position in cls
  IdTree row[kLevels][kPrios];
  uint8_t row_mask[kLevels] = {};
  struct Wait {
    int64_t key;  // when the class's mode is due to change
    uint32_t cls;
  };
  std::vector<Wait> heap;  // classes waiting for a mode change, by key
  size_t backlog = 0;
  uint64_t unknown_drops = 0;
  int64_t now = 0;  // the kernel's q->now: set by each public operation

  int64_t ReadClock() const { return ToNs(clock->MonotonicNow()); }

  // ---- configuration --------------------------------------------------------

  // Fills `c`'s parameters from `h`, defaults as tc picks them.
  void Configure(Cls& c, const HtbClass& h) const {
    c.rate = h.rate;
    c.ceil = h.ceil ? h.ceil : h.rate;
    c.prio = h.prio;
    c.buffer = h.burst ? Tokens(h.burst) * kNsPerSec : TcDefaultBuffer(c.rate, mtu);
    c.cbuffer = h.cburst ? Tokens(h.cburst) * kNsPerSec : TcDefaultBuffer(c.ceil, mtu);
    c.mbuf = Tokens(kMbufferNs) * c.rate;
    c.cmbuf = Tokens(kMbufferNs) * c.ceil;
    // The kernel (htb_change_class): rate / r2q, clamped to [1000, 200000]
    // only when no quantum was given.
    c.quantum = h.quantum ? int64_t{h.quantum}
                          : std::clamp<int64_t>(static_cast<int64_t>(h.rate / r2q), 1000, 200000);
  }

  // Checks of one class's own parameters (Open and Update).
  static Status CheckParams(const HtbClass& h) {
    if (h.rate == 0) return InvalidArgument(fmt::format("htb: class {}: rate 0", h.id));
    if (h.ceil != 0 && h.ceil < h.rate) {
      return InvalidArgument(
          fmt::format("htb: class {}: ceil {} below rate {}", h.id, h.ceil, h.rate));
    }
    if (h.prio > 7) return InvalidArgument(fmt::format("htb: class {}: prio {} > 7", h.id, h.prio));
    return Status::Ok();
  }

  // ---- tokens and modes -----------------------------------------------------

  // Time to refill `c` for (the kernel's diff), capped at mbuffer.
  int64_t Diff(const Cls& c) const { return std::clamp<int64_t>(now - c.t_c, 0, kMbufferNs); }

  Mode ModeNow(const Cls& c) const {
    const int64_t diff = Diff(c);
    if (c.ctokens + Tokens(diff) * c.ceil < 0) return Mode::kCantSend;
    if (c.tokens + Tokens(diff) * c.rate >= 0) return Mode::kCanSend;
    return Mode::kMayBorrow;
  }

  // When `c`'s ceil tokens, and both its buckets, reach 0 (now if they have).
  void ReadyTimes(const Cls& c, int64_t* ceil_at, int64_t* green_at) const {
    const int64_t diff = Diff(c);
    const Tokens ct = c.ctokens + Tokens(diff) * c.ceil;
    const Tokens t = c.tokens + Tokens(diff) * c.rate;
    *ceil_at = ct >= 0 ? now : now + CeilDiv(-ct, c.ceil);
    *green_at = std::max(*ceil_at, t >= 0 ? now : now + CeilDiv(-t, c.rate));
  }

  // The heap key of an active class that is not green: for a yellow class
  // with a parent, when it turns green (it then sends on its own); for a red
  // class (or a yellow root, which has nobody to borrow from), when the chain
  // from it up can next send: f(x) = min(green_at(x), max(ceil_at(x),
  // f(parent))), f(none) = never. Ancestors are read as their tokens stand;
  // if another subtree spends them before then, the key is early (never
  // late): it is recomputed when it comes (as the kernel's stale events
  // are), and NextReady() recomputes the first key before answering.
  int64_t Key(uint32_t i) const {
    const Cls& c = cls[i];
    int64_t ceil_at = 0, green_at = 0;
    if (c.mode == Mode::kMayBorrow && c.parent != kNone) {
      ReadyTimes(c, &ceil_at, &green_at);
      return std::max(green_at, now + 1);
    }
    int64_t cs[kLevels], gs[kLevels];
    int n = 0;
    int64_t f = kNever;
    for (uint32_t x = i; x != kNone && n < kLevels; x = cls[x].parent) {
      ReadyTimes(cls[x], &ceil_at, &green_at);
      if (green_at <= now) {  // can lend now: what is above does not matter
        f = now;
        break;
      }
      cs[n] = ceil_at;
      gs[n] = green_at;
      ++n;
    }
    while (n-- > 0) f = std::min(gs[n], std::max(cs[n], f));
    return std::max(f, now + 1);
  }

  // ---- the wait heap ----------------------------------------------------------

  void Place(size_t pos, const Wait& w) {
    heap[pos] = w;
    cls[w.cls].heap_pos = static_cast<uint32_t>(pos);
  }
  void SiftUp(size_t pos) {
    const Wait w = heap[pos];
    while (pos > 0) {
      const size_t up = (pos - 1) / 2;
      if (heap[up].key <= w.key) break;
      Place(pos, heap[up]);
      pos = up;
    }
    Place(pos, w);
  }
  void SiftDown(size_t pos) {
    const Wait w = heap[pos];
    const size_t n = heap.size();
    for (;;) {
      size_t child = 2 * pos + 1;
      if (child >= n) break;
      if (child + 1 < n && heap[child + 1].key < heap[child].key) ++child;
      if (heap[child].key >= w.key) break;
      Place(pos, heap[child]);
      pos = child;
    }
    Place(pos, w);
  }
  void PqSet(uint32_t i, int64_t key) {
    const uint32_t pos = cls[i].heap_pos;
    if (pos == kNone) {
      heap.push_back(Wait{key, i});
      SiftUp(heap.size() - 1);
    } else if (key != heap[pos].key) {
      const bool up = key < heap[pos].key;
      heap[pos].key = key;
      if (up) {
        SiftUp(pos);
      } else {
        SiftDown(pos);
      }
    }
  }
  void PqRemove(uint32_t i) {
    const uint32_t pos = cls[i].heap_pos;
    if (pos == kNone) return;
    const Wait last = heap.back();
    heap.pop_back();
    cls[i].heap_pos = kNone;
    if (last.cls != i) {
      Place(pos, last);
      SiftDown(pos);
      SiftUp(cls[last.cls].heap_pos);
    }
  }
  // In the heap exactly while active and not green.
  void SyncPq(uint32_t i) {
    const Cls& c = cls[i];
    if (c.activity != 0 && c.mode != Mode::kCanSend) {
      PqSet(i, Key(i));
    } else {
      PqRemove(i);
    }
  }

  // ---- rings ------------------------------------------------------------------

  // Splits tree `t` into the classes with ids below `id` and the others.
  void Split(uint32_t t, uint32_t id, int prio, uint32_t* lo, uint32_t* hi) {
    while (t != kNone) {
      if (cls[t].id < id) {
        *lo = t;
        lo = &cls[t].right[prio];
        t = *lo;
      } else {
        *hi = t;
        hi = &cls[t].left[prio];
        t = *hi;
      }
    }
    *lo = *hi = kNone;
  }
  // Joins trees whose ids are all below those of `b` (in `a`) and the rest.
  uint32_t Merge(uint32_t a, uint32_t b, int prio) {
    uint32_t root = kNone;
    uint32_t* link = &root;
    while (a != kNone && b != kNone) {
      if (cls[a].tree_prio > cls[b].tree_prio) {
        *link = a;
        link = &cls[a].right[prio];
        a = *link;
      } else {
        *link = b;
        link = &cls[b].left[prio];
        b = *link;
      }
    }
    *link = a != kNone ? a : b;
    return root;
  }
  void TreeInsert(IdTree& t, uint32_t i, int prio) {
    const uint32_t id = cls[i].id;
    uint32_t* link = &t.root;
    while (*link != kNone && cls[*link].tree_prio > cls[i].tree_prio) {
      link = id < cls[*link].id ? &cls[*link].left[prio] : &cls[*link].right[prio];
    }
    Split(*link, id, prio, &cls[i].left[prio], &cls[i].right[prio]);
    *link = i;
  }
  void TreeErase(IdTree& t, uint32_t i, int prio) {
    const uint32_t id = cls[i].id;
    uint32_t* link = &t.root;
    while (*link != i) {
      link = id < cls[*link].id ? &cls[*link].left[prio] : &cls[*link].right[prio];
    }
    *link = Merge(cls[i].left[prio], cls[i].right[prio], prio);
    cls[i].left[prio] = cls[i].right[prio] = kNone;
  }
  // The first class with an id >= `id` (htb_id_find_next_upper), or kNone.
  uint32_t LowerBound(const IdTree& t, uint32_t id, int prio) const {
    uint32_t found = kNone;
    for (uint32_t x = t.root; x != kNone;) {
      if (cls[x].id >= id) {
        found = x;
        x = cls[x].left[prio];
      } else {
        x = cls[x].right[prio];
      }
    }
    return found;
  }
  // htb_next_rb_node: the class after `t.ptr`, kNone after the last.
  void Next(IdTree& t, int prio) {
    const uint32_t id = cls[t.ptr].id;
    t.ptr = id == std::numeric_limits<uint32_t>::max() ? kNone : LowerBound(t, id + 1, prio);
  }
  uint32_t First(const IdTree& t, int prio) const {
    uint32_t x = t.root;
    while (x != kNone && cls[x].left[prio] != kNone) x = cls[x].left[prio];
    return x;
  }

  void AddToRow(uint32_t i, unsigned mask) {
    Cls& c = cls[i];
    row_mask[c.level] |= static_cast<uint8_t>(mask);
    for (; mask; mask &= mask - 1) {
      const int prio = std::countr_zero(mask);
      TreeInsert(row[c.level][prio], i, prio);
    }
  }
  void RemoveFromRow(uint32_t i, unsigned mask) {
    Cls& c = cls[i];
    unsigned emptied = 0;
    for (; mask; mask &= mask - 1) {
      const int prio = std::countr_zero(mask);
      IdTree& t = row[c.level][prio];
      if (t.ptr == i) Next(t, prio);  // htb_remove_class_from_row
      TreeErase(t, i, prio);
      if (t.root == kNone) emptied |= 1u << prio;
    }
    row_mask[c.level] &= static_cast<uint8_t>(~emptied);
  }

  // ---- activity (htb_activate_prios / htb_deactivate_prios) -----------------

  // `i` is active for the prios in its activity (mode already set): hang it
  // in its parent's feeds while yellow, going up while the parents are
  // yellow too, or in the row of its level when green.
  void ActivatePrios(uint32_t i) {
    unsigned mask = cls[i].activity;
    uint32_t p = cls[i].parent;
    while (cls[i].mode == Mode::kMayBorrow && p != kNone && mask) {
      Cls& pc = cls[p];
      for (unsigned m = mask; m; m &= m - 1) {
        const int prio = std::countr_zero(m);
        if (pc.feed[prio].root != kNone) mask &= ~(1u << prio);  // parent already active there
        TreeInsert(pc.feed[prio], i, prio);
      }
      const bool was_idle = pc.activity == 0;
      pc.activity |= static_cast<uint8_t>(mask);
      if (was_idle && pc.activity) {
        // Idle classes' modes are not kept up to date: bring it up to now.
        pc.mode = ModeNow(pc);
        SyncPq(p);
      }
      i = p;
      p = pc.parent;
    }
    if (cls[i].mode == Mode::kCanSend && mask) AddToRow(i, mask);
  }

  void DeactivatePrios(uint32_t i) {
    unsigned mask = cls[i].activity;
    uint32_t p = cls[i].parent;
    while (cls[i].mode == Mode::kMayBorrow && p != kNone && mask) {
      Cls& pc = cls[p];
      const unsigned m0 = mask;
      mask = 0;
      for (unsigned m = m0; m; m &= m - 1) {
        const int prio = std::countr_zero(m);
        IdTree& t = pc.feed[prio];
        if (t.ptr == i) {  // forget the pointer, remember the classid
          t.last_id = cls[i].id;
          t.ptr = kNone;
        }
        TreeErase(t, i, prio);
        if (t.root == kNone) mask |= 1u << prio;
      }
      pc.activity &= static_cast<uint8_t>(~mask);
      if (pc.activity == 0) PqRemove(p);
      i = p;
      p = pc.parent;
    }
    if (cls[i].mode == Mode::kCanSend && mask) RemoveFromRow(i, mask);
  }

  // htb_change_class_mode: moves `i` between rows and feeds.
  void ChangeMode(uint32_t i, Mode mode) {
    Cls& c = cls[i];
    if (mode == c.mode) return;
    if (c.activity) {
      if (c.mode != Mode::kCantSend) DeactivatePrios(i);
      c.mode = mode;
      if (mode != Mode::kCantSend) ActivatePrios(i);
    } else {
      c.mode = mode;
    }
  }

  // htb_activate / htb_deactivate (leaves).
  void Activate(uint32_t i) {
    Cls& c = cls[i];
    if (c.activity) return;
    c.activity = static_cast<uint8_t>(1u << c.prio);
    c.mode = ModeNow(c);
    SyncPq(i);
    ActivatePrios(i);
  }
  void Deactivate(uint32_t i) {
    DeactivatePrios(i);
    cls[i].activity = 0;
    PqRemove(i);
  }

  // htb_do_events, for every level at once: classes whose mode is due to
  // change by now.
  void ProcessEvents() {
    while (!heap.empty() && heap[0].key <= now) {
      const uint32_t i = heap[0].cls;
      ChangeMode(i, ModeNow(cls[i]));
      SyncPq(i);  // still active: a new key > now, or out when green
    }
  }

  // ---- dequeue ------------------------------------------------------------------

  // htb_lookup_leaf: from the row's current class down the feeds' current
  // classes to a leaf. A tree whose pointer has run past its last class is
  // rewound, and the pointer of the tree above moves on.
  uint32_t LookupLeaf(int level, int prio) {
    IdTree* stack[kLevels + 1];
    int sp = 0;
    stack[0] = &row[level][prio];
    if (stack[0]->root == kNone) return kNone;
    for (int guard = 0; guard < 65535; ++guard) {
      IdTree& t = *stack[sp];
      if (t.ptr == kNone && t.last_id != 0) t.ptr = LowerBound(t, t.last_id, prio);
      t.last_id = 0;
      if (t.ptr == kNone) {  // at the right end: rewind and go up
        t.ptr = First(t, prio);
        if (sp > 0) {
          IdTree& up = *stack[--sp];
          if (up.ptr == kNone) return kNone;  // an invariant broken; the caller checks
          Next(up, prio);
        }
      } else {
        const uint32_t i = t.ptr;
        if (cls[i].leaf) return i;
        if (sp == kLevels || cls[i].feed[prio].root == kNone) return kNone;
        stack[++sp] = &cls[i].feed[prio];
      }
    }
    return kNone;
  }

  // Tokens of one bucket after `diff` ns of refill (capped at the bucket)
  // and a charge of `bytes`, floored at -mbuffer (accnt_tokens).
  static Tokens Accnt(Tokens toks, Tokens size, Tokens floor, uint64_t r, int64_t diff,
                      uint32_t bytes) {
    toks += Tokens(diff) * r;
    if (toks > size) toks = size;
    toks -= Tokens(bytes) * kNsPerSec;
    if (toks <= -floor) toks = -floor + r;  // the kernel: 1 ns above -mbuffer
    return toks;
  }

  // htb_charge_class. First the tokens of the whole path, then the modes, so
  // that the wait keys see the ancestors' charged tokens.
  void Charge(uint32_t leaf, int level, uint32_t bytes) {
    for (uint32_t i = leaf; i != kNone; i = cls[i].parent) {
      Cls& c = cls[i];
      const int64_t diff = Diff(c);
      if (c.level >= level) {
        if (c.level == level && i != leaf) ++c.stats.lent;
        c.tokens = Accnt(c.tokens, c.buffer, c.mbuf, c.rate, diff, bytes);
      } else {
        ++c.stats.borrowed;
        c.tokens += Tokens(diff) * c.rate;  // refilled, not charged (as the kernel)
      }
      c.ctokens = Accnt(c.ctokens, c.cbuffer, c.cmbuf, c.ceil, diff, bytes);
      c.t_c = now;
      c.stats.sent_bytes += bytes;
      ++c.stats.sent_packets;
      --c.stats.backlog;
    }
    for (uint32_t i = leaf; i != kNone; i = cls[i].parent) {
      Cls& c = cls[i];
      const Mode old = c.mode;
      const Mode mode = ModeNow(c);
      ChangeMode(i, mode);
      if (c.activity == 0 || mode == Mode::kCanSend) {
        PqRemove(i);
      } else if (old != mode || mode == Mode::kCantSend || c.level >= level ||
                 c.parent == kNone) {
        // A borrower that stays yellow keeps its key: its rate tokens were
        // only refilled.
        PqSet(i, Key(i));
      }
    }
  }

  std::optional<Sent> Dequeue() {
    if (backlog == 0) return std::nullopt;
    now = ReadClock();
    ProcessEvents();
    for (int level = 0; level < kLevels; ++level) {
      if (row_mask[level] == 0) continue;
      const int prio = std::countr_zero(unsigned{row_mask[level]});
      const uint32_t i = LookupLeaf(level, prio);
      QCLOUD_CHECK_MSG(i != kNone, "htb: an active row leads to no leaf");
      Cls& c = cls[i];
      const Packet p = c.queue.front();
      c.queue.pop();
      --backlog;
      c.deficit[level] -= p.bytes;
      if (c.deficit[level] < 0) {
        c.deficit[level] += c.quantum;
        Next(level ? cls[c.parent].feed[prio] : row[0][prio], prio);
      }
      if (c.queue.empty()) Deactivate(i);
      Charge(i, level, p.bytes);
      return Sent{.leaf = c.id, .bytes = p.bytes, .cookie = p.cookie};
    }
    return std::nullopt;
  }

  MonoTime NextReady() {
    if (backlog == 0) return MonoTime::max();
    now = ReadClock();
    ProcessEvents();
    for (int level = 0; level < kLevels; ++level) {
      if (row_mask[level]) return MonoTime(std::chrono::nanoseconds(now));
    }
    // Every backlogged leaf's chain ends in a row or at a waiting class.
    QCLOUD_CHECK_MSG(!heap.empty(), "htb: backlog but nothing waits");
    // Keys are never late, but may be early: tokens of an ancestor spent by
    // another subtree since the key was computed. Recompute the first until
    // it stands; then it is the earliest of all.
    for (;;) {
      const uint32_t i = heap[0].cls;
      const int64_t key = Key(i);
      if (key == heap[0].key) return MonoTime(std::chrono::nanoseconds(key));
      PqSet(i, key);
    }
  }

  bool Enqueue(uint32_t id, uint32_t bytes, uint64_t cookie) {
    const auto it = index.find(id);
    if (it == index.end() || !cls[it->second].leaf || bytes == 0) {
      ++unknown_drops;
      return false;
    }
    const uint32_t leaf = it->second;
    Cls& c = cls[leaf];
    if (c.queue.size() >= queue_limit) {
      for (uint32_t i = leaf; i != kNone; i = cls[i].parent) ++cls[i].stats.dropped;
      return false;
    }
    c.queue.push(Packet{bytes, cookie});
    ++backlog;
    for (uint32_t i = leaf; i != kNone; i = cls[i].parent) ++cls[i].stats.backlog;
    if (c.queue.size() == 1) {
      now = ReadClock();
      Activate(leaf);
    }
    return true;
  }

  Status Update(const HtbClass& h) {
    const auto it = index.find(h.id);
    if (it == index.end()) return NotFound(fmt::format("htb: no class {}", h.id));
    const uint32_t i = it->second;
    Cls& c = cls[i];
    if (h.parent != 0 && h.parent != c.parent_id) {
      return InvalidArgument(
          fmt::format("htb: class {}: Update cannot move it to parent {}", h.id, h.parent));
    }
    QCLOUD_RETURN_IF_ERROR(CheckParams(h));
    const uint64_t ceil = h.ceil ? h.ceil : h.rate;
    if (c.parent != kNone && h.rate > cls[c.parent].ceil) {
      return InvalidArgument(fmt::format("htb: class {}: rate {} above its parent's ceil {}",
                                         h.id, h.rate, cls[c.parent].ceil));
    }
    if (c.child_rate_max > ceil) {
      return InvalidArgument(fmt::format("htb: class {}: ceil {} below a child's rate {}", h.id,
                                         ceil, c.child_rate_max));
    }

    now = ReadClock();
    ProcessEvents();
    // Tokens earned so far at the old rates, kept as bytes.
    const int64_t diff = Diff(c);
    c.tokens = std::min(c.tokens + Tokens(diff) * c.rate, c.buffer);
    c.ctokens = std::min(c.ctokens + Tokens(diff) * c.ceil, c.cbuffer);
    c.t_c = now;
    const bool active_leaf = c.leaf && c.activity;
    if (active_leaf) Deactivate(i);  // its prio may change

    Configure(c, h);
    c.tokens = std::clamp(c.tokens, -c.mbuf + c.rate, c.buffer);
    c.ctokens = std::clamp(c.ctokens, -c.cmbuf + c.ceil, c.cbuffer);
    if (c.parent != kNone) {
      Cls& pc = cls[c.parent];
      pc.child_rate_max = 0;
      for (const Cls& s : cls) {
        if (s.parent == c.parent) pc.child_rate_max = std::max(pc.child_rate_max, s.rate);
      }
    }
    if (active_leaf) {
      Activate(i);
    } else {
      ChangeMode(i, ModeNow(c));
      SyncPq(i);
    }
    // Keys of red classes depend on their ancestors' rates: recompute all.
    for (Wait& w : heap) w.key = Key(w.cls);
    for (size_t pos = heap.size() / 2; pos-- > 0;) SiftDown(pos);
    return Status::Ok();
  }
};

// ---- Htb --------------------------------------------------------------------------

Htb::Htb(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Htb::~Htb() = default;

Result<std::unique_ptr<Htb>> Htb::Open(const HtbOptions& options, std::vector<HtbClass> classes) {
  if (options.r2q == 0) return InvalidArgument("htb: r2q 0");
  if (options.queue_limit == 0) return InvalidArgument("htb: queue_limit 0");
  if (classes.size() > kMaxClasses) {
    return InvalidArgument(
        fmt::format("htb: {} classes, at most {}", classes.size(), kMaxClasses));
  }
  auto impl = std::make_unique<Impl>(options);
  Impl& m = *impl;
  const size_t n = classes.size();
  m.index.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    const HtbClass& h = classes[i];
    if (h.id == 0) return InvalidArgument("htb: class id 0");
    if (!m.index.emplace(h.id, static_cast<uint32_t>(i)).second) {
      return InvalidArgument(fmt::format("htb: duplicate class id {}", h.id));
    }
    QCLOUD_RETURN_IF_ERROR(Impl::CheckParams(h));
  }
  m.cls.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const HtbClass& h = classes[i];
    Cls& c = m.cls[i];
    c.id = h.id;
    c.parent_id = h.parent;
    if (h.parent != 0) {
      const auto it = m.index.find(h.parent);
      if (it == m.index.end()) {
        return InvalidArgument(fmt::format("htb: class {}: unknown parent {}", h.id, h.parent));
      }
      c.parent = it->second;
    }
    m.Configure(c, h);
  }
  // Depths: walk up, at most 8 levels; a longer walk is a cycle or too deep.
  std::vector<int> depth(n, -1);
  for (size_t i = 0; i < n; ++i) {
    int d = 0;
    uint32_t x = static_cast<uint32_t>(i);
    while (m.cls[x].parent != kNone && d < kLevels) {
      x = m.cls[x].parent;
      ++d;
    }
    if (m.cls[x].parent != kNone) {
      // Tell a cycle from a deep tree: walk on (n steps at most).
      uint32_t y = static_cast<uint32_t>(i);
      size_t steps = 0;
      while (m.cls[y].parent != kNone && steps <= n) {
        y = m.cls[y].parent;
        ++steps;
      }
      if (m.cls[y].parent != kNone) {
        return InvalidArgument(fmt::format("htb: class {}: its parents form a cycle", m.cls[i].id));
      }
      return InvalidArgument(
          fmt::format("htb: class {}: deeper than {} levels", m.cls[i].id, kLevels));
    }
    if (d > kLevels - 1) {
      return InvalidArgument(
          fmt::format("htb: class {}: deeper than {} levels", m.cls[i].id, kLevels));
    }
    depth[i] = d;
  }
  for (size_t i = 0; i < n; ++i) {
    Cls& c = m.cls[i];
    if (c.parent == kNone) continue;
    Cls& p = m.cls[c.parent];
    if (c.rate > p.ceil) {
      return InvalidArgument(fmt::format("htb: class {}: rate {} above its parent's ceil {}",
                                         c.id, c.rate, p.ceil));
    }
    p.leaf = false;
    p.child_rate_max = std::max(p.child_rate_max, c.rate);
  }
  const int64_t now = m.ReadClock();
  for (size_t i = 0; i < n; ++i) {
    Cls& c = m.cls[i];
    // The kernel's levels: top down from 7 for inner classes, 0 for leaves.
    c.level = c.leaf ? 0 : kLevels - 1 - depth[i];
    // Treap priorities: any fixed random order will do (splitmix64 of the position).
    uint64_t z = (i + 1) * 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    c.tree_prio = static_cast<uint32_t>(z ^ (z >> 31));
    c.tokens = c.buffer;
    c.ctokens = c.cbuffer;
    c.t_c = now;
    c.mode = Mode::kCanSend;
  }
  m.now = now;
  return std::unique_ptr<Htb>(new Htb(std::move(impl)));
}

bool Htb::Enqueue(uint32_t leaf, uint32_t bytes, uint64_t cookie) {
  return impl_->Enqueue(leaf, bytes, cookie);
}

std::optional<Htb::Sent> Htb::Dequeue() { return impl_->Dequeue(); }

MonoTime Htb::NextReady() const { return impl_->NextReady(); }

Status Htb::Update(const HtbClass& cls) { return impl_->Update(cls); }

Result<HtbClassStats> Htb::Stats(uint32_t id) const {
  const auto it = impl_->index.find(id);
  if (it == impl_->index.end()) return NotFound(fmt::format("htb: no class {}", id));
  return impl_->cls[it->second].stats;
}

uint64_t Htb::unknown_drops() const noexcept { return impl_->unknown_drops; }

size_t Htb::backlog() const noexcept { return impl_->backlog; }

}  // namespace qcloud::net
