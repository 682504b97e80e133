#pragma once

// ColdTier: where CMEM's cold items go — a log of segment files on an SSD,
// with one small stub per item kept in memory.
//
// On disk (format version 1; little-endian):
//   segment file "seg-<id, 16 hex digits>.qkv":
//     header (32 bytes): "QCKVSEG1" | u32 version = 1 | u32 flags (bit 0:
//       values zstd-compressed) | u64 segment id | u64 reserved
//     records, back to back:
//       u32 checksum  low 32 bits of XXH3-64 of every byte after this field
//       u32 length    bytes after this field (fixed part + key + value)
//       u8  type      1 = item, 2 = tombstone (the key's older records are dead)
//       u8  coding    bit 0: value is zstd-compressed
//       u8  key length
//       u8  reserved
//       u32 client flags
//       u64 sequence  a counter over all records ever written, never reused
//       u64 cas
//       i64 exptime   UNIX seconds, 0 = never
//       i64 atime     UNIX seconds of the last access before sinking
//       u32 stored value length, u32 value length
//       key, value (stored form)
//
// Recovery replays the segments in id order and keeps, per key, the record
// with the highest sequence; a tombstone there means the key is gone. A
// torn or corrupt tail (checksum mismatch) ends a segment's replay.
//
// Cleaning is FIFO: the oldest segment is compacted first (its live items
// are re-appended, keeping their sequence numbers; its tombstones can be
// dropped because a tombstone is always written after, hence in a segment
// no older than, the record it kills). Then the file is removed.
//
// In memory: a stub table of (64-bit key hash, location, record length)
// entries — 24 bytes per slot, at most 3/4 full — and the write buffer of
// the active segment. Keys are verified against the record on disk, so hash
// collisions cost a read, never a wrong answer; during recovery items are
// told apart by their 64-bit hash alone.
//
// Thread safety: all methods may be called concurrently (one mutex; disk
// reads of records happen outside it).

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/env.h"
#include "qcloud/kv/errc.h"
#include "qcloud/core/result.h"

namespace qcloud::kv {

struct ColdTierOptions {
  Env* env = nullptr;                       // required
  std::string dir;                          // required; created if missing
  uint64_t capacity_bytes = uint64_t{16} << 30;  // total size of the segment files
  uint64_t segment_bytes = uint64_t{16} << 20;   // a segment is closed past this size
  bool compress = false;                    // zstd values in new segments
  size_t write_buffer = 256 * 1024;         // bytes gathered before one write
};

struct ColdItem {
  std::string value;
  uint32_t flags = 0;
  uint64_t cas = 0;
  int64_t exptime = 0;  // UNIX seconds, 0 = never
  int64_t atime = 0;    // UNIX seconds
  uint64_t location = 0;
};

struct ColdTierStats {
  uint64_t items = 0;          // live cold items (stubs)
  uint64_t segments = 0;
  uint64_t disk_bytes = 0;     // size of all segment files (incl. the buffer)
  uint64_t live_bytes = 0;     // bytes of live records
  uint64_t stub_bytes = 0;     // memory of the stub table
  uint64_t sunk = 0;           // records written for items (incl. recovery of none)
  uint64_t reads = 0;          // record reads from disk
  uint64_t compactions = 0;    // segments cleaned
  uint64_t full = 0;           // sinks refused for lack of space
  uint64_t recovered = 0;      // items found at Open
};

class ColdTier {
 public:
  // Opens (creating the directory) and recovers existing segments.
  static Result<std::unique_ptr<ColdTier>> Open(const ColdTierOptions& options);
  ~ColdTier();

  // False when no cold record can exist for `hash` (no disk access).
  bool MayContain(uint64_t hash) const;
  // The live record of `key`, or nullopt.
  Result<std::optional<ColdItem>> Find(std::string_view key, uint64_t hash);

  // Reads without blocking: where the one record with `hash` lies in a
  // segment file, for the caller to read on its own event loop and hand to
  // Decode(). nullopt when Find() is as good: no record, a record still in
  // the write buffer (no disk read), more than one record with this hash
  // (a collision), or a file without a descriptor.
  struct Location {
    std::shared_ptr<File> file;  // keeps the descriptor open
    int fd = -1;
    uint64_t offset = 0;
    uint32_t length = 0;
    uint64_t location = 0;
  };
  std::optional<Location> Locate(uint64_t hash) const;
  // The item in `record`, the bytes read at `location` (from Locate), if
  // that is still `key`'s live record; nullopt when it no longer is (erased,
  // moved by compaction) or belongs to another key. Corruption when the
  // bytes fail their checksum.
  Result<std::optional<ColdItem>> Decode(std::string_view key, uint64_t hash, uint64_t location,
                                         ByteView record);
  // Appends `item` (location ignored) as the live record of `key`,
  // superseding any older one. kv::Errc::kColdTierFull when the tier is full.
  Status Put(std::string_view key, uint64_t hash, const ColdItem& item);
  // Kills the record at `location` (from Find) for `key`: a tombstone.
  Status Erase(std::string_view key, uint64_t hash, uint64_t location);
  // Forgets every record (flush_all): removes the segment files.
  Status DropAll();
  // Writes the buffer out and makes the segments durable.
  Status Sync();
  // Cleans the oldest segment when at least `min_garbage` of the disk
  // is dead records (or the tier is over capacity). Returns whether it did.
  Result<bool> MaybeCompact(double min_garbage = 0.5);

  // Visits live items record by record, segment by segment from
  // *segment/*offset (start at 0/0), reading about `max_bytes` of records
  // per call; true when every segment has been visited. Not a snapshot:
  // items sunk, erased or moved by cleaning meanwhile may be missed or
  // visited twice. `visit` gets the key and the item without its value
  // (item.value empty; `value_size` is its length).
  using ScanFn = void (*)(void* ctx, std::string_view key, const ColdItem& item, size_t value_size);
  Result<bool> ScanLive(uint64_t* segment, uint64_t* offset, size_t max_bytes, ScanFn visit, void* ctx);

  ColdTierStats Stats() const;
  uint64_t max_cas() const noexcept { return max_cas_; }

 private:
  struct Stub {
    uint64_t hash = 0;  // 0 = empty slot
    uint64_t location = 0;
    uint32_t length = 0;  // record bytes, for the live-bytes count
  };
  struct Segment {
    std::shared_ptr<File> file;
    uint64_t size = 0;   // bytes written to the file (header included)
    uint64_t live = 0;   // bytes of live records
    bool compressed = false;
  };
  explicit ColdTier(const ColdTierOptions& options) : options_(options) {}
  Status Recover();
  Status OpenActive(uint64_t id);
  Status FlushBufferLocked();
  // Appends one encoded record to the active segment; its location.
  Result<uint64_t> AppendLocked(ByteView record);
  Status RollLocked();
  Status CompactOldestLocked();
  Result<std::string> ReadRecord(uint64_t location);
  // Stub table (open addressing, linear probing, backward-shift delete).
  void StubInsert(const Stub& stub);
  // Removes the stub at `location`; returns its record length (0 = none).
  uint32_t StubErase(uint64_t hash, uint64_t location);
  bool StubReplace(uint64_t hash, uint64_t from, uint64_t to);
  std::vector<uint64_t> StubFind(uint64_t hash) const;
  // Whether a stub of `hash` points at `location` (the record is live).
  bool StubAt(uint64_t hash, uint64_t location) const;
  // The one stub of `hash`; nullptr when there is none or more than one.
  const Stub* StubOnly(uint64_t hash) const;
  void StubGrow();
  std::string SegmentPath(uint64_t id) const;

  ColdTierOptions options_;
  mutable std::mutex mu_;
  std::map<uint64_t, Segment> segments_;  // by id; the last is active
  uint64_t active_ = 0;
  uint64_t flushed_ = 0;       // bytes of the active segment on disk
  Buffer buffer_;              // records of the active segment not yet written
  uint64_t seq_ = 1;
  uint64_t max_cas_ = 0;
  std::vector<Stub> stubs_;
  uint64_t stub_count_ = 0;
  uint64_t disk_bytes_ = 0;
  ColdTierStats stats_;
};

}  // namespace qcloud::kv
