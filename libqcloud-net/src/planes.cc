#include "qcloud/net/planes.h"

#include <algorithm>
#include <cstring>

namespace qcloud::net {
namespace {

constexpr uint8_t kMagic[4] = {'Q', 'C', 'P', 'L'};
constexpr uint8_t kVersion = 1;

void Put32(uint8_t* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<uint8_t>(v);
}
uint64_t Get(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | p[i];
  return v;
}

uint64_t Nanos(MonoTime t) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

}  // namespace

void EncodeProbe(const PlaneProbe& p, uint8_t out[kProbeLen]) noexcept {
  std::memcpy(out, kMagic, 4);
  out[4] = kVersion;
  out[5] = p.kind;
  out[6] = static_cast<uint8_t>(p.plane);
  out[7] = 0;
  Put32(out + 8, p.from);
  Put32(out + 12, p.to);
  Put64(out + 16, p.seq);
  Put64(out + 24, p.sent_ns);
}

std::optional<PlaneProbe> DecodeProbe(std::span<const uint8_t> in) noexcept {
  if (in.size() != kProbeLen || std::memcmp(in.data(), kMagic, 4) != 0 || in[4] != kVersion) return std::nullopt;
  if ((in[5] != PlaneProbe::kRequest && in[5] != PlaneProbe::kReply) || in[6] > 1 || in[7] != 0) return std::nullopt;
  PlaneProbe p;
  p.kind = static_cast<PlaneProbe::Kind>(in[5]);
  p.plane = static_cast<Plane>(in[6]);
  p.from = static_cast<uint32_t>(Get(in.data() + 8, 4));
  p.to = static_cast<uint32_t>(Get(in.data() + 12, 4));
  p.seq = Get(in.data() + 16, 8);
  p.sent_ns = Get(in.data() + 24, 8);
  return p;
}

PlaneMonitor::PlaneMonitor(const PlaneMonitorOptions& options)
    : options_(options), clock_(options.clock != nullptr ? options.clock : &RealClock()) {
  if (options_.interval <= std::chrono::milliseconds(0)) options_.interval = std::chrono::milliseconds(100);
  if (options_.dead_after < options_.interval) options_.dead_after = options_.interval * 2;
  if (options_.recover_after == 0) options_.recover_after = 1;
}

void PlaneMonitor::AddPeer(uint32_t host, bool has_storage) {
  if (auto known = peers_.find(host); known != peers_.end()) {
    // The controller said it again: keep what the probes found.
    known->second.has_storage = has_storage;
    if (!has_storage) known->second.active = Plane::kService;
    return;
  }
  MonoTime now = clock_->MonotonicNow();
  Peer& peer = peers_[host];
  peer.has_storage = has_storage;
  for (PathData& path : peer.path) {
    path.next_due = now;
    path.last_reply = now;
    path.state.up = true;
    path.streak = options_.recover_after;
  }
}

void PlaneMonitor::RemovePeer(uint32_t host) { peers_.erase(host); }

std::vector<PlaneProbe> PlaneMonitor::Due() {
  std::vector<PlaneProbe> out;
  MonoTime now = clock_->MonotonicNow();
  for (auto& [host, peer] : peers_) {
    for (int plane = 0; plane < (peer.has_storage ? 2 : 1); ++plane) {
      PathData& path = peer.path[plane];
      if (now < path.next_due) continue;
      PlaneProbe p;
      p.kind = PlaneProbe::kRequest;
      p.plane = static_cast<Plane>(plane);
      p.from = options_.host_id;
      p.to = host;
      p.seq = path.next_seq++;
      p.sent_ns = Nanos(now);
      ++path.state.sent;
      // Keep the cadence, but never fire twice for one late call.
      path.next_due += options_.interval;
      if (path.next_due <= now) path.next_due = now + options_.interval;
      out.push_back(p);
    }
  }
  return out;
}

MonoTime PlaneMonitor::NextDue() const {
  MonoTime next = MonoTime::max();
  for (const auto& [host, peer] : peers_)
    for (int plane = 0; plane < (peer.has_storage ? 2 : 1); ++plane) next = std::min(next, peer.path[plane].next_due);
  return next;
}

void PlaneMonitor::OnReply(const PlaneProbe& reply) {
  if (reply.kind != PlaneProbe::kReply || reply.to != options_.host_id) return;
  auto it = peers_.find(reply.from);
  if (it == peers_.end()) return;
  Peer& peer = it->second;
  int plane = static_cast<int>(reply.plane);
  if (plane == 1 && !peer.has_storage) return;
  PathData& path = peer.path[plane];
  // Only replies to probes we sent, each once, in order.
  if (reply.seq == 0 || reply.seq >= path.next_seq || reply.seq <= path.last_acked) return;
  // In a row: a probe between this reply and the last went unanswered.
  if (reply.seq != path.last_acked + 1) path.streak = 0;
  path.last_acked = reply.seq;
  MonoTime now = clock_->MonotonicNow();
  path.last_reply = now;
  ++path.state.replies;
  ++path.streak;
  uint64_t now_ns = Nanos(now);
  if (reply.sent_ns <= now_ns) path.state.last_rtt_ms = static_cast<double>(now_ns - reply.sent_ns) / 1e6;
}

std::optional<PlaneProbe> PlaneMonitor::Answer(const PlaneProbe& request) const {
  if (request.kind != PlaneProbe::kRequest || request.to != options_.host_id) return std::nullopt;
  PlaneProbe r = request;
  r.kind = PlaneProbe::kReply;
  r.from = options_.host_id;
  r.to = request.from;
  return r;
}

void PlaneMonitor::Evaluate(uint32_t, Peer& peer, MonoTime now) {
  for (int plane = 0; plane < 2; ++plane) {
    PathData& path = peer.path[plane];
    bool fresh = now - path.last_reply < options_.dead_after;
    if (!fresh) {
      path.state.up = false;
      path.streak = 0;
    } else if (!path.state.up && path.streak >= options_.recover_after) {
      path.state.up = true;
    }
  }
  if (!peer.has_storage || peer.path[0].state.up) {
    peer.active = Plane::kService;
  } else if (peer.path[1].state.up) {
    peer.active = Plane::kStorage;
  }  // both down: stay where we are
}

std::vector<PlaneChange> PlaneMonitor::Changes() {
  std::vector<PlaneChange> out;
  MonoTime now = clock_->MonotonicNow();
  for (auto& [host, peer] : peers_) {
    Evaluate(host, peer, now);
    if (peer.active != peer.reported) {
      peer.reported = peer.active;
      ++switches_;
      out.push_back({host, peer.active});
    }
  }
  return out;
}

Plane PlaneMonitor::Active(uint32_t host) const {
  auto it = peers_.find(host);
  return it == peers_.end() ? Plane::kService : it->second.active;
}

PlanePathState PlaneMonitor::Path(uint32_t host, Plane plane) const {
  auto it = peers_.find(host);
  if (it == peers_.end()) return {};
  return it->second.path[static_cast<int>(plane)].state;
}

}  // namespace qcloud::net
