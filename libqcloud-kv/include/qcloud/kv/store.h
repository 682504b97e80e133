#pragma once

// qcloud::kv::Store — CMEM's memory engine: a key-value cache whose items
// live in fixed-size blocks carved from one preallocated pool.
//
//   auto store = qcloud::kv::Store::Open({.memory_bytes = 256 << 20}).value();
//   store->Set("user:42", "alice", {.flags = 0, .exptime = 0});
//   std::string v;
//   if (store->Get("user:42", &v)) { ... }
//
// Memory model. The budget (`memory_bytes`) is split into blocks of
// `block_size` bytes, allocated and freed in O(1) from per-shard free lists,
// so memory never fragments however the value sizes change over time. An
// item is a chain of blocks; its first block holds the header (total length,
// flags, expiry, CAS) and the key, so a reader knows up front how many blocks
// to fetch ("length prediction"). The hash index is a bucket array of 32-bit
// block numbers with the chain link inside each item's header: no per-item
// heap node, no std::string.
//
// Eviction. When a shard's blocks are used up, a CLOCK hand (second chance,
// an approximation of LRU) sweeps the shard's buckets: expired and flushed
// items are reclaimed first; an item read since the hand last passed keeps
// its place once; the rest are evicted. With `Eviction::kNone` a store that
// is full fails with kNoMemory instead (memcached's -M).
//
// Time follows memcached's rules for exptime: 0 never expires; 1..2592000
// (30 days) is seconds from now; larger values are an absolute UNIX time;
// a negative value (or an absolute time in the past) is already expired.
//
// Thread safety: every method may be called from any thread. The store is
// split into `shards` independently locked shards chosen by key hash.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "qcloud/core/bytes.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/kv/errc.h"

namespace qcloud {
class Env;
}

namespace qcloud::kv {

struct StoreShard;  // private: one locked part of the store
class StoreImpl;    // private: the engine behind Store

inline constexpr size_t kMaxKeyLength = 250;  // memcached's KEY_MAX_LENGTH
// memcached counts 56 bytes of item header + key + NUL + value + "\r\n"
// against its item size limit (-I); Store uses the same sum so that the
// largest storable value is the same as memcached's for any key.
inline constexpr size_t kMemcachedItemOverhead = 59;

enum class Eviction : uint8_t {
  kClock,  // evict cold items (CLOCK, second chance) to make room
  kNone,   // never evict: a full store refuses writes with kNoMemory
};

struct StoreOptions {
  size_t memory_bytes = size_t{64} << 20;    // item memory budget in bytes (blocks); default 64 MiB
  size_t block_size = 100;                   // bytes per block: 40..4096, a multiple of 4; default 100
  size_t item_size_max = size_t{1} << 20;    // max of 59 + key + value bytes (memcached -I); 1 MiB
  unsigned shards = 16;                      // independently locked parts, a power of two; default 16
  Eviction eviction = Eviction::kClock;      // what a full store does; see Eviction
  Clock* clock = nullptr;  // time source for expiry; not owned, outlives the store; null = RealClock()

  // The cold tier (CMEM's SSD sinking). With ssd_dir set, items pushed out
  // by memory pressure, and items not read for cold_after (see Maintain),
  // are written to log-structured segment files there instead of being
  // dropped; a read brings them back into memory. Only when the tier is
  // full does eviction drop items. Its contents survive a restart.
  std::string ssd_dir;                          // segment directory; empty = memory only
  Env* env = nullptr;  // file system for ssd_dir; not owned, outlives the store; null = POSIX (io_uring)
  uint64_t ssd_bytes = uint64_t{16} << 30;      // cold tier capacity in bytes; default 16 GiB
  uint64_t segment_bytes = uint64_t{16} << 20;  // size of one segment file; default 16 MiB
  std::chrono::seconds cold_after{7 * 24 * 3600};  // idle time before an item sinks; 7 days
  bool compress_cold = false;                   // zstd (level 1) values of 128+ bytes on disk
};

enum class StoreMode : uint8_t {
  kSet,      // store unconditionally
  kAdd,      // store only if the key is absent
  kReplace,  // store only if the key is present
  kAppend,   // add the bytes after the existing value (flags/exptime unchanged)
  kPrepend,  // add the bytes before the existing value (flags/exptime unchanged)
};

enum class Outcome : uint8_t {
  kOk,          // stored / deleted / touched / found
  kNotStored,   // add on a present key, replace/append/prepend on an absent key
  kExists,      // CAS given and it does not match the item's
  kNotFound,    // no such (live) key
  kTooLarge,    // key + value exceed item_size_max
  kNoMemory,    // the store is full and may not evict (or the item exceeds a shard)
  kNonNumeric,  // incr/decr on a value that is not a decimal uint64
  kBadKey,      // key empty or longer than kMaxKeyLength
  kIoError,     // the key's copy on the cold tier could not be read or erased
                // (counted in StoreStats::cold_errors); the item may exist, so
                // this is never reported as a miss
  kColdPending,  // the call was given a ColdFetch and the key's item lies
                 // only on the cold tier, on disk: nothing was done; read the
                 // record it names, FaultIn() it, then repeat the call
};

// Reading a sunk item without blocking. A call on a key whose item lies on
// the cold tier reads its record from disk before it goes on, blocking the
// calling thread. An event loop that must not block passes a ColdFetch
// (`defer_cold` in the call's options) instead: the call then returns
// Outcome::kColdPending and fills it in; the caller reads `length` bytes at
// `offset` of `fd` its own way (io_uring), hands them to Store::FaultIn(),
// and repeats the call without `defer_cold` (FaultIn has normally brought
// the item into memory; if anything moved it meanwhile, that call reads it
// the blocking way, so a call is deferred at most once).
struct ColdFetch {
  int fd = -1;              // the segment file to read; open while `hold` is
  uint64_t offset = 0;      // where the record starts
  uint32_t length = 0;      // its bytes
  uint64_t location = 0;    // the store's name for the record
  std::shared_ptr<void> hold;  // keeps `fd` open; reset when done
};

// What a reader sees of an item. Valid only inside the Read() callback.
class QCLOUD_EXPORT ItemView {
 public:
  std::string_view key() const noexcept;
  uint32_t flags() const noexcept;
  uint64_t cas() const noexcept;
  size_t value_size() const noexcept;
  // Remaining time to live in seconds, -1 for an item that never expires.
  int64_t ttl() const noexcept;
  // Seconds since the item was last read or written (before this read).
  uint32_t idle_seconds() const noexcept;
  // The item had been read before this read.
  bool fetched_before() const noexcept;
  // Invalidated (meta "I") and not yet replaced: readers should refresh it.
  bool stale() const noexcept;
  // This read won the right to recompute the item (meta "W").
  bool won() const noexcept;
  // Another reader already won the right to recompute (meta "Z").
  bool win_token_taken() const noexcept;
  // The item was stored with a binary (base64 on the wire) key.
  bool binary_key() const noexcept;
  // Appends the value's bytes to `out` (one copy, block by block).
  void AppendValueTo(Buffer& out) const;
  void CopyValueTo(char* dst) const noexcept;  // dst has value_size() bytes

 private:
  friend class StoreImpl;
  ItemView(const StoreShard* shard, uint32_t head, uint32_t now, uint8_t extra,
           std::string_view key) noexcept
      : shard_(shard), key_(key), head_(head), now_(now), extra_(extra) {}
  const StoreShard* shard_;
  std::string_view key_;  // the key the reader asked for (it equals the item's)
  uint32_t head_;
  uint32_t now_;
  uint8_t extra_;
};

// Told of each live item evicted to make room: not of expired or flushed
// items reclaimed, nor of items sunk to the cold tier (memcached's "watch
// evictions"). Called on the evicting thread with the item's shard locked:
// keep it short and do not call back into the store.
class EvictionObserver {
 public:
  virtual ~EvictionObserver() = default;
  virtual void OnEviction(const ItemView& item) noexcept = 0;
};

struct ReadOptions {
  std::optional<int64_t> touch_exptime;  // set a new exptime on a hit (gat/touch, meta T)
  bool update_access = true;             // a hit marks the item recently used (meta u = false)
  std::optional<int64_t> vivify_exptime;  // on a miss create an empty item, caller wins (meta N)
  std::optional<uint32_t> recache_below;  // win if ttl < this many seconds (meta R)
  // Look only (memcached's "me"): no access time, no fetched mark, no
  // recompute token handed out; other options are ignored.
  bool inspect = false;
  ColdFetch* defer_cold = nullptr;  // non-null: kColdPending instead of a disk read (see ColdFetch)
};

struct WriteOptions {
  uint32_t flags = 0;     // opaque client flags, returned by reads
  int64_t exptime = 0;    // memcached exptime, see the header comment
  uint64_t cas = 0;       // nonzero: store only if the item's CAS equals this (kExists/kNotFound)
  bool binary_key = false;  // remember that the key was sent base64-encoded (meta b)
  bool invalidate_if_cas_older = false;  // meta ms I: a stale CAS marks the item stale instead of kExists
  ColdFetch* defer_cold = nullptr;  // non-null: kColdPending instead of a disk read (see ColdFetch)
};

struct WriteResult {
  Outcome outcome = Outcome::kOk;
  uint64_t cas = 0;  // the stored item's new CAS when outcome == kOk
};

struct ArithOptions {
  bool increment = true;                 // false: decrement, clamped at 0
  uint64_t delta = 1;                    // added (wraps at 2^64) or subtracted
  uint64_t cas = 0;                      // nonzero: only if the item's CAS matches
  std::optional<uint64_t> initial;       // on a miss create the item with this value
  int64_t exptime = 0;                   // exptime of an item created by `initial`
  // A result no longer than the old value overwrites it in place, padded
  // with spaces, as memcached does in all three protocols while no other
  // request holds the item. false writes a new item of the exact length.
  bool in_place = true;
  ColdFetch* defer_cold = nullptr;  // non-null: kColdPending instead of a disk read (see ColdFetch)
};

struct ArithResult {
  Outcome outcome = Outcome::kOk;
  uint64_t value = 0;  // the new value
  uint64_t cas = 0;    // the item's new CAS
  bool created = false;
};

struct DeleteOptions {
  uint64_t cas = 0;                  // nonzero: only if the item's CAS matches
  bool invalidate = false;           // meta md I: mark stale (new CAS) instead of deleting
  std::optional<int64_t> exptime;    // with invalidate: new exptime
  ColdFetch* defer_cold = nullptr;   // non-null: kColdPending instead of a disk read (see ColdFetch)
};

// Where a Scan() goes on from.
struct ScanCursor {
  uint32_t shard = 0;
  uint32_t bucket = 0;
  bool done = false;
};

// Where a ScanCold() goes on from.
struct ColdScanCursor {
  uint64_t segment = 0;
  uint64_t offset = 0;
  bool done = false;
};

// What a scan sees of an item on the cold tier (its value stays on disk).
struct ColdItemInfo {
  std::string_view key;
  uint32_t flags = 0;
  uint64_t cas = 0;
  int64_t ttl = -1;           // seconds left, -1 = never expires
  uint32_t idle_seconds = 0;  // since its last access before it sank
  size_t value_size = 0;
};

struct StoreStats {
  size_t block_size = 0;
  uint64_t total_blocks = 0;
  uint64_t used_blocks = 0;
  uint64_t touched_blocks = 0;   // blocks ever used (the pool's resident part)
  uint64_t curr_items = 0;
  uint64_t total_items = 0;      // items ever stored
  uint64_t item_bytes = 0;       // memcached's "bytes": sum of 59 + key + value of live items
  uint64_t evictions = 0;        // live items removed to make room
  uint64_t reclaimed = 0;        // expired or flushed items whose memory was reused
  uint64_t expired_unfetched = 0;
  uint64_t evicted_unfetched = 0;
  uint64_t hash_buckets = 0;
  uint64_t hash_expansions = 0;
  uint64_t memory_bytes = 0;     // the configured budget
  uint64_t index_bytes = 0;      // memory of the hash buckets
  // Cold tier (all 0 without one).
  uint64_t cold_items = 0;        // items on SSD (each has a stub in memory)
  uint64_t cold_disk_bytes = 0;   // size of the segment files
  uint64_t cold_live_bytes = 0;   // bytes of live records in them
  uint64_t cold_stub_bytes = 0;   // memory of the stubs
  uint64_t cold_segments = 0;
  uint64_t cold_sunk = 0;         // items written to the tier
  uint64_t cold_reactivated = 0;  // sunk items read back into memory
  uint64_t cold_reads = 0;        // record reads from disk
  uint64_t cold_compactions = 0;
  uint64_t cold_full = 0;         // sinks refused: tier full (those items were evicted)
  uint64_t cold_errors = 0;       // I/O or checksum failures (answered kIoError, not as misses)
  uint64_t cold_recovered = 0;    // items found on disk at Open
};

class QCLOUD_EXPORT Store {
 public:
  // Validates the options and maps the block pool (pages are touched only
  // when first used, so an idle store costs little RSS). Errors:
  // kInvalidArgument for options out of range, kResourceExhausted when the
  // pool cannot be mapped.
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Looks `key` up. On a hit calls visit(item) with the shard locked (keep
  // it short; do not call back into the store) and returns kOk; otherwise
  // kNotFound (or kBadKey). With vivify_exptime, a miss creates an empty
  // item and visits it with won() set.
  template <typename F>
  Outcome Read(std::string_view key, const ReadOptions& options, F&& visit) {
    return ReadImpl(key, options, &Thunk<F>, &visit);
  }
  // Visits the live items in memory, up to `buckets` hash buckets per call
  // from *cursor (start with a default ScanCursor; repeat until
  // cursor->done), with their shard locked (keep visit short; do not call
  // back into the store). For dumps (memcached's lru_crawler metadump).
  // Not a snapshot: an item written, moved by a table expansion or sunk
  // meanwhile may be missed or visited twice; items on the cold tier are
  // not visited. Reads nothing: no access time, no fetched mark.
  template <typename F>
  void Scan(ScanCursor* cursor, size_t buckets, F&& visit) {
    ScanImpl(cursor, buckets, &Thunk<F>, &visit);
  }
  // Visits the live items on the cold tier, reading about `max_bytes` of
  // its segments per call from *cursor (repeat until cursor->done); with
  // Scan() this lists every item (memcached's metadump sees the items it
  // keeps on flash too). Not a snapshot, as Scan(). Reads no values and
  // changes nothing. A tier read error ends the scan (counted in
  // cold_errors). Done at once without a cold tier.
  template <typename F>
  void ScanCold(ColdScanCursor* cursor, size_t max_bytes, F&& visit) {
    ScanColdImpl(cursor, max_bytes, &ColdThunk<F>, &visit);
  }
  // A hint that `keys` (up to 32) are about to be read: starts loading their
  // index slots, then each slot's first item, into the CPU cache, so that
  // the memory loads of pipelined requests overlap instead of waiting one
  // after another. Changes nothing.
  void Prefetch(std::span<const std::string_view> keys) noexcept;
  // Copies the value of `key` into *value. True on a hit; false on a miss
  // and on Outcome::kIoError alike, so callers that must tell those apart
  // (the protocol sessions do) use Read().
  bool Get(std::string_view key, std::string* value, uint32_t* flags = nullptr,
           uint64_t* cas = nullptr);

  // Stores `value` under `key` per `mode`; see Outcome for the failures.
  WriteResult Write(StoreMode mode, std::string_view key, ByteView value,
                    const WriteOptions& options);
  WriteResult Set(std::string_view key, std::string_view value, const WriteOptions& options = {}) {
    return Write(StoreMode::kSet, key, ByteView(value), options);
  }
  Outcome Delete(std::string_view key, const DeleteOptions& options = {});
  // Sets a new exptime. kOk or kNotFound.
  Outcome Touch(std::string_view key, int64_t exptime);
  // incr/decr on a value holding a decimal number (leading spaces, trailing
  // spaces allowed as memcached writes them); see ArithOptions::in_place.
  ArithResult Arith(std::string_view key, const ArithOptions& options);

  // Brings `key`'s sunk item into memory from `record`, the bytes read as
  // `fetch` (from a call that returned kColdPending) said. kOk when the item
  // is in memory now (or already was); kNotFound when the record is no
  // longer the key's live one (erased, moved, expired) or there was no room;
  // kIoError when the bytes fail their checksum (counted in cold_errors).
  // In every case the caller repeats its call without defer_cold.
  Outcome FaultIn(std::string_view key, const ColdFetch& fetch, ByteView record);

  // Makes every item stored or read before now (delay <= 0) or before the
  // time the memcached exptime `delay` names, invisible from that time on.
  void FlushAll(int64_t delay = 0);

  // Background work, run by the caller's thread every second or so: sinks
  // items idle for cold_after (visiting up to `buckets` hash buckets per
  // shard), writes the cold tier's buffer out and cleans its oldest
  // segment when half of the tier is garbage. No-op without a cold tier.
  Status Maintain(size_t buckets = 4096);
  // Sinks every item in memory to the cold tier and makes it durable (a
  // clean shutdown that loses nothing). Errors: kNotSupported without a cold
  // tier, kv::Errc::kColdTierFull, the tier's I/O errors.
  Status SinkAll();

  // Sets the eviction observer, or clears it with nullptr; it must stay
  // valid until cleared. Any thread.
  void SetEvictionObserver(EvictionObserver* observer) noexcept;

  StoreStats Stats() const;
  const StoreOptions& options() const noexcept;
  // Seconds since Open() on the store's clock (memcached's "uptime").
  uint32_t Uptime() const noexcept;
  // The largest value storable under a key of `key_size` bytes.
  size_t MaxValueSize(size_t key_size) const noexcept;

 private:
  using VisitFn = void (*)(void*, const ItemView&);
  using ColdVisitFn = void (*)(void*, const ColdItemInfo&);
  template <typename F>
  static void ColdThunk(void* f, const ColdItemInfo& item) {
    (*static_cast<std::remove_reference_t<F>*>(f))(item);
  }
  void ScanColdImpl(ColdScanCursor* cursor, size_t max_bytes, ColdVisitFn visit, void* ctx);
  template <typename F>
  static void Thunk(void* f, const ItemView& item) {
    (*static_cast<std::remove_reference_t<F>*>(f))(item);
  }
  explicit Store(std::unique_ptr<StoreImpl> impl) noexcept;
  Outcome ReadImpl(std::string_view key, const ReadOptions& options, VisitFn visit, void* ctx);
  void ScanImpl(ScanCursor* cursor, size_t buckets, VisitFn visit, void* ctx);

  // The engine, behind a pointer so that libqcloud-kv.so's ABI outlives
  // changes to its layout.
  std::unique_ptr<StoreImpl> impl_;
};

}  // namespace qcloud::kv
