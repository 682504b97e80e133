#pragma once

// A simulated network for qcloud::sched failure detection, on a
// ManualClock: `nodes` hosts, each heartbeating its watchers every
// `interval` on `paths` networks (service, management, out-of-band). Each
// host is watched by `watchers` others (the next ones on a seeded ring).
// Messages are lost with a per-path probability and delayed by 1 ms plus a
// uniform jitter; a host can be killed (it stops sending), a path can be
// cut for a host (nothing in or out on it), and an observer can be made
// deaf (nothing reaches it on any path: a partitioned observer). Observers
// check their PathMonitor every `check` and report changes to one Arbiter.
// Used by tests/sched/failure_test.cc and bench/sched/sched_bench.cc.

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/sched/failure.h"

namespace qcloud::sched::sim {

struct NetOptions {
  int nodes = 1000;
  int paths = 3;
  int watchers = 8;
  std::chrono::milliseconds interval{250};
  std::chrono::milliseconds check{100};
  std::chrono::milliseconds jitter{100};
  std::vector<double> loss = {0, 0, 0};  // per path
  size_t quorum = 3;
  uint64_t seed = 1;
};

class Net {
 public:
  explicit Net(NetOptions o) : o_(std::move(o)), rng_(o_.seed) {
    std::vector<int> ring(static_cast<size_t>(o_.nodes));
    for (int i = 0; i < o_.nodes; ++i) ring[static_cast<size_t>(i)] = i;
    std::shuffle(ring.begin(), ring.end(), rng_);
    watchers_.resize(static_cast<size_t>(o_.nodes));
    for (int k = 0; k < o_.nodes; ++k) {
      const int node = ring[static_cast<size_t>(k)];
      for (int w = 1; w <= o_.watchers; ++w) {
        watchers_[static_cast<size_t>(node)].push_back(ring[static_cast<size_t>((k + w) % o_.nodes)]);
      }
    }
    std::vector<std::string> names;
    for (int i = 0; i < o_.nodes; ++i) names.push_back(Name(i));
    arbiter_ = std::make_unique<Arbiter>(ArbiterOptions{.quorum = o_.quorum, .max_dissent = 0}, names);
    for (int i = 0; i < o_.nodes; ++i) {
      monitors_.push_back(std::make_unique<PathMonitor>(PathMonitorOptions{.clock = &clock_}));
      suspected_.emplace_back();
    }
    dead_.assign(static_cast<size_t>(o_.nodes), false);
    deaf_.assign(static_cast<size_t>(o_.nodes), false);
    cut_.assign(static_cast<size_t>(o_.nodes * o_.paths), false);
    // Heartbeats start spread over one interval.
    for (int i = 0; i < o_.nodes; ++i) {
      next_beat_.push({Ms(static_cast<int64_t>(rng_() % static_cast<uint64_t>(o_.interval.count()))), i});
    }
  }

  static std::string Name(int i) { return "h" + std::to_string(i); }
  ManualClock& clock() { return clock_; }
  Arbiter& arbiter() { return *arbiter_; }
  int64_t now_ms() const { return now_ms_; }

  void Kill(int node) { dead_[static_cast<size_t>(node)] = true; }
  void Deafen(int node, bool deaf) { deaf_[static_cast<size_t>(node)] = deaf; }
  void Cut(int node, int path, bool cut) { cut_[static_cast<size_t>(node * o_.paths + path)] = cut; }
  void SetLoss(int path, double p) { o_.loss[static_cast<size_t>(path)] = p; }

  // Runs the simulation to `until_ms`; calls on_dead(name, ms) when the
  // arbiter declares a host dead.
  template <typename OnDead>
  void RunUntil(int64_t until_ms, OnDead&& on_dead) {
    while (true) {
      int64_t t = next_check_;
      if (!next_beat_.empty()) t = std::min(t, next_beat_.top().at.count());
      if (!inflight_.empty()) t = std::min(t, inflight_.top().at);
      if (t > until_ms) break;
      Advance(t);
      if (!inflight_.empty() && inflight_.top().at == t) {
        const Msg m = inflight_.top();
        inflight_.pop();
        if (!deaf_[static_cast<size_t>(m.to)] && !cut_[static_cast<size_t>(m.to * o_.paths + m.path)]) {
          monitors_[static_cast<size_t>(m.to)]->Heartbeat(Name(m.from), static_cast<size_t>(m.path));
        }
        continue;
      }
      if (!next_beat_.empty() && next_beat_.top().at.count() == t) {
        const Beat b = next_beat_.top();
        next_beat_.pop();
        if (!dead_[static_cast<size_t>(b.node)]) Send(b.node, t);
        next_beat_.push({b.at + o_.interval, b.node});
        continue;
      }
      // A check round: every observer reports its changes.
      for (int i = 0; i < o_.nodes; ++i) {
        if (dead_[static_cast<size_t>(i)]) continue;
        std::set<std::string> now;
        for (int peer : watched_by(i)) {
          if (monitors_[static_cast<size_t>(i)]->Suspects(Name(peer))) now.insert(Name(peer));
        }
        auto& before = suspected_[static_cast<size_t>(i)];
        for (const std::string& s : now) {
          if (!before.contains(s)) arbiter_->Report(Name(i), s, true);
        }
        for (const std::string& s : before) {
          if (!now.contains(s)) arbiter_->Report(Name(i), s, false);
        }
        before = std::move(now);
      }
      for (const std::string& d : arbiter_->Dead()) {
        if (declared_.insert(d).second) on_dead(d, t);
      }
      next_check_ += o_.check.count();
    }
    Advance(until_ms);
  }

 private:
  using Ms = std::chrono::milliseconds;
  struct Beat {
    Ms at;
    int node;
    bool operator>(const Beat& o) const { return at > o.at; }
  };
  struct Msg {
    int64_t at;
    int from, to, path;
    bool operator>(const Msg& o) const { return at > o.at; }
  };

  const std::vector<int>& watched_by(int observer) {
    if (watched_.empty()) {
      watched_.resize(static_cast<size_t>(o_.nodes));
      for (int n = 0; n < o_.nodes; ++n) {
        for (int w : watchers_[static_cast<size_t>(n)]) watched_[static_cast<size_t>(w)].push_back(n);
      }
    }
    return watched_[static_cast<size_t>(observer)];
  }

  void Advance(int64_t t) {
    if (t > now_ms_) {
      clock_.Advance(Ms(t - now_ms_));
      now_ms_ = t;
    }
  }

  void Send(int from, int64_t t) {
    std::uniform_real_distribution<double> u(0, 1);
    for (int to : watchers_[static_cast<size_t>(from)]) {
      for (int path = 0; path < o_.paths; ++path) {
        if (cut_[static_cast<size_t>(from * o_.paths + path)]) continue;
        if (u(rng_) < o_.loss[static_cast<size_t>(path)]) continue;
        const int64_t delay = 1 + static_cast<int64_t>(rng_() % static_cast<uint64_t>(o_.jitter.count() + 1));
        inflight_.push({t + delay, from, to, path});
      }
    }
  }

  NetOptions o_;
  std::mt19937_64 rng_;
  ManualClock clock_;
  int64_t now_ms_ = 0;
  int64_t next_check_ = 0;
  std::vector<std::vector<int>> watchers_, watched_;
  std::unique_ptr<Arbiter> arbiter_;
  std::vector<std::unique_ptr<PathMonitor>> monitors_;
  std::vector<std::set<std::string>> suspected_;
  std::vector<bool> dead_, deaf_, cut_;
  std::set<std::string> declared_;
  std::priority_queue<Beat, std::vector<Beat>, std::greater<>> next_beat_;
  std::priority_queue<Msg, std::vector<Msg>, std::greater<>> inflight_;
};

}  // namespace qcloud::sched::sim
