#pragma once

// `watch`: memcached's log streams. A connection that sends `watch [flags]`
// stops taking commands and receives one line per event of the kinds it
// asked for, in memcached 1.6's format:
//
//   ts=<sec>.<usec> gid=<n> type=item_get key=<k> status=found|not_found clsid=<c> cfd=<fd> size=<n>
//   ts=... type=item_store key=<k> status=stored|not_stored|exists|not_found|too_large|no_memory
//          cmd=set|add|replace|append|prepend|cas ttl=<s> clsid=<c> cfd=<fd> size=<n>
//   ts=... type=eviction key=<k> fetch=yes|no ttl=<s> la=<s> clsid=<c> size=<n>
//   ts=... type=conn_new rip=<ip> rport=<port> transport=tcp cfd=<fd>
//   ts=... type=conn_close rip=<ip> rport=<port> transport=tcp reason=normal|error cfd=<fd>
//
// Keys are URI-encoded (all but [A-Za-z0-9-._~] as %XX); clsid is the
// memcached slab class an item of that size would have; gid numbers the
// events in the order they were logged.
//
// Bounds: at most kMaxWatchers watchers; each holds at most kBufferBytes of
// lines not yet taken by its connection. A watcher that reads slower than
// events come loses the lines that do not fit, and is told how many with a
// "skipped=<n>" line before the next one: a slow watcher never slows the
// server or grows its memory.
//
// Cost with nobody watching: one relaxed atomic load per event site.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/tcp_server.h"

namespace qcloud::kv {

enum WatchFlag : uint16_t {
  kWatchRawcmds = 1 << 0,
  kWatchEvictions = 1 << 1,
  kWatchFetchers = 1 << 2,
  kWatchMutations = 1 << 3,
  kWatchSysevents = 1 << 4,
  kWatchConnevents = 1 << 5,
  kWatchProxyreqs = 1 << 6,
  kWatchProxyevents = 1 << 7,
  kWatchProxyuser = 1 << 8,
};

// memcached's name for a watch flag ("fetchers"); 0 when it has none.
uint16_t ParseWatchFlag(std::string_view name) noexcept;
// Appends `key` URI-encoded as memcached's logger and metadump write keys:
// unreserved characters kept, everything else %XX.
void AppendUriEncoded(std::string& out, std::string_view key);

// One watching connection's queue of lines.
class Watcher {
 public:
  Watcher(uint16_t flags, std::shared_ptr<SessionWaker> waker) noexcept
      : flags_(flags), waker_(std::move(waker)) {}
  uint16_t flags() const noexcept { return flags_; }
  // Moves the waiting lines into *out (cleared first).
  void Take(std::string* out);

 private:
  friend class WatchHub;
  // Queues one line, or counts it skipped when the queue is full.
  void Offer(std::string_view line, size_t limit);

  const uint16_t flags_;
  std::shared_ptr<SessionWaker> waker_;
  std::mutex mu_;
  std::string lines_;
  uint64_t skipped_ = 0;
};

class WatchHub {
 public:
  static constexpr size_t kMaxWatchers = 20;          // memcached's WATCHER_LIMIT
  static constexpr size_t kBufferBytes = 256 * 1024;  // memcached's watcher buffer

  // The flags some watcher wants (relaxed: a site that misses a watcher
  // added this instant loses one line).
  uint16_t flags() const noexcept { return flags_.load(std::memory_order_relaxed); }
  bool Wants(uint16_t flag) const noexcept { return (flags() & flag) != 0; }
  // A new watcher, or nullptr when kMaxWatchers are watching.
  std::shared_ptr<Watcher> Add(uint16_t flags, std::shared_ptr<SessionWaker> waker);
  void Remove(const Watcher* watcher);
  // Logs one event of kind `flag`: `body` is the line after "ts=... gid=... "
  // without its newline. Delivered to every watcher that wants `flag`.
  void Publish(uint16_t flag, std::string_view body);
  size_t watchers() const;

 private:
  void RecomputeFlags();  // mu_ held

  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Watcher>> watchers_;
  std::atomic<uint16_t> flags_{0};
  std::atomic<uint64_t> gid_{0};
};

}  // namespace qcloud::kv
