#pragma once

// qcloud::object::ChxStore — one CHX storage unit of COS: the chunks of
// objects in append-only volume files on one disk (a directory).
//
//   auto chx = ChxStore::Open({.dir = "/disk1/chx"}).value();
//   ChunkId id = chx->Append(bytes).value();
//   QCLOUD_RETURN_IF_ERROR(chx->Sync());        // durable from here on
//   Buffer data = chx->Read(id).value();        // one disk read, checksum verified
//   QCLOUD_RETURN_IF_ERROR(chx->Delete(id));
//   (void)chx->Compact();                       // background: reclaims deleted space
//
// Model (as Facebook's Haystack): small files do not become small files on
// disk. Each chunk is a record appended to the active volume file
// (`vol-NNNNNNNN.chx`, sealed at `volume_bytes`); a record is a 32-byte
// header (id, length, a checksum of the header and one of the data) and the
// data. An in-memory index maps a chunk's id to its volume, offset and length
// in 16 bytes (≤ 40 bytes per chunk with the table's free slots), so a read
// is one pread of header + data, whose checksums are verified before a byte
// is returned: bit rot is reported (kCorruption), never served. The index
// is not stored: Open() rebuilds it by scanning every volume's record
// headers, truncating a torn tail left by a crash and skipping (and
// counting) a damaged region.
//
// Ids are never reused: an id is the volume it was first written to (high
// 32 bits; volumes are numbered upwards and the newest is never removed)
// and a sequence within it. Delete() marks the record's header deleted in
// place. Compact() rewrites a sealed volume whose deleted share passed
// `compact_dead_ratio`: live records move to the active volume under their
// ids, the index follows, the old file goes; reads meanwhile keep reading
// the old copy (an open file outlives its removal).
//
// Durability: Append() and Delete() are durable after the next Sync()
// returns ok (a crash before loses only them; never a torn chunk).
//
// Thread safety: every method may be called from any thread. Reads run in
// parallel with each other, with appends and with compaction's I/O.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/env.h"
#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud::object {

// A chunk's name inside one ChxStore. 0 is never a valid id.
struct ChunkId {
  uint64_t value = 0;
  uint32_t volume() const noexcept { return static_cast<uint32_t>(value >> 32); }
  friend bool operator==(ChunkId, ChunkId) = default;
};

struct ChxOptions {
  std::string dir;                      // the unit's directory (one disk); created if missing
  Env* env = nullptr;                   // not owned, outlives the store; null = POSIX (io_uring)
  uint64_t volume_bytes = uint64_t{1} << 30;   // seal a volume at this size (64 KiB..32 GiB); 1 GiB
  uint32_t max_chunk_bytes = 64u << 20;        // largest chunk (Append refuses more); 64 MiB
  double compact_dead_ratio = 0.5;      // Compact() rewrites sealed volumes at least this dead
  // Chunks at least this large are written 4 KiB-aligned with O_DIRECT (no
  // copy through the page cache; falls back to buffered writes where the
  // file system refuses O_DIRECT); 0 = never.
  uint64_t direct_io_min = uint64_t{1} << 20;
  Logger* logger = nullptr;             // recovery and compaction reports; not owned; null = discard
  Clock* clock = nullptr;               // volumes' creation times; not owned, outlives the store; null = real
};

struct ChxStats {
  uint64_t chunks = 0;            // live chunks (index entries)
  uint64_t live_bytes = 0;        // their data bytes
  uint64_t dead_bytes = 0;        // disk bytes of deleted records not yet compacted
  uint64_t volumes = 0;
  uint64_t disk_bytes = 0;        // size of the volume files
  uint64_t index_bytes = 0;       // memory of the in-memory index
  uint64_t corrupt_reads = 0;     // reads refused: a checksum did not match
  uint64_t compactions = 0;       // volumes rewritten
  uint64_t recovered_chunks = 0;  // chunks found by Open()'s scan
  uint64_t truncated_bytes = 0;   // torn tails cut at Open()
  uint64_t skipped_bytes = 0;     // damaged regions skipped at Open()
};

// A chunk assembled where its record is written from: room for the record
// header before the bytes and for the padding after them, 4 KiB-aligned
// for O_DIRECT. Append(ChunkBuffer&) then copies nothing.
class QCLOUD_EXPORT ChunkBuffer {
 public:
  ChunkBuffer() = default;
  explicit ChunkBuffer(size_t capacity);  // bytes of chunk data it holds
  ~ChunkBuffer();
  ChunkBuffer(ChunkBuffer&& other) noexcept;
  ChunkBuffer& operator=(ChunkBuffer&& other) noexcept;

  size_t size() const noexcept { return size_; }
  size_t capacity() const noexcept { return capacity_; }
  bool empty() const noexcept { return size_ == 0; }
  ByteView data() const noexcept;
  // Appends at most capacity() - size() bytes (checked).
  void Append(ByteView bytes);
  void Clear() noexcept { size_ = 0; }

 private:
  friend class ChxStore;
  std::byte* record_ = nullptr;  // header, data, padding
  size_t capacity_ = 0;
  size_t size_ = 0;
};

class QCLOUD_EXPORT ChxStore {
 public:
  // Creates the directory if needed and rebuilds the index from its volumes.
  // Errors: kInvalidArgument (options), kCorruption (a volume file whose own
  // header is damaged or of an unknown format version), the Env's errors.
  static Result<std::unique_ptr<ChxStore>> Open(const ChxOptions& options);
  ~ChxStore();
  ChxStore(const ChxStore&) = delete;
  ChxStore& operator=(const ChxStore&) = delete;

  // Appends one chunk. Errors: kTooLarge over max_chunk_bytes,
  // kResourceExhausted when the id space of volumes is used up, kIoError.
  Result<ChunkId> Append(ByteView data);
  // The same, from bytes assembled in place (no copy); the buffer keeps
  // them (Clear() it to reuse it).
  Result<ChunkId> Append(ChunkBuffer& chunk);
  // Makes every Append() and Delete() that returned before it durable.
  Status Sync();
  // The chunk's bytes. Errors: kNotFound (never stored or deleted),
  // kCorruption (a checksum failed: counted, the bytes are not returned),
  // kIoError.
  Result<Buffer> Read(ChunkId id);
  // As Read(), reading just the record when the caller knows the chunk's
  // length (the object index does): a 1 KiB chunk costs a ~1 KiB read, not
  // its 4 KiB span. A wrong length is reported as corruption.
  Result<Buffer> Read(ChunkId id, uint64_t length);
  // Errors: kNotFound, kIoError.
  Status Delete(ChunkId id);
  // Rewrites every sealed volume at least compact_dead_ratio dead; returns
  // how many. Run it from a background thread; reads and appends go on.
  Result<size_t> Compact();

  // Every live chunk's id (a snapshot), for garbage collection by the owner
  // of the references.
  std::vector<ChunkId> ListChunks() const;

  ChxStats Stats() const;

 private:
  struct Impl;
  explicit ChxStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::object
