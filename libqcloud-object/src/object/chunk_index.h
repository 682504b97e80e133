#pragma once

// Private: the in-memory map chunk id -> location of one CHX store.
//
// Open addressing with linear probing in one array of 16-byte slots
// {id, packed location}; id 0 marks a free slot. The table doubles when 7/8
// full, so between growths it is 7/16..7/8 full: 18..37 bytes per chunk,
// inside the 40-byte budget. Deletion shifts the following run back (no
// tombstones), so lookups never slow down with churn. Ids are sequential, so
// the home slot comes from a multiplicative (Fibonacci) hash of the id.
//
// Not thread-safe: ChxStore guards it with its lock.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace qcloud::object {

// Where a record is: volume id (16 bits), byte offset / 8 (32 bits) and the
// record's span in 4 KiB units, rounded up (16 bits), which is what a read
// asks for so that header and data come in one pread.
struct ChunkLocation {
  static constexpr uint64_t kSpanUnit = 4096;
  static constexpr uint64_t kMaxVolume = 0xffff;
  static constexpr uint64_t kMaxOffset = (uint64_t{1} << 35) - 8;  // 32 GiB
  static constexpr uint64_t kMaxSpan = 0xffff * kSpanUnit;           // 256 MiB - 4 KiB

  uint32_t volume = 0;
  uint64_t offset = 0;     // multiple of 8
  uint64_t read_span = 0;  // multiple of kSpanUnit, >= the record's span

  // Precondition: volume <= kMaxVolume, offset <= kMaxOffset and 8-aligned,
  // span <= kMaxSpan.
  static uint64_t Pack(uint32_t volume, uint64_t offset, uint64_t span) noexcept {
    const uint64_t units = (span + kSpanUnit - 1) / kSpanUnit;
    return (uint64_t{volume} << 48) | ((offset >> 3) << 16) | units;
  }
  static ChunkLocation Unpack(uint64_t packed) noexcept {
    return {static_cast<uint32_t>(packed >> 48), ((packed >> 16) & 0xffffffffu) << 3,
            (packed & 0xffff) * kSpanUnit};
  }
};

class ChunkIndex {
 public:
  ChunkIndex();
  // Inserts or replaces.
  void Put(uint64_t id, uint64_t packed);
  std::optional<uint64_t> Find(uint64_t id) const noexcept;
  bool Erase(uint64_t id) noexcept;
  size_t size() const noexcept { return size_; }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (const Slot& s : slots_) {
      if (s.id != 0) fn(s.id, s.packed);
    }
  }
  size_t memory_bytes() const noexcept { return slots_.size() * sizeof(Slot); }

 private:
  struct Slot {
    uint64_t id = 0;
    uint64_t packed = 0;
  };
  static_assert(sizeof(Slot) == 16);
  size_t Home(uint64_t id) const noexcept {
    return static_cast<size_t>((id * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void Grow();

  std::vector<Slot> slots_;
  size_t size_ = 0;
  unsigned shift_ = 0;  // 64 - log2(slots_.size())
};

}  // namespace qcloud::object
