#pragma once

// qcloud::net dual underlay planes — the seeds' "双平面": every host has an
// address on the service network and one on the storage network, and each
// backs the other up. A PlaneMonitor probes every peer on both planes
// (echo request, echo reply over UDP); a plane's path to a peer is down
// when no reply came for `dead_after`; tunnels to that peer then use the
// other plane, and go back to the service plane once it has answered
// `recover_after` probes in a row.
//
//   PlaneMonitor mon({.clock = &clock, .host_id = 1});
//   mon.AddPeer(2);
//   for (const PlaneProbe& p : mon.Due()) send(EncodeProbe(p), peer 2's address on p.plane);
//   mon.OnReply(decoded);                      // a reply came back
//   for (const PlaneChange& c : mon.Changes()) sw.SetActivePlane(c.host, c.plane);
//
// With the defaults (probe every 100 ms, down after 500 ms without a
// reply) a cut plane is left within 0.6 s of the cut.
//
// Wire format of a probe datagram (all integers big-endian), 32 bytes:
//   "QCPL" | version 1 (u8) | kind (u8: 1 request, 2 reply) | plane (u8) |
//   reserved 0 (u8) | sender host (u32) | target host (u32) | seq (u64) |
//   sender's send time, ns (u64 from the sender's clock, echoed back)
// A reply echoes the request's plane, seq and time with the hosts swapped.
// DecodeProbe() refuses any other size, magic, version, kind or plane.
//
// Time: the injected Clock only. Thread safety: one thread at a time.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/net/switch.h"

namespace qcloud::net {

inline constexpr size_t kProbeLen = 32;

struct PlaneProbe {
  enum Kind : uint8_t { kRequest = 1, kReply = 2 };
  Kind kind = kRequest;
  Plane plane = Plane::kService;
  uint32_t from = 0;       // sender host
  uint32_t to = 0;         // target host
  uint64_t seq = 0;
  uint64_t sent_ns = 0;    // the requester's clock, echoed in the reply
};

QCLOUD_EXPORT void EncodeProbe(const PlaneProbe& p, uint8_t out[kProbeLen]) noexcept;
QCLOUD_EXPORT std::optional<PlaneProbe> DecodeProbe(std::span<const uint8_t> in) noexcept;

struct PlaneMonitorOptions {
  Clock* clock = nullptr;                               // not owned; null = RealClock()
  uint32_t host_id = 0;                                 // this host
  std::chrono::milliseconds interval{100};              // a probe per peer and plane this often
  std::chrono::milliseconds dead_after{500};            // no reply for this long: the path is down
  unsigned recover_after = 3;                           // replies in a row before the service plane is used again
};

struct PlaneChange {
  uint32_t host = 0;
  Plane plane = Plane::kService;  // the plane tunnels to `host` use from now on
};

struct PlanePathState {
  bool up = true;
  uint64_t sent = 0;
  uint64_t replies = 0;
  double last_rtt_ms = 0;
};

class QCLOUD_EXPORT PlaneMonitor {
 public:
  explicit PlaneMonitor(const PlaneMonitorOptions& options);

  // Peers start with both paths up (a new peer is trusted until it fails
  // to answer) and the service plane active. `has_storage` false: the
  // peer has one plane, which is never left. For a peer already known only
  // `has_storage` changes: what its paths did so far stands.
  void AddPeer(uint32_t host, bool has_storage = true);
  void RemovePeer(uint32_t host);

  // The probes to send now (each peer and plane whose interval has passed).
  std::vector<PlaneProbe> Due();
  // When Due() next has something.
  MonoTime NextDue() const;
  // A reply to one of our probes; others (unknown peer, stale) are ignored.
  void OnReply(const PlaneProbe& reply);
  // The answer to a request addressed to this host: send it back to where
  // the request came from. nullopt for a request not for this host.
  std::optional<PlaneProbe> Answer(const PlaneProbe& request) const;
  // Plane choices that changed since the last call (paths re-evaluated at
  // the clock's current time).
  std::vector<PlaneChange> Changes();

  Plane Active(uint32_t host) const;
  PlanePathState Path(uint32_t host, Plane plane) const;
  uint64_t switches() const noexcept { return switches_; }

 private:
  struct PathData {
    PlanePathState state;
    MonoTime next_due{};
    MonoTime last_reply{};
    uint64_t next_seq = 1;
    uint64_t last_acked = 0;
    unsigned streak = 0;  // replies in a row since it was last down
  };
  struct Peer {
    PathData path[2];
    bool has_storage = true;
    Plane active = Plane::kService;
    Plane reported = Plane::kService;
  };
  void Evaluate(uint32_t host, Peer& peer, MonoTime now);

  PlaneMonitorOptions options_;
  Clock* clock_;
  std::map<uint32_t, Peer> peers_;
  uint64_t switches_ = 0;
};

}  // namespace qcloud::net
