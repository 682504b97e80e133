#pragma once

// memcached's "stats detail": per-prefix counts of gets, hits, sets and
// deletes, kept while `stats detail on` (and after `off`, until
// `stats reset`). A key's prefix is what precedes its first ':'; keys
// without one are not counted. `Dump()` lists them in memcached's order
// (its 256 MurmurHash3 buckets, newest first within one), so the output
// is byte for byte memcached's.
//
// Bounded: at most kMaxPrefixes prefixes are tracked (memcached has no
// bound); later new prefixes are not counted.
//
// Thread safety: every method from any thread (one mutex, taken only
// while enabled() or by Dump/Clear).

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace qcloud::kv {

class PrefixStats {
 public:
  static constexpr size_t kMaxPrefixes = 65536;

  bool enabled() const noexcept { return enabled_.load(std::memory_order_relaxed); }
  void Enable(bool on) noexcept { enabled_.store(on, std::memory_order_relaxed); }
  void RecordGet(std::string_view key, bool hit);
  void RecordSet(std::string_view key);
  void RecordDelete(std::string_view key);
  // "PREFIX <p> get <n> hit <n> set <n> del <n>\r\n" lines, then "END\r\n".
  std::string Dump() const;
  void Clear();

 private:
  struct Entry {
    std::string prefix;
    uint64_t get = 0, hit = 0, set = 0, del = 0;
  };
  void Record(std::string_view key, bool get, bool hit, bool set, bool del);

  std::atomic<bool> enabled_{false};
  mutable std::mutex mu_;
  std::vector<std::vector<Entry>> buckets_ = std::vector<std::vector<Entry>>(256);  // oldest first
  size_t count_ = 0;
};

// MurmurHash3 x86 32-bit (memcached's default hash), for the order above.
uint32_t Murmur3_32(std::string_view data, uint32_t seed = 0) noexcept;

}  // namespace qcloud::kv
