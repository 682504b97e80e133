#include "qcloud/monitor/notify.h"

#include <algorithm>

namespace qcloud::monitor {

Dispatcher::Dispatcher(RouteOptions route, Clock& clock, Sender send)
    : route_(std::move(route)), clock_(clock), send_(std::move(send)) {}

void Dispatcher::Receive(const std::vector<Alert>& alerts) {
  const MonoTime now = clock_.MonotonicNow();
  const WallTime wall = clock_.WallNow();
  std::lock_guard lock(mu_);
  for (const Alert& a : alerts) {
    if (a.state == AlertState::kPending) continue;
    ++stats_.received;
    const Labels key = a.labels.Only(route_.group_by);
    auto [it, fresh] = groups_.try_emplace(key);
    Group& g = it->second;
    if (fresh) {
      g.labels = key;
      g.next = now + route_.group_wait;
    }
    // Alertmanager: a group not yet notified whose alert began more than
    // group_wait ago is notified at once.
    if (!g.flushed && a.fired_at != WallTime{} && wall - a.fired_at > route_.group_wait) g.next = now;
    auto [at, added] = g.alerts.try_emplace(a.labels, a);
    if (!added) {
      const bool keep_start = at->second.state == AlertState::kFiring && a.state == AlertState::kFiring &&
                              at->second.fired_at != WallTime{} && at->second.fired_at < a.fired_at;
      const WallTime start = at->second.fired_at;
      at->second = a;
      if (keep_start) at->second.fired_at = start;
    }
  }
}

void Dispatcher::ResolveTimedOut(WallTime wall) {
  for (auto& [key, g] : groups_) {
    for (auto& [labels, a] : g.alerts) {
      if (a.state == AlertState::kFiring && a.ends_at != WallTime{} && a.ends_at <= wall) {
        a.state = AlertState::kResolved;
        a.resolved_at = a.ends_at;
      }
    }
  }
}

void Dispatcher::Tick() {
  const MonoTime now = clock_.MonotonicNow();
  std::lock_guard lock(mu_);
  ResolveTimedOut(clock_.WallNow());
  for (auto it = groups_.begin(); it != groups_.end();) {
    Group& g = it->second;
    if (now >= g.next) {
      Flush(g, now);
      g.flushed = true;
      g.next = now + route_.group_interval;
    }
    it = g.alerts.empty() ? groups_.erase(it) : std::next(it);
  }
}

uint64_t Dispatcher::AddSilence(Silence s) {
  std::lock_guard lock(mu_);
  silences_.emplace(next_silence_, std::move(s));
  return next_silence_++;
}

void Dispatcher::ExpireSilence(uint64_t id) {
  std::lock_guard lock(mu_);
  silences_.erase(id);
}

namespace {
bool MatchesAll(const std::vector<Matcher>& ms, const Labels& l) {
  return std::all_of(ms.begin(), ms.end(), [&](const Matcher& m) { return m.Matches(l.Get(m.name())); });
}
}  // namespace

bool Dispatcher::Muted(const Alert& a, WallTime wall) const {
  for (const auto& [id, s] : silences_) {
    if (wall >= s.starts && wall < s.ends && MatchesAll(s.matchers, a.labels)) return true;
  }
  for (const InhibitRule& r : route_.inhibit) {
    if (!MatchesAll(r.target, a.labels)) continue;
    for (const auto& [key, g] : groups_) {
      for (const auto& entry : g.alerts) {
        const Labels& labels = entry.first;
        if (entry.second.state != AlertState::kFiring || labels == a.labels || !MatchesAll(r.source, labels)) continue;
        if (std::all_of(r.equal.begin(), r.equal.end(),
                        [&](const std::string& n) { return labels.Get(n) == a.labels.Get(n); })) {
          return true;
        }
      }
    }
  }
  return false;
}

void Dispatcher::Flush(Group& g, MonoTime now) {
  const WallTime wall = clock_.WallNow();
  std::set<Labels> firing, resolved;
  std::vector<const Alert*> shown;
  for (const auto& [labels, a] : g.alerts) {
    if (Muted(a, wall)) {
      ++stats_.muted;
      continue;
    }
    (a.state == AlertState::kFiring ? firing : resolved).insert(labels);
    shown.push_back(&a);
  }
  // Alertmanager's DedupStage.needsUpdate.
  bool needed;
  if (!g.notified) {
    needed = !firing.empty();
  } else if (!std::includes(g.firing_sent.begin(), g.firing_sent.end(), firing.begin(), firing.end())) {
    needed = true;
  } else if (firing.empty()) {
    needed = !g.firing_sent.empty();
  } else if (route_.send_resolved && !std::includes(g.resolved_sent.begin(), g.resolved_sent.end(), resolved.begin(), resolved.end())) {
    needed = true;
  } else {
    needed = now - g.sent_at >= route_.repeat_interval;
  }
  bool ok = true;
  if (needed && route_.max_per_minute > 0) {
    std::erase_if(recent_sends_, [&](MonoTime t) { return now - t >= std::chrono::minutes(1); });
    if (recent_sends_.size() >= route_.max_per_minute) {
      ++stats_.rate_limited;
      needed = false;
      ok = false;  // keep the resolved alerts for the next look
    }
  }
  if (needed) {
    Notification n;
    n.group_labels = g.labels;
    n.group_key = "{}:" + g.labels.ToString();
    n.firing = !firing.empty();
    for (const Alert* a : shown) {
      if (a->state == AlertState::kFiring || route_.send_resolved) n.alerts.push_back(*a);
    }
    if (send_(n).ok()) {
      ++stats_.notifications;
      if (route_.max_per_minute > 0) recent_sends_.push_back(now);
      g.notified = true;
      g.firing_sent = firing;
      g.resolved_sent = resolved;
      g.sent_at = now;
    } else {
      ++stats_.send_failures;
      ok = false;
    }
  }
  // Resolved alerts leave once the look is done (and notified, if it had to be).
  if (ok) std::erase_if(g.alerts, [](const auto& kv) { return kv.second.state == AlertState::kResolved; });
}

DispatcherStats Dispatcher::stats() const {
  std::lock_guard lock(mu_);
  DispatcherStats s = stats_;
  s.groups = groups_.size();
  for (const auto& [k, g] : groups_) s.alerts += g.alerts.size();
  return s;
}

}  // namespace qcloud::monitor
