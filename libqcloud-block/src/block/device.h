#pragma once

// The physical extent space under the block store, and its copies.
//
// A Copy is one place that holds the whole space: the data directory's
// extents.dat, another local directory's, or an NBD export (libnbd), byte
// for byte the same layout (docs/notes/block-format.md). Its first 4 KiB is
// a header naming the store (uuid) and saying whether the copy is whole:
//
//   bytes 0..20   "QCLOUD-BLOCK-DATA v1\n"
//   bytes 32..47  the store's uuid
//   byte  48      1 = whole (in sync), 2 = being rebuilt
//   byte  49      1 = in use by a store that has not closed it (Close());
//                 0 = closed cleanly (and in stores written before it existed)
//
// Mirror writes every copy that is not failed and completes a write once
// `quorum` whole copies have it; it reads from the first whole copy, and
// moves to the next when one fails. A copy that fails (an I/O error, its
// NBD server gone, its directory wiped) stops getting writes; the extents
// written meanwhile are remembered. Maintain() reopens failed copies and
// rebuilds them from a whole one, extent by extent, while I/O goes on:
// only the extents it missed when its header shows it whole and of this
// store, every allocated extent otherwise. Writes take an extent's stripe
// lock shared, a rebuild's copy of that extent takes it exclusively, so a
// write is never overwritten by an older copy.
//
// After a crash (a whole copy's byte 49 still 1 at Start), the whole copies
// may differ in the blocks written since the last sync: each wrote some of
// them. Any of those contents is a valid crash state, but two copies must
// not answer differently, so Maintain() makes every whole copy equal to
// the one reads go to, extent by extent under the same locks (a resync:
// the copies stay whole and keep taking writes meanwhile).
//
// Thread safety: every method from any thread.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/env.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::block::detail {

inline constexpr size_t kHeaderSize = 4096;
// PMD size: the page cache's largest folio on x86-64.
inline constexpr uint64_t kLargestFolio = 2 << 20;
inline constexpr uint8_t kCopyWhole = 1;
inline constexpr uint8_t kCopyRebuilding = 2;

// One place holding the extent space.
class Copy {
 public:
  virtual ~Copy() = default;
  virtual const std::string& name() const noexcept = 0;
  // (Re)connects or (re)opens; ok when the copy can take I/O.
  virtual Status Open() = 0;
  // True when the copy is what was opened (a local file still at its path;
  // an NBD connection still up). False: reopen and rebuild it.
  virtual bool StillThere() = 0;
  // Bytes past what was ever written read as zeros.
  virtual Status Read(uint64_t offset, MutableByteView dst) = 0;
  virtual Status Write(uint64_t offset, ByteView src) = 0;
  // Starts a write and returns what waits for its end: the copies of one
  // write proceed together (an NBD copy's round trip overlaps the others).
  // `src` stays valid until the waiter has returned. Default: Write() now.
  virtual std::function<Status()> StartWrite(uint64_t offset, ByteView src) {
    Status st = Write(offset, src);
    return [st] { return st; };
  }
  virtual Status Zero(uint64_t offset, uint64_t length, bool release) = 0;
  virtual Status Sync() = 0;
  // A hint: [offset, offset + length) will be read soon (read-ahead). The
  // local copy asks the kernel to read it into the page cache.
  virtual void Advise(uint64_t offset, uint64_t length) { (void)offset, (void)length; }
  // Bytes the copy can hold (0 = no limit).
  virtual uint64_t capacity() const noexcept = 0;
  // A local copy's open file (for zero-copy reads); null for the others.
  virtual std::shared_ptr<File> file() const { return nullptr; }
};

// extents.dat in `dir` through `env` (created if absent).
std::unique_ptr<Copy> NewLocalCopy(Env& env, std::string dir);
// An NBD export, "nbd://HOST:PORT/EXPORT" (any URI libnbd takes).
// kNotSupported when this build has no libnbd.
Result<std::unique_ptr<Copy>> NewNbdCopy(std::string uri);
// "nbd://...", "nbds://...", "nbd+unix://..." -> NBD; "dir:PATH" or a path -> local.
Result<std::unique_ptr<Copy>> NewCopy(Env& env, const std::string& spec);

struct CopyState {
  std::string name;
  enum class Health : uint8_t { kWhole, kRebuilding, kFailed } health = Health::kWhole;
  uint64_t missed = 0;      // extents written while it was failed, or left to rebuild
  uint64_t failures = 0;    // times it was marked failed
  uint64_t rebuilt = 0;     // extents copied into it
  bool resyncing = false;   // after a crash: still to be made equal to the copy reads go to
  std::string last_error;
};

// The write-intent map (intent.map in the data directory, block-format.md):
// which granules of kIntentGranule physical extents the copies may differ
// in after a crash, so that the resync copies those, not every extent. A
// granule is marked, durably, before the first write to it reaches any
// copy; it is cleared lazily, after a sync of every copy that no write to
// it was in flight for or started after, and only while every copy is
// whole and none is being resynced (a copy that missed writes keeps them
// marked). Thread safety: all methods may be called concurrently.
inline constexpr uint32_t kIntentGranule = 64;  // extents (64 MiB) per bit
inline constexpr size_t kIntentHeader = 4096;
// Bits for every u32 extent number: the largest map a file may hold.
inline constexpr uint64_t kIntentMaxBytes = (uint64_t{1} << 32) / kIntentGranule / 8;

// At most this many copies are recorded stale (a store has at most 5).
inline constexpr size_t kMaxStaleCopies = 16;

// What an intent.map file says: every granule dirty (`all`: the map was
// missing, foreign or damaged, or a resync from such a state has not
// finished) or the marked ones in `bits` (bit g % 64 of word g / 64); and
// the copies that missed acknowledged writes (xxh3-64 of their names;
// unknown, so empty, when `all`).
struct IntentImage {
  bool all = false;
  std::vector<uint64_t> bits;
  std::vector<uint64_t> stale;
};
// Decodes a whole intent.map; bad or foreign content reads as `all`.
IntentImage ParseIntentMap(ByteView file, const std::array<std::byte, 16>& uuid);

class IntentMap {
 public:
  // Opens (creating) the file and reads the marks it holds.
  static Result<std::unique_ptr<IntentMap>> Open(Env& env, const std::string& path,
                                                 const std::array<std::byte, 16>& uuid);
  // After a crash (`crashed`) the marks read stay (made durable as `all`
  // where the file was unusable); otherwise the map starts empty.
  Status Start(bool crashed);
  // Whether physical extent p may differ between the copies (the crash's
  // marks; what is written from now on adds to them).
  bool Dirty(uint32_t p);
  // Before a write to extents [first, last] reaches any copy: marks their
  // granules (durably, when one was not marked) and counts the write in
  // flight until End().
  Status Begin(uint32_t first, uint32_t last);
  void End(uint32_t first, uint32_t last);
  // Around a sync of every copy: the granules StartSync() finds marked and
  // idle are cleared by EndSync(clear = true) unless written meanwhile.
  uint64_t StartSync();
  void EndSync(uint64_t epoch, bool clear);
  // Marked granules now, for tests and the copies' listing.
  uint64_t marked();

  // Copies that missed acknowledged writes: each recorded durably before
  // the first write it missed is acknowledged (Mirror::Mutate), so that
  // after any stop such a copy is rebuilt, and never read from or resynced
  // from. Named by their location (Copy::name()). Kept across clean stops
  // until the copy is rebuilt.
  Status MarkStale(std::string_view copy);
  bool Stale(std::string_view copy);
  // Rebuilt: not synced (a lost clear only rebuilds it again).
  void ClearStale(std::string_view copy);
  // A new store: no copy can have missed anything.
  void ForgetStale();

 private:
  IntentMap(std::unique_ptr<File> file, std::array<std::byte, 16> uuid) : file_(std::move(file)), uuid_(uuid) {}
  Status WriteHeaderLocked();
  Status WriteWordsLocked(size_t from, size_t to);
  void GrowLocked(size_t granules);

  std::unique_ptr<File> file_;
  const std::array<std::byte, 16> uuid_;
  std::mutex mu_;
  bool all_ = false;
  std::vector<uint64_t> bits_;      // the marks, as on disk
  std::vector<uint32_t> inflight_;  // writes in flight per granule
  std::vector<uint64_t> epoch_;     // the sync epoch each granule was last written in
  uint64_t sync_epoch_ = 1;
  std::vector<uint32_t> candidates_;  // marked and idle at the last StartSync()
  std::vector<uint64_t> stale_;       // xxh3-64 of stale copies' names
};

class Mirror {
 public:
  // `copies[0]` is the data directory's. `allocated` lists the physical
  // extents in use (for a full rebuild). quorum: 1..copies.size().
  // `intent`: the write-intent map (with more than one copy); without one
  // a resync after a crash copies every allocated extent.
  Mirror(std::vector<std::unique_ptr<Copy>> copies, unsigned quorum, std::array<std::byte, 16> uuid,
         std::function<std::vector<uint32_t>()> allocated, std::unique_ptr<IntentMap> intent = nullptr);
  ~Mirror();

  // Opens every copy and reads its header. `fresh`: the store holds no
  // extent yet, so every reachable copy is whole once it has a header.
  // Otherwise a copy whose header is not this store's whole copy is
  // rebuilt. Fails when fewer than `quorum` copies are whole.
  Status Start(bool fresh);

  Status Read(uint64_t offset, MutableByteView dst);
  Status Write(uint64_t offset, ByteView src);
  Status Zero(uint64_t offset, uint64_t length, bool release);
  Status Sync();
  // Syncs every copy and marks each whole one closed cleanly, so that the
  // next Start() has nothing to resync. Writes after it reopen the marks
  // only through a new Start().
  Status Close();
  // Read-ahead hint to the copy reads go to.
  void Advise(uint64_t offset, uint64_t length);
  // Zero-copy reads: the file of the copy reads go to now, when it is a
  // local one with a descriptor; else null (read with Read()).
  std::shared_ptr<File> ReadFile();
  // For zero-copy reads, before [offset, offset + length) is punched out
  // and reused: true when no local copy has a page of it cached (so no
  // page a reply still refers to can be zeroed or rewritten in place).
  // Asks the kernel to drop clean, unreferenced ones first (the whole
  // 2 MiB-aligned range around it: a large folio may straddle extents).
  // False: try again later.
  bool Uncached(uint64_t offset, uint64_t length);
  // Whether Uncached() can tell (cachestat(2), Linux 6.5) and every local
  // copy punches holes: the conditions for zero-copy reads.
  bool CanTellCached();

  // Reopens failed copies and rebuilds what they missed, then resyncs the
  // whole copies after a crash; returns when every copy is whole (and
  // resynced) or could not be reached. Background work: call it every
  // second or so (several calls never run at once).
  Status Maintain();

  std::vector<CopyState> states();
  // Bytes every copy can hold (0 = no limit).
  uint64_t capacity() const noexcept;

 private:
  struct Slot;
  enum class Op { kWrite, kZero };
  // Runs `start` on every copy that is not failed (the last first, so the
  // remote ones are in flight while the local one writes), then waits for
  // them all.
  Status Mutate(uint64_t offset, uint64_t length,
                const std::function<std::function<Status()>(Copy&)>& start);
  void Fail(Slot& s, const Status& why);
  Status WriteHeader(Copy& c, uint8_t state);
  // Copies physical extent `p` into `target` from a whole copy, under the
  // extent's stripe lock held exclusively.
  Status CopyExtent(Slot& target, uint32_t p, std::vector<std::byte>& buf);
  Status Rebuild(Slot& s);
  Status Resync(Slot& s);
  static bool ResyncPending(Slot& s);  // s.resync, read under s.mu
  std::shared_mutex& StripeOf(uint64_t offset) { return stripes_[(offset >> 20) % stripes_.size()]; }

  std::vector<std::unique_ptr<Slot>> slots_;
  const unsigned quorum_;
  const std::array<std::byte, 16> uuid_;
  std::function<std::vector<uint32_t>()> allocated_;
  std::array<std::shared_mutex, 256> stripes_;
  std::mutex maintain_mu_;
  // What byte 49 of the headers written says: 1 from Start() to Close().
  std::atomic<bool> open_{false};
  std::unique_ptr<IntentMap> intent_;
  // Whether the intent map may clear marks: every copy whole, none resyncing.
  bool AllInStep();
};

}  // namespace qcloud::block::detail
