#pragma once

// qcloud::sched failure detection — CEE's "调度高可用/机器容灾": hosts
// heartbeat each other over several networks, each observer keeps a
// phi-accrual suspicion per peer and path, and a host is declared dead only
// when the evidence agrees across paths and across observers. A death
// yields an evacuation plan from the placement engine.
//
//   PathMonitor mon({.clock = &clock});           // on each host: its view of its peers
//   mon.Heartbeat("h7", 0);                        // a heartbeat from h7 came in on path 0
//   if (mon.Suspects("h7")) report(...);           // every path of h7 silent past the threshold
//
//   Arbiter arb({.quorum = 3}, {"h1", ..., "h1000"});
//   arb.Report("h2", "h7", true);                  // h2 suspects h7
//   for (const std::string& dead : arb.Dead()) ... // declared by a quorum of its observers
//
// Phi accrual (Hayashibara et al., as in Akka and Cassandra): per path, the
// inter-arrival times of the last `window` heartbeats give a mean and a
// standard deviation (at least min_stddev); phi = -log10(P(a heartbeat
// arrives later than now)), under a normal distribution shifted by
// acceptable_pause. A path is suspect when phi > threshold; a peer is
// suspect at an observer when every path that has ever heard from it is
// suspect (one flaky network does not make a host dead). The arbiter
// declares a host dead when at least `quorum` observers suspect it and no
// more than `max_dissent` of those that watch it say it is alive (one
// partitioned observer suspects everyone and is outvoted), and alive again
// when a heartbeat-backed report says so.
//
// Time: every reading from the Clock (tests run on ManualClock and never
// sleep). Thread safety: one thread at a time per object.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/sched/placement.h"

namespace qcloud::sched {

struct PathMonitorOptions {
  Clock* clock = nullptr;                                              // null = RealClock()
  double threshold = 8.0;                                              // phi above this: path suspect
  size_t window = 100;                                                 // inter-arrival times kept per path
  std::chrono::milliseconds min_stddev = std::chrono::milliseconds(100);
  std::chrono::milliseconds acceptable_pause = std::chrono::milliseconds(500);
  std::chrono::milliseconds first_interval = std::chrono::milliseconds(250);  // assumed before two heartbeats
  size_t max_paths = 8;                                                // path ids 0 .. max_paths-1
};

class QCLOUD_EXPORT PathMonitor {
 public:
  explicit PathMonitor(const PathMonitorOptions& options);

  // A heartbeat from `peer` on `path` arrived now. Paths >= max_paths are ignored.
  void Heartbeat(std::string_view peer, size_t path);
  // phi of one path now (0 for a path never heard on).
  double Phi(std::string_view peer, size_t path) const;
  // Every path heard on is suspect now (false for a peer never heard from).
  bool Suspects(std::string_view peer) const;
  // The peers suspected now, sorted.
  std::vector<std::string> Suspected() const;
  // Stops watching a peer.
  void Forget(std::string_view peer);

 private:
  struct Path {
    MonoTime last{};
    bool heard = false;
    std::deque<double> intervals_ms;
    double sum = 0, sum_sq = 0;
  };
  double PhiOf(const Path& p, MonoTime now) const;

  PathMonitorOptions options_;
  Clock* clock_;
  std::map<std::string, std::vector<Path>, std::less<>> peers_;
};

struct ArbiterOptions {
  size_t quorum = 3;       // observers that must suspect a host
  size_t max_dissent = 0;  // observers that may still hear it (a flaky path elsewhere)
};

class QCLOUD_EXPORT Arbiter {
 public:
  Arbiter(const ArbiterOptions& options, std::vector<std::string> hosts);

  // Observer's current verdict on `peer` (true: suspects it; false: hears it).
  void Report(std::string_view observer, std::string_view peer, bool suspect);
  // Hosts declared dead (sorted); a host stays dead until a report says an
  // observer hears it again.
  std::vector<std::string> Dead() const;
  bool IsDead(std::string_view host) const;

 private:
  struct Votes {
    std::set<std::string, std::less<>> suspect, alive;
    bool dead = false;
  };
  void Decide(Votes& v);

  ArbiterOptions options_;
  std::map<std::string, Votes, std::less<>> hosts_;
};

// The heartbeat datagram (UDP, one per peer and path per interval):
//   "QHB1" | u8 path | u8 name length n (1..64) | n bytes of the sender's
//   name ([A-Za-z0-9._-]) | u64 sequence | i64 sender wall ms  (little endian)
// Network input: DecodeHeartbeat() checks every field and the exact size.
inline constexpr size_t kMaxHeartbeatName = 64;
struct HeartbeatMessage {
  std::string sender;
  uint8_t path = 0;
  uint64_t seq = 0;
  int64_t sent_ms = 0;
};
QCLOUD_EXPORT std::string EncodeHeartbeat(const HeartbeatMessage& m);
// kInvalidArgument: not a heartbeat, or a bad field.
QCLOUD_EXPORT Result<HeartbeatMessage> DecodeHeartbeat(std::string_view datagram);

// An observer's verdict on a peer, sent to the arbiter (UDP):
//   "QSR1" | u8 suspect (0 or 1) | u8 n | observer name (n bytes) | u8 m |
//   peer name (m bytes) | i64 sender wall ms   (names as in heartbeats)
struct SuspicionReport {
  std::string observer, peer;
  bool suspect = false;
  int64_t sent_ms = 0;
};
QCLOUD_EXPORT std::string EncodeSuspicion(const SuspicionReport& r);
// kInvalidArgument: not a report, or a bad field.
QCLOUD_EXPORT Result<SuspicionReport> DecodeSuspicion(std::string_view datagram);

// A dead host's instances re-placed on the live hosts: the others stay
// where they are (pinned), the dead host's go where Place() puts them
// within every constraint. `current` maps instance -> host.
struct Evacuation {
  std::map<std::string, std::string> moves;  // instance -> new host
  std::vector<Unplaced> stranded;            // could not be re-placed, with the reason
};
QCLOUD_EXPORT Result<Evacuation> PlanEvacuation(std::span<const Host> hosts, std::span<const Instance> instances,
                                                const std::map<std::string, std::string>& current,
                                                std::string_view dead_host, const PlacementOptions& options = {});

}  // namespace qcloud::sched
