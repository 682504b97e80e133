#pragma once

// qcloud::block::Store — CBS's volume store: thin-provisioned virtual disks
// with redirect-on-write snapshots and clones, on a directory.
//
//   auto store = Store::Open({.data_dir = "/var/lib/qcloud-block"}).value();
//   store->CreateVolume("vm1-root", 10 * kGiB).ok();
//   auto disk = store->OpenVolume("vm1-root").value();
//   disk->Write(4096, ByteView(buf, 8192), /*fua=*/false);
//   disk->Flush();                                   // durable from here on
//   store->CreateSnapshot("vm1-root", "before-upgrade");
//   store->Clone("vm1-root", "before-upgrade", "vm2-root");
//
// Model. A volume is an array of 4 KiB blocks, addressed in bytes (reads and
// writes of any offset and length; unaligned ones are merged into whole
// blocks). Its contents are a chain of layers: the volume's own, mutable
// layer on top, and below it the frozen layers of its snapshots (and, for a
// clone, of the snapshot it was cloned from). A layer maps 1 MiB logical
// extents to physical extents of the data file, with one bit per block for
// "this layer holds the block". A read takes each block from the highest
// layer that holds it; a block no layer holds reads as zeros.
//   - Thin: a physical extent is allocated by the first write to its logical
//     extent in a layer. The volumes' sizes may add up to more than the disk
//     (or capacity_bytes); a write that needs an extent when none is left
//     fails with kResourceExhausted and changes nothing.
//   - Snapshot: the volume's layer is frozen under the snapshot's name and
//     the volume gets a new empty layer on top: O(1), whatever the size.
//     An overwrite after a snapshot writes its data once, into the volume's
//     own extent (redirect-on-write; the snapshot's block is not copied).
//   - Rollback: the volume's own layer is dropped, a new empty one goes on
//     top of the snapshot. Clone: a new volume whose layer sits on top of
//     the snapshot. Deleting a snapshot or volume frees every extent no
//     remaining layer reads; a frozen layer read by exactly one layer is
//     merged into it.
//   - Read-ahead: a volume read sequentially (each read starting where the
//     last ended, three in a row) has the next window (8 reads' worth,
//     256 KiB to 4 MiB) read ahead into the page cache of the copy reads
//     go to.
//   - Write merging (merge_bytes): a stream of small sequential writes is
//     written out in runs of up to 256 KiB; readers see the run at once.
//   - Trim and write-zeroes: the blocks read as zeros afterwards; their
//     space goes back to the file system (a hole), or stays allocated with
//     no_hole. A whole extent trimmed in a layer with nothing below is freed.
//
// Durability. A completed write is visible to every reader at once. Flush()
// (or a write with fua) makes every write completed before it durable:
// kill -9 or a power cut after it loses none of them. Writes not yet flushed
// may survive in part or not at all, block by block, never as another
// volume's data. Order: data is written in place, then at the flush the data
// file is synced and then the layer maps are committed to the metadata
// database (LMDB, one transaction); an extent freed is reused only after the
// commit that freed it (and, with zero-copy reads, once no read plan holds
// it and none of its pages is left in the page cache: see PlanRead). Volume and snapshot operations are durable when they
// return. Open() recovers: what the last commit says is the store.
//
// On disk (format version 1, docs/notes/block-format.md):
//   <data_dir>/meta/        LMDB environment: volumes, snapshots, layers, extent maps
//   <data_dir>/extents.dat  physical extents, extent p at byte p * 1 MiB (p >= 1);
//                           sparse: holes read as zeros
//
// Tiers. The copies are the capacity ("SATA") tier. With ssd_dir set, a
// cache of 4 KiB blocks in <ssd_dir>/cache.dat sits above them: a block
// read twice within a while is kept there (a scan does not displace it), a
// CLOCK with use counts picks the cold blocks to drop, and Maintain()
// drops them ahead of need. Write-through: the copies always hold
// everything, so the tier needs no recovery and starts empty at each open.
// Its memory is about 13 bytes per cached block (StoreStats::tier_*).
//
// Replicas. The data directory's extents.dat is copy 0; each entry of
// `replicas` is one more, holding the same bytes (CBS keeps 3: pass two).
// Metadata stays in the data directory. A write completes once
// write_quorum whole copies have it (else kIoError, nothing promised); a
// read goes to the first whole copy and to the next when one fails; a flush
// syncs them all. A copy that fails (I/O error, its NBD server gone, its
// directory wiped) gets no more writes and remembers which extents it
// missed; Maintain() reconnects it and copies those extents in, or every
// extent when it came back empty or from another store, while I/O goes on.
// Open() refuses a store with fewer than write_quorum whole copies, and a
// copy whose header names another store. The store remembers its replicas:
// an Open() that names none (a tool working on a stopped server) uses the
// ones it was last opened with. After a crash (a store destroyed without
// Close()), copies may differ in blocks written since the last flush:
// reads keep to the first whole copy, so a client sees one of them
// consistently, and Maintain() resyncs every other whole copy from it,
// extent by extent while I/O goes on, until they hold the same bytes.
//
// Concurrency. Reads and writes of one volume run in parallel from any
// number of threads; writes that touch the same extent are serialized (an
// unaligned write's read-merge-write of a block never loses a neighbour's
// bytes), reads share. Volume and snapshot operations wait for the I/O in
// flight on the volumes they change and hold new I/O until they finish.
//
// Thread safety: every method, from any thread.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/env.h"
#include "qcloud/core/export.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::block {

inline constexpr uint32_t kBlockSize = 4096;           // the unit of a layer's map
inline constexpr uint32_t kExtentSize = 1u << 20;       // the unit of allocation
inline constexpr uint32_t kBlocksPerExtent = kExtentSize / kBlockSize;
inline constexpr size_t kMaxNameLength = 128;           // volume and snapshot names
inline constexpr uint64_t kMaxVolumeSize = uint64_t{1} << 50;  // 1 PiB

struct StoreOptions {
  std::string data_dir;               // required; created if absent
  uint64_t capacity_bytes = 0;        // physical extents allowed, in bytes; 0 = no limit
                                      // but the file system's free space
  size_t max_map_bytes = size_t{1} << 34;  // LMDB map size (address space, sparse); 16 GiB
  Env* env = nullptr;  // file system for extents.dat; not owned, outlives the store; null = POSIX
  // More copies of the physical extents (see Replicas below): "dir:PATH"
  // or a plain path (a local directory), or "nbd://HOST:PORT/EXPORT" (an
  // NBD export, through libnbd: another qcloud-blockd's volume, nbdkit...).
  std::vector<std::string> replicas;       // default none: one copy, the data directory's
  unsigned write_quorum = 0;               // copies a write needs; 0 = a majority of 1 + replicas
  // Write merging: block-aligned writes of up to 64 KiB that continue the
  // previous one in the same extent are gathered, acknowledged, and
  // written to the copies as one write of up to this many bytes (when the
  // run is full, or broken by another write, a read of it, a flush, or
  // Maintain()). 0 = every write goes out on its own.
  uint32_t merge_bytes = 256 * 1024;
  // The performance ("SSD") tier, see Tiers below. Empty = none.
  std::string ssd_dir;
  uint64_t ssd_bytes = uint64_t{1} << 30;  // its size; default 1 GiB
};

struct VolumeInfo {
  std::string name;
  uint64_t size = 0;               // bytes
  uint64_t allocated_bytes = 0;    // physical extents of the volume's own layer, in bytes
  std::string origin;              // "volume@snapshot" a clone was made from; "" otherwise
  std::chrono::system_clock::time_point created;
};

struct SnapshotInfo {
  std::string volume;
  std::string name;
  uint64_t size = 0;               // the volume's size when it was taken
  std::chrono::system_clock::time_point created;
};

struct StoreStats {
  uint64_t volumes = 0;
  uint64_t snapshots = 0;
  uint64_t layers = 0;
  uint64_t extents_allocated = 0;  // physical extents in use
  uint64_t extents_capacity = 0;   // 0 = no limit
  uint64_t extents_pending_free = 0;  // freed, reusable after the next commit
  uint64_t reads = 0, writes = 0, flushes = 0, trims = 0, zeroes = 0;
  uint64_t read_bytes = 0, write_bytes = 0;
  uint64_t data_writes = 0;        // pwrite-class calls on the data file
  uint64_t merged_reads = 0;       // unaligned writes that read a block to merge into
  uint64_t merged_writes = 0;      // writes gathered into a run instead of going out alone
  uint64_t readaheads = 0;         // read-ahead windows started for sequential readers
  uint64_t readahead_bytes = 0;
  uint64_t commits = 0;            // metadata transactions
  uint64_t enospc = 0;             // writes refused for want of an extent
  // The SSD tier (zeros without one).
  uint64_t tier_slots = 0, tier_used = 0;
  uint64_t tier_hits = 0, tier_misses = 0, tier_admissions = 0, tier_evictions = 0;
  double tier_bytes_per_slot = 0;  // the policy's memory per cached block
};

// One copy of the data (see Replicas).
struct CopyInfo {
  std::string location;            // the data directory, a replica directory, or an NBD URI
  std::string health;              // "whole", "rebuilding" or "failed"
  uint64_t missed_extents = 0;     // written while it was failed (or left to rebuild)
  uint64_t failures = 0;
  uint64_t rebuilt_extents = 0;     // copied in by rebuilds and resyncs
  bool resyncing = false;           // whole, to be made equal to the copy reads go to (after a crash)
  std::string last_error;
};

class Store;

// An open volume. Valid until the Store is destroyed; after the volume is
// deleted, its calls fail with kNotFound. Offsets and lengths in bytes;
// [offset, offset + length) must lie within size(), else kOutOfRange.
class QCLOUD_EXPORT Volume {
 public:
  virtual ~Volume() = default;
  virtual const std::string& name() const noexcept = 0;
  virtual uint64_t size() const noexcept = 0;  // now (a resize changes it)
  virtual Status Read(uint64_t offset, MutableByteView dst) = 0;
  // kResourceExhausted: no physical extent left (nothing was written).
  virtual Status Write(uint64_t offset, ByteView src, bool fua) = 0;
  virtual Status Flush() = 0;  // = Store::Flush()
  virtual Status Trim(uint64_t offset, uint64_t length, bool fua) = 0;
  virtual Status WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole) = 0;
  // Which bytes of [offset, offset + length) hold data (some layer has
  // their block) and which are holes (never written, or trimmed away in a
  // volume with nothing below: they read as zeros and take no space).
  // Appends runs in order, adjacent ones of one kind merged, at most
  // max_runs of them; the last may end before offset + length.
  struct Run {
    uint64_t length = 0;
    bool allocated = false;
  };
  virtual Status Map(uint64_t offset, uint64_t length, std::vector<Run>& runs, size_t max_runs = 1024) = 0;
  // A hint: [offset, offset + length) will be read soon (read ahead into
  // the page cache of the copy reads go to). Errors only for the range.
  virtual Status Prefetch(uint64_t offset, uint64_t length) = 0;

  // Zero-copy reads, for a server that sends file bytes with splice(2) or
  // sendfile(2) (core's SessionIo::SendFile) instead of copying them.
  // PlanRead says where the bytes of [offset, offset + length) are: pieces
  // of an open file (fd, offset) or zeros (fd -1), in order, adding up to
  // `length`. The bytes there are the range's, as a Read() at the call
  // would return them; a later write to the range may show through (as in
  // a read racing that write), another volume's data never does: while
  // `hold` lives, the file stays open and no extent the plan names is
  // reused, and afterwards an extent is reused only once no page of it is
  // left in the page cache (so none a reply still refers to is rewritten
  // in place). Release `hold` once the bytes are handed to the kernel.
  // False (nothing planned): read with Read() — the store has an SSD tier,
  // the copy reads go to is not a local file, or the kernel cannot tell
  // cached pages (before Linux 6.5) or punch holes.
  //
  // A piece whose pages are all in the page cache also has `mem`: the
  // same bytes in a read-only mapping of the file, valid while `hold`
  // lives, so they can be sent with one copy and no splice.
  struct FilePiece {
    int fd = -1;
    uint64_t offset = 0;
    uint64_t length = 0;
    const std::byte* mem = nullptr;
  };
  struct ReadPlan {
    std::vector<FilePiece> pieces;
    std::shared_ptr<const void> hold;
  };
  virtual Result<bool> PlanRead(uint64_t offset, uint64_t length, ReadPlan& plan) = 0;
};

class QCLOUD_EXPORT Store {
 public:
  // Opens (creating if absent) the store in options.data_dir and recovers
  // it to its last commit. Errors: kInvalidArgument (no data_dir), kIoError,
  // kCorruption (metadata that fails its checks, or another format version).
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  virtual ~Store() = default;

  // Names: 1..kMaxNameLength bytes of [A-Za-z0-9._-], not starting with '.'.
  // Sizes: 1..kMaxVolumeSize, rounded up to a multiple of 4096 bytes.
  // Errors: kInvalidArgument, kAlreadyExists, kNotFound, kIoError.
  virtual Status CreateVolume(std::string_view name, uint64_t size) = 0;
  // Shrinking drops the data past the new end (a later grow reads zeros there).
  virtual Status ResizeVolume(std::string_view name, uint64_t size) = 0;
  // Deletes the volume and its snapshots (clones made from them stay whole).
  virtual Status DeleteVolume(std::string_view name) = 0;
  virtual std::vector<VolumeInfo> ListVolumes() = 0;
  virtual Result<VolumeInfo> GetVolume(std::string_view name) = 0;
  virtual Result<std::shared_ptr<Volume>> OpenVolume(std::string_view name) = 0;

  // Snapshots include every write completed before the call, and are
  // durable when it returns (it flushes first).
  virtual Status CreateSnapshot(std::string_view volume, std::string_view snapshot) = 0;
  virtual Status DeleteSnapshot(std::string_view volume, std::string_view snapshot) = 0;
  // The volume's contents and size become the snapshot's; its writes since
  // are dropped. The snapshot stays.
  virtual Status Rollback(std::string_view volume, std::string_view snapshot) = 0;
  // A new volume `target` with the snapshot's contents and size.
  virtual Status Clone(std::string_view volume, std::string_view snapshot,
                       std::string_view target) = 0;
  virtual std::vector<SnapshotInfo> ListSnapshots(std::string_view volume) = 0;

  // Makes every write completed before the call durable, on every volume.
  virtual Status Flush() = 0;
  // Background work: reconnects failed copies and rebuilds them. Call it
  // every second or so; it returns when the copies are whole or unreachable
  // (the first error, for the log).
  virtual Status Maintain() = 0;
  // A clean stop: flushes, then marks every whole copy as closed, so that
  // the next Open() has no copies to resync. Changes after it fail with
  // kUnavailable; destroy the store next. Destroying a store without
  // it is a crash as far as the copies know (nothing is lost that a flush
  // made durable).
  virtual Status Close() = 0;
  virtual std::vector<CopyInfo> copies() = 0;
  virtual StoreStats stats() = 0;
};

// Registers the store's statistics (StoreStats as qcloud_block_* counters
// and gauges) and its copies' health (qcloud_block_copy_*{location}) in
// `registry`, read at render time. `store` must outlive the registry's use.
QCLOUD_EXPORT Status RegisterMetrics(Store& store, MetricsRegistry& registry);

}  // namespace qcloud::block
