#include "kv/watch.h"

#include <sys/time.h>

#include <algorithm>

#include <fmt/format.h>

namespace qcloud::kv {

uint16_t ParseWatchFlag(std::string_view name) noexcept {
  static constexpr std::pair<std::string_view, uint16_t> kNames[] = {
      {"rawcmds", kWatchRawcmds},       {"evictions", kWatchEvictions},
      {"fetchers", kWatchFetchers},     {"mutations", kWatchMutations},
      {"sysevents", kWatchSysevents},   {"connevents", kWatchConnevents},
      {"proxyreqs", kWatchProxyreqs},   {"proxyevents", kWatchProxyevents},
      {"proxyuser", kWatchProxyuser},
  };
  for (const auto& [n, f] : kNames) {
    if (n == name) return f;
  }
  return 0;
}

void AppendUriEncoded(std::string& out, std::string_view key) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (const char ch : key) {
    const auto c = static_cast<unsigned char>(ch);
    const bool plain = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                       c == '-' || c == '.' || c == '_' || c == '~';
    if (plain) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
}

void Watcher::Take(std::string* out) {
  out->clear();
  std::lock_guard lock(mu_);
  out->swap(lines_);
}

void Watcher::Offer(std::string_view line, size_t limit) {
  bool wake = false;
  {
    std::lock_guard lock(mu_);
    const std::string note = skipped_ > 0 ? fmt::format("skipped={}\n", skipped_) : std::string();
    if (lines_.size() + note.size() + line.size() > limit) {
      ++skipped_;
      return;
    }
    wake = lines_.empty();
    lines_ += note;
    lines_ += line;
    skipped_ = 0;
  }
  if (wake && waker_ != nullptr) waker_->Wake();
}

std::shared_ptr<Watcher> WatchHub::Add(uint16_t flags, std::shared_ptr<SessionWaker> waker) {
  std::lock_guard lock(mu_);
  if (watchers_.size() >= kMaxWatchers) return nullptr;
  auto w = std::make_shared<Watcher>(flags, std::move(waker));
  watchers_.push_back(w);
  gid_.fetch_add(1, std::memory_order_relaxed);  // memcached numbers the watcher too
  RecomputeFlags();
  return w;
}

void WatchHub::Remove(const Watcher* watcher) {
  std::lock_guard lock(mu_);
  std::erase_if(watchers_, [&](const auto& w) { return w.get() == watcher; });
  RecomputeFlags();
}

size_t WatchHub::watchers() const {
  std::lock_guard lock(mu_);
  return watchers_.size();
}

void WatchHub::RecomputeFlags() {
  uint16_t f = 0;
  for (const auto& w : watchers_) f |= w->flags();
  flags_.store(f, std::memory_order_relaxed);
}

void WatchHub::Publish(uint16_t flag, std::string_view body) {
  timeval tv{};
  ::gettimeofday(&tv, nullptr);
  std::lock_guard lock(mu_);
  const uint64_t gid = gid_.fetch_add(1, std::memory_order_relaxed) + 1;
  // memcached prints the microseconds without padding ("%d.%d").
  const std::string line = fmt::format("ts={}.{} gid={} {}\n", tv.tv_sec, tv.tv_usec, gid, body);
  for (const auto& w : watchers_) {
    if ((w->flags() & flag) != 0) w->Offer(line, kBufferBytes);
  }
}

}  // namespace qcloud::kv
