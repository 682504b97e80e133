#pragma once

// Private: the object store's cache of small chunks (object_store.h, "Chunk
// cache"). Keys are (store, chunk id), which never name different bytes
// over time, so entries are never invalidated, only evicted. 16 shards,
// each an open-addressing table (linear probing, tombstones) whose slots
// are also the CLOCK ring: a hit sets the slot's reference bit; an insert
// that would pass the shard's byte budget sweeps the hand, clearing bits
// and evicting unreferenced entries. One probe usually touches one cache
// line, where a node-based map touches three.

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"

namespace qcloud::object {

class ChunkCache {
 public:
  ChunkCache(uint64_t capacity_bytes, uint64_t max_entry_bytes)
      : shard_budget_(capacity_bytes / kShards), max_entry_(max_entry_bytes) {}

  // An entry also costs its table slots and string header: charged too, so
  // a cache of tiny chunks stays within its budget.
  static constexpr uint64_t kEntryOverhead = 4 * 64 + 32;
  bool Cacheable(uint64_t length) const noexcept {
    return shard_budget_ > 0 && length <= max_entry_ && (length + kEntryOverhead) * 4 <= shard_budget_;
  }

  // Appends the cached bytes [from, to) of the chunk to `out`; false on a miss.
  bool Get(uint32_t store, uint64_t chunk, uint64_t from, uint64_t to, Buffer& out) {
    const uint64_t h = Hash(store, chunk);
    Shard& s = shards_[h >> 60];
    std::lock_guard lock(s.mu);
    Slot* slot = Find(s, h, store, chunk);
    if (slot == nullptr || to > slot->data.size() || from > to) {
      misses_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    slot->referenced = true;
    out.Append(ByteView(std::string_view(slot->data).substr(from, to - from)));
    hits_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }

  void Put(uint32_t store, uint64_t chunk, ByteView data) {
    if (!Cacheable(data.size())) return;
    const uint64_t h = Hash(store, chunk);
    Shard& s = shards_[h >> 60];
    std::lock_guard lock(s.mu);
    if (Find(s, h, store, chunk) != nullptr) return;
    const uint64_t cost = data.size() + kEntryOverhead;
    Evict(s, cost);
    if (s.bytes + cost > shard_budget_) return;
    if ((s.used + 1) * 2 > s.slots.size()) Rehash(s);
    Slot& slot = s.slots[Probe(s, h)];
    if (slot.state == kEmpty) ++s.used;
    slot = {h, store, chunk, kFull, false, std::string(data.chars(), data.size())};
    ++s.live;
    s.bytes += cost;
    bytes_.fetch_add(data.size(), std::memory_order_relaxed);
  }

  uint64_t hits() const noexcept { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const noexcept { return misses_.load(std::memory_order_relaxed); }
  uint64_t bytes() const noexcept { return bytes_.load(std::memory_order_relaxed); }

 private:
  static constexpr size_t kShards = 16;
  enum State : uint8_t { kEmpty = 0, kFull = 1, kTombstone = 2 };
  struct Slot {
    uint64_t hash = 0;
    uint32_t store = 0;
    uint64_t chunk = 0;
    State state = kEmpty;
    bool referenced = false;
    std::string data;
  };
  struct Shard {
    std::mutex mu;
    std::vector<Slot> slots;  // power of two, or empty
    size_t used = 0;          // full + tombstones
    size_t live = 0;          // full
    size_t hand = 0;
    uint64_t bytes = 0;
  };

  static uint64_t Hash(uint32_t store, uint64_t chunk) {
    uint64_t x = chunk ^ (uint64_t{store} * 0xC2B2AE3D27D4EB4Full);
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    return x;
  }
  static Slot* Find(Shard& s, uint64_t h, uint32_t store, uint64_t chunk) {
    if (s.slots.empty()) return nullptr;
    const size_t mask = s.slots.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      Slot& slot = s.slots[i];
      if (slot.state == kEmpty) return nullptr;
      if (slot.state == kFull && slot.hash == h && slot.chunk == chunk && slot.store == store) return &slot;
    }
  }
  // Where a new entry with hash h goes: the first empty or tombstone slot.
  static size_t Probe(Shard& s, uint64_t h) {
    const size_t mask = s.slots.size() - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
      if (s.slots[i].state != kFull) return i;
    }
  }
  void Rehash(Shard& s) {
    const size_t want = std::max<size_t>(64, s.live * 4);
    size_t size = 64;
    while (size < want) size *= 2;
    std::vector<Slot> old;
    old.swap(s.slots);
    s.slots.resize(size);
    s.used = 0;
    s.hand = 0;
    for (Slot& slot : old) {
      if (slot.state != kFull) continue;
      s.slots[Probe(s, slot.hash)] = std::move(slot);
      ++s.used;
    }
  }
  void Evict(Shard& s, uint64_t incoming) {
    // CLOCK: at most two passes over the table.
    for (size_t step = 0; s.bytes + incoming > shard_budget_ && s.live > 0 && step < 2 * s.slots.size(); ++step) {
      if (s.hand >= s.slots.size()) s.hand = 0;
      Slot& slot = s.slots[s.hand++];
      if (slot.state != kFull) continue;
      if (slot.referenced) {
        slot.referenced = false;
        continue;
      }
      s.bytes -= slot.data.size() + kEntryOverhead;
      bytes_.fetch_sub(slot.data.size(), std::memory_order_relaxed);
      slot.state = kTombstone;
      slot.data = std::string();
      --s.live;
    }
  }

  const uint64_t shard_budget_;
  const uint64_t max_entry_;
  Shard shards_[kShards];
  std::atomic<uint64_t> hits_{0}, misses_{0}, bytes_{0};
};

}  // namespace qcloud::object
