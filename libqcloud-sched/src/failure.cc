#include "qcloud/sched/failure.h"

#include <algorithm>
#include <cmath>
#include <set>

#include <fmt/format.h>

namespace qcloud::sched {

PathMonitor::PathMonitor(const PathMonitorOptions& options)
    : options_(options), clock_(options.clock ? options.clock : &RealClock()) {
  options_.window = std::max<size_t>(options_.window, 2);
  options_.max_paths = std::clamp<size_t>(options_.max_paths, 1, 64);
}

void PathMonitor::Heartbeat(std::string_view peer, size_t path) {
  if (path >= options_.max_paths) return;
  auto it = peers_.find(peer);
  if (it == peers_.end()) it = peers_.emplace(std::string(peer), std::vector<Path>(options_.max_paths)).first;
  Path& p = it->second[path];
  const MonoTime now = clock_->MonotonicNow();
  if (p.heard) {
    const double ms = std::chrono::duration<double, std::milli>(now - p.last).count();
    p.intervals_ms.push_back(ms);
    p.sum += ms;
    p.sum_sq += ms * ms;
    if (p.intervals_ms.size() > options_.window) {
      const double old = p.intervals_ms.front();
      p.intervals_ms.pop_front();
      p.sum -= old;
      p.sum_sq -= old * old;
    }
  }
  p.heard = true;
  p.last = now;
}

double PathMonitor::PhiOf(const Path& p, MonoTime now) const {
  if (!p.heard) return 0;
  double mean = static_cast<double>(options_.first_interval.count());
  double var = 0;
  if (!p.intervals_ms.empty()) {
    const double n = static_cast<double>(p.intervals_ms.size());
    mean = p.sum / n;
    var = std::max(0.0, p.sum_sq / n - mean * mean);
  }
  const double min_sd = static_cast<double>(options_.min_stddev.count());
  const double sd = std::max(std::sqrt(var), min_sd);
  const double elapsed = std::chrono::duration<double, std::milli>(now - p.last).count();
  const double expected = mean + static_cast<double>(options_.acceptable_pause.count());
  const double y = (elapsed - expected) / sd;
  // P(later than now) under the normal distribution; -log10 of it. The
  // logistic approximation of the normal CDF that Akka uses keeps it finite.
  const double e = std::exp(-y * (1.5976 + 0.070566 * y * y));
  if (elapsed > expected) return -std::log10(e / (1.0 + e));
  return -std::log10(1.0 - 1.0 / (1.0 + e));
}

double PathMonitor::Phi(std::string_view peer, size_t path) const {
  auto it = peers_.find(peer);
  if (it == peers_.end() || path >= it->second.size()) return 0;
  return PhiOf(it->second[path], clock_->MonotonicNow());
}

bool PathMonitor::Suspects(std::string_view peer) const {
  auto it = peers_.find(peer);
  if (it == peers_.end()) return false;
  const MonoTime now = clock_->MonotonicNow();
  bool any = false;
  for (const Path& p : it->second) {
    if (!p.heard) continue;
    any = true;
    if (PhiOf(p, now) <= options_.threshold) return false;  // heard well enough on this path
  }
  return any;
}

std::vector<std::string> PathMonitor::Suspected() const {
  std::vector<std::string> out;
  for (const auto& [name, paths] : peers_) {
    if (Suspects(name)) out.push_back(name);
  }
  return out;
}

void PathMonitor::Forget(std::string_view peer) {
  auto it = peers_.find(peer);
  if (it != peers_.end()) peers_.erase(it);
}

Arbiter::Arbiter(const ArbiterOptions& options, std::vector<std::string> hosts) : options_(options) {
  options_.quorum = std::max<size_t>(options_.quorum, 1);
  for (std::string& h : hosts) hosts_.emplace(std::move(h), Votes{});
}

void Arbiter::Report(std::string_view observer, std::string_view peer, bool suspect) {
  auto it = hosts_.find(peer);
  if (it == hosts_.end() || observer == peer) return;
  // Only the members vote, and not the dead (nor names made up on the wire).
  auto who_it = hosts_.find(observer);
  if (who_it == hosts_.end() || who_it->second.dead) return;
  Votes& v = it->second;
  const std::string who(observer);
  if (suspect) {
    v.alive.erase(who);
    v.suspect.insert(who);
  } else {
    v.suspect.erase(who);
    v.alive.insert(who);
  }
  const bool was = v.dead;
  Decide(v);
  if (!was && v.dead) {
    // A dead host's own votes on others no longer count.
    for (auto& [name, other] : hosts_) {
      if (other.suspect.erase(it->first) + other.alive.erase(it->first) > 0) Decide(other);
    }
  }
}

void Arbiter::Decide(Votes& v) {
  if (!v.dead) {
    v.dead = v.suspect.size() >= options_.quorum && v.alive.size() <= options_.max_dissent;
  } else {
    // Back only when the observers hearing it are no longer outnumbered
    // by the quorum of suspicion (a heartbeat-backed "alive").
    v.dead = !(v.alive.size() > options_.max_dissent || v.suspect.size() < options_.quorum);
  }
}

std::vector<std::string> Arbiter::Dead() const {
  std::vector<std::string> out;
  for (const auto& [name, v] : hosts_) {
    if (v.dead) out.push_back(name);
  }
  return out;
}

bool Arbiter::IsDead(std::string_view host) const {
  auto it = hosts_.find(host);
  return it != hosts_.end() && it->second.dead;
}

namespace {
bool NameByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}
}  // namespace

std::string EncodeHeartbeat(const HeartbeatMessage& m) {
  std::string out = "QHB1";
  out += static_cast<char>(m.path);
  const std::string_view name = std::string_view(m.sender).substr(0, kMaxHeartbeatName);
  out += static_cast<char>(name.size());
  out += name;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((m.seq >> (8 * i)) & 0xff);
  const uint64_t t = static_cast<uint64_t>(m.sent_ms);
  for (int i = 0; i < 8; ++i) out += static_cast<char>((t >> (8 * i)) & 0xff);
  return out;
}

Result<HeartbeatMessage> DecodeHeartbeat(std::string_view d) {
  if (d.size() < 6 + 1 + 16 || !d.starts_with("QHB1")) return InvalidArgument("heartbeat: not one");
  HeartbeatMessage m;
  m.path = static_cast<uint8_t>(d[4]);
  const size_t n = static_cast<uint8_t>(d[5]);
  if (n == 0 || n > kMaxHeartbeatName || d.size() != 6 + n + 16) return InvalidArgument("heartbeat: bad length");
  m.sender = std::string(d.substr(6, n));
  if (!std::all_of(m.sender.begin(), m.sender.end(), NameByte)) return InvalidArgument("heartbeat: bad name");
  uint64_t seq = 0, t = 0;
  for (int i = 7; i >= 0; --i) seq = (seq << 8) | static_cast<uint8_t>(d[6 + n + static_cast<size_t>(i)]);
  for (int i = 7; i >= 0; --i) t = (t << 8) | static_cast<uint8_t>(d[6 + n + 8 + static_cast<size_t>(i)]);
  m.seq = seq;
  m.sent_ms = static_cast<int64_t>(t);
  return m;
}

std::string EncodeSuspicion(const SuspicionReport& r) {
  std::string out = "QSR1";
  out += static_cast<char>(r.suspect ? 1 : 0);
  for (const std::string* name : {&r.observer, &r.peer}) {
    const std::string_view n = std::string_view(*name).substr(0, kMaxHeartbeatName);
    out += static_cast<char>(n.size());
    out += n;
  }
  const uint64_t t = static_cast<uint64_t>(r.sent_ms);
  for (int i = 0; i < 8; ++i) out += static_cast<char>((t >> (8 * i)) & 0xff);
  return out;
}

Result<SuspicionReport> DecodeSuspicion(std::string_view d) {
  if (d.size() < 4 + 1 + 1 + 1 + 1 + 1 + 8 || !d.starts_with("QSR1")) return InvalidArgument("report: not one");
  SuspicionReport r;
  const uint8_t flag = static_cast<uint8_t>(d[4]);
  if (flag > 1) return InvalidArgument("report: bad verdict");
  r.suspect = flag == 1;
  size_t at = 5;
  for (std::string* name : {&r.observer, &r.peer}) {
    if (at >= d.size()) return InvalidArgument("report: cut short");
    const size_t n = static_cast<uint8_t>(d[at++]);
    if (n == 0 || n > kMaxHeartbeatName || d.size() - at < n) return InvalidArgument("report: bad name length");
    *name = std::string(d.substr(at, n));
    if (!std::all_of(name->begin(), name->end(), NameByte)) return InvalidArgument("report: bad name");
    at += n;
  }
  if (d.size() - at != 8) return InvalidArgument("report: bad length");
  uint64_t t = 0;
  for (int i = 7; i >= 0; --i) t = (t << 8) | static_cast<uint8_t>(d[at + static_cast<size_t>(i)]);
  r.sent_ms = static_cast<int64_t>(t);
  return r;
}

Result<Evacuation> PlanEvacuation(std::span<const Host> hosts, std::span<const Instance> instances,
                                  const std::map<std::string, std::string>& current, std::string_view dead_host,
                                  const PlacementOptions& options) {
  std::vector<Host> live;
  bool found = false;
  for (const Host& h : hosts) {
    if (h.name == dead_host) {
      found = true;
    } else {
      live.push_back(h);
    }
  }
  if (!found) return Status(Errc::kNotFound, fmt::format("no host \"{}\"", dead_host));
  std::vector<Instance> problem;
  std::set<std::string> evacuees;
  for (const Instance& in : instances) {
    auto at = current.find(in.name);
    if (at == current.end()) continue;  // was not running
    Instance copy = in;
    if (at->second == dead_host) {
      copy.pinned_host.clear();
      evacuees.insert(in.name);
    } else {
      copy.pinned_host = at->second;
    }
    problem.push_back(std::move(copy));
  }
  QCLOUD_ASSIGN_OR_RETURN(Placement p, Place(live, problem, options));
  Evacuation out;
  for (const auto& [inst, host] : p.placements) {
    if (evacuees.contains(inst)) out.moves.emplace(inst, host);
  }
  for (const Unplaced& u : p.unplaced) {
    if (evacuees.contains(u.name)) {
      out.stranded.push_back(u);
    } else {
      // A survivor that no longer fits where it runs: the plan would hand
      // its room to the evacuees. Refused rather than overcommitting.
      return InvalidArgument(fmt::format("evacuation: \"{}\" no longer fits on its own host: {}", u.name, u.reason));
    }
  }
  return out;
}

}  // namespace qcloud::sched
