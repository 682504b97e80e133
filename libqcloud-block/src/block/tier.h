#pragma once

// The performance ("SSD") tier: a cache of 4 KiB physical blocks of the
// capacity ("SATA") tier, in one file of slots on the SSD directory.
//
// Policy (CachePolicy, no I/O): a probation filter in front of a CLOCK.
//   - A block missed for the first time is only remembered, by key, in the
//     probation filter (two Bloom filters that take turns, each covering
//     the last ~N first-time misses); it gets no slot. A block missed again
//     while remembered is admitted. So a scan, which touches each block
//     once, never pushes anything out (scan resistance, as 2Q's A1 queue or
//     TinyLFU's doorkeeper), and the SSD is written only for blocks read
//     twice.
//   - Cached blocks carry a 2-bit use count, raised by each hit. The CLOCK
//     hand lowers it as it passes and evicts a block found at 0 (S3-FIFO's
//     main queue and SIEVE work the same way). Eviction runs ahead in the
//     background (Tier::Demote) to keep a few slots free, so an admission
//     rarely evicts inline.
//   Memory per slot: key 4 + hash chain 4 + use count and flags 1 + hash
//   buckets 4 / 2 (two slots per bucket) + filters 2 x 8 bits per slot =
//   13 bytes (dm-cache's smq: 25). bytes_per_slot() reports it.
//
// Tier (I/O): write-through. Reads look the block up; a hit reads the
// SSD file, a miss reads the capacity tier and may admit the block
// (written to its slot, readable once written). Writes go to the capacity
// tier and update cached blocks in place; trims drop them. The cache holds
// no data the capacity tier lacks, so it needs no recovery: it starts
// empty at each open. A slot being read is pinned and never reused under
// the reader.
//
// Thread safety: every method from any thread. Callers (the store)
// already keep a write and a read of one block apart.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "block/device.h"
#include "qcloud/core/env.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::block::detail {

class CachePolicy {
 public:
  // `slots` cache blocks (at least 16).
  explicit CachePolicy(uint32_t slots);

  static constexpr uint32_t kNone = UINT32_MAX;
  // The slot holding `key`, counting a hit (kNone: a miss).
  uint32_t Hit(uint32_t key);
  // After a miss: the slot to fill with `key`, or kNone when the block is
  // not admitted (first sight) or already cached. The slot is reserved,
  // not yet readable, until Filled().
  uint32_t Admit(uint32_t key, const std::unordered_map<uint32_t, int>& pinned);
  void Filled(uint32_t slot);
  // Forgets `key` (its slot becomes free); no effect when not cached.
  void Drop(uint32_t key);
  // Evicts until `free_target` slots are free or a full turn of the hand
  // made no progress; slots in `pinned` are passed over. Returns evictions.
  uint32_t Demote(uint32_t free_target, const std::unordered_map<uint32_t, int>& pinned);
  // The slot of `key` without counting a hit (kNone when absent or filling).
  uint32_t Find(uint32_t key) const;

  uint32_t slots() const noexcept { return static_cast<uint32_t>(key_.size()); }
  uint32_t free_slots() const noexcept { return free_count_; }
  double bytes_per_slot() const noexcept;

 private:
  static constexpr uint8_t kUse = 3;      // 2-bit use count
  static constexpr uint8_t kFilling = 4;  // reserved, data not written yet
  uint32_t Bucket(uint32_t key) const noexcept;
  void Unlink(uint32_t slot);
  uint32_t TakeFree(const std::unordered_map<uint32_t, int>& pinned);
  bool Seen(uint32_t key) const;
  void Remember(uint32_t key);

  std::vector<uint32_t> key_;     // key + 1; 0 = free
  std::vector<uint32_t> next_;    // hash chain (slot + 1; 0 = end), or the free list
  std::vector<uint8_t> meta_;     // use count, kFilling
  std::vector<uint32_t> bucket_;  // slot + 1 of a chain's head; 0 = empty
  uint32_t free_head_ = 0;        // slot + 1
  uint32_t free_count_ = 0;
  uint32_t hand_ = 0;
  // The probation filter: two Bloom filters; inserts go to `fresh_`, and
  // when it has taken `filter_cap_` keys the older one is cleared and the
  // two swap roles.
  std::array<std::vector<uint64_t>, 2> filter_;
  int fresh_ = 0;
  uint32_t filter_count_ = 0, filter_cap_ = 0;
  uint64_t filter_mask_ = 0;  // bits per filter - 1
};

struct TierStats {
  uint64_t slots = 0, used = 0;
  uint64_t hits = 0, misses = 0, admissions = 0, evictions = 0, updates = 0;
  double bytes_per_slot = 0;
};

// A Device-like layer over the capacity tier (a Mirror).
class Tier {
 public:
  // The SSD file is <dir>/cache.dat with bytes / 4096 slots.
  static Result<std::unique_ptr<Tier>> Open(Env& env, const std::string& dir, uint64_t bytes, Mirror& below);

  Status Read(uint64_t offset, MutableByteView dst);
  Status Write(uint64_t offset, ByteView src);
  Status Zero(uint64_t offset, uint64_t length, bool release);
  // Background demotion: keeps about 1/64 of the slots free.
  void Demote();
  TierStats stats();

 private:
  Tier(Mirror& below, std::unique_ptr<File> file, uint32_t slots);
  Status ReadBlock(uint32_t pba, std::byte* dst, bool admit);
  // A hit read from the SSD file (false: not cached, or the SSD failed).
  bool TryHit(uint32_t pba, std::byte* dst);
  // After a miss: into the SSD file if the policy admits it.
  void MaybeAdmit(uint32_t pba, const std::byte* data);
  void Unpin(uint32_t slot);

  Mirror& below_;
  std::unique_ptr<File> file_;
  std::mutex mu_;  // the policy and `pinned_`
  CachePolicy policy_;
  std::unordered_map<uint32_t, int> pinned_;  // slot -> readers
  std::atomic<uint64_t> hits_{0}, misses_{0}, admissions_{0}, evictions_{0}, updates_{0};
};

}  // namespace qcloud::block::detail
