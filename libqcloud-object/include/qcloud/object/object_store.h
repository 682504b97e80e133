#pragma once

// qcloud::object::ObjectStore — COS's storage: objects cut into chunks
// spread over several CHX stores (one per disk), named by the index
// (IndexStore), de-duplicated by content. What the S3 front end calls.
//
//   auto store = ObjectStore::Open({.disks = {"/d1/chx", "/d2/chx"}, .index_dir = "/d1/index"}).value();
//   QCLOUD_RETURN_IF_ERROR(store->index().CreateBucket("alice", "photos"));
//   auto w = store->BeginPut();
//   QCLOUD_RETURN_IF_ERROR(w->Write(part1));            // as the body arrives
//   QCLOUD_RETURN_IF_ERROR(w->Write(part2));
//   ObjectMeta meta = w->Finish("photos", "a.jpg", {.content_type = "image/jpeg"}).value();
//   Buffer range = store->Get("photos", "a.jpg", 100, 50).value();
//
// A PUT's bytes go to chunks of `chunk_bytes` as they arrive, each on the
// next disk in turn, while MD5 (the ETag) is computed. A full
// chunk is written by one of `write_threads` while the caller goes on
// receiving (and hashing) the next, so a large PUT costs max(hashing, disk)
// rather than their sum, and Write() does not block an event loop on the
// disk for long; the last chunk is written by Finish() itself. Finish()
// names the object in one index transaction. Until then nothing is visible,
// and a writer dropped without Finish() deletes its chunks: an upload cut
// short leaves nothing behind. If the content was stored already, the new
// chunks are deleted and the object shares the stored ones; PutInstant()
// does that without the bytes.
//
// Garbage: chunks go only after the index transaction that dropped their
// last reference; a crash in between leaves unreferenced chunks, which
// Open() collects (it lists every disk's chunks and keeps the referenced).
//
// Chunk cache: small chunks read recently stay in memory (CLOCK eviction,
// bounded by chunk_cache_bytes), so a hot small object's GET costs no disk
// read. Chunks never change once written and their ids are never reused, so
// a cached chunk is never stale; a deleted one is simply never asked for
// again (the index no longer names it) and ages out. What enters the cache
// passed its checksum.
//
// Durability follows IndexOptions: with kDurable, the chunks are fsync'd
// before the index commit that names them.
//
// Thread safety: every method from any thread; a writer from one thread.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qcloud/core/bytes.h"
#include "qcloud/core/env.h"
#include "qcloud/core/export.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/log.h"
#include "qcloud/core/result.h"
#include "qcloud/object/chx_store.h"
#include "qcloud/object/index_store.h"

namespace qcloud::object {

struct ObjectStoreOptions {
  std::vector<std::string> disks;        // one CHX store directory per disk; at least one
  std::string index_dir;                 // the LMDB environment of the indexes
  Env* env = nullptr;                    // for the CHX stores; not owned, outlives the store; null = POSIX
  Durability durability = Durability::kProcessCrash;  // see IndexOptions
  uint64_t chunk_bytes = uint64_t{8} << 20;   // an object is cut into chunks of this size; 8 MiB
  uint64_t volume_bytes = uint64_t{1} << 30;  // CHX volume size; 1 GiB
  // Memory for small chunks read recently (see "Chunk cache"); 0 = none.
  uint64_t chunk_cache_bytes = uint64_t{64} << 20;
  uint64_t chunk_cache_max_chunk = 64 * 1024;  // larger chunks are never cached
  uint64_t index_map_bytes = uint64_t{64} << 30;  // LMDB map size (address space)
  // Threads that write a PUT's full chunks while the next chunk arrives (a
  // writer has at most one chunk in flight); 0 = on the writer's thread.
  unsigned write_threads = 2;
  Logger* logger = nullptr;              // not owned, outlives the store; null = discard
  Clock* clock = nullptr;                // objects' mtimes; not owned, outlives the store; null = real
};

struct PutOptions {
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> user_metadata;
  std::optional<Md5Digest> expected_md5;  // Content-MD5: Finish() fails kCorruption on mismatch
  // The body's SHA-256, when the caller has verified it anyway (the S3
  // server does for a SigV4 signed payload): Finish() takes it as the
  // content's instead of computing it. It must be right: de-duplication
  // trusts it.
  std::optional<Sha256Digest> sha256;
};

struct ObjectStoreStats {
  uint64_t chunks = 0;          // over every disk
  uint64_t chunk_bytes = 0;     // their live data bytes
  uint64_t collected_chunks = 0;  // unreferenced chunks deleted by Open()
  uint64_t free_errors = 0;     // chunks that could not be deleted (counted, retried at Open)
  uint64_t cache_hits = 0;      // chunk reads served from the chunk cache
  uint64_t cache_misses = 0;    // cacheable chunk reads that went to disk
  uint64_t cache_bytes = 0;     // chunk bytes in the cache now
};

class ObjectStore;

// One PUT in progress. Not thread-safe; drop it (or Abort()) to give up.
class QCLOUD_EXPORT ObjectWriter {
 public:
  ~ObjectWriter();  // aborts unless finished
  ObjectWriter(const ObjectWriter&) = delete;
  ObjectWriter& operator=(const ObjectWriter&) = delete;

  // Appends bytes of the body. Errors: the chunk store's.
  Status Write(ByteView data);
  // Names the object. Errors: kNotFound (no bucket), kInvalidArgument (key),
  // kCorruption (expected_md5 does not match: S3's BadDigest); on any error
  // the chunks written are deleted.
  Result<ObjectMeta> Finish(std::string_view bucket, std::string_view key, const PutOptions& options);
  // Makes the bytes part `number` of multipart upload `upload_id`,
  // replacing an earlier upload of that part. Errors: kNoSuchUpload,
  // kInvalidArgument (number), kCorruption (expected_md5); the chunks are
  // deleted on any error.
  Result<PartInfo> FinishPart(std::string_view upload_id, uint32_t number,
                              const std::optional<Md5Digest>& expected_md5 = std::nullopt);
  void Abort();
  uint64_t size() const noexcept;

 private:
  friend class ObjectStore;
  struct Impl;
  explicit ObjectWriter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class QCLOUD_EXPORT ObjectStore {
 public:
  // Opens every disk and the index, then collects unreferenced chunks.
  // Errors: kInvalidArgument (options), the stores' errors.
  static Result<std::unique_ptr<ObjectStore>> Open(const ObjectStoreOptions& options);
  ~ObjectStore();
  ObjectStore(const ObjectStore&) = delete;
  ObjectStore& operator=(const ObjectStore&) = delete;

  // Buckets and listings.
  IndexStore& index() noexcept;

  std::unique_ptr<ObjectWriter> BeginPut();
  // PUT of a body already in memory.
  Result<ObjectMeta> Put(std::string_view bucket, std::string_view key, ByteView body,
                         const PutOptions& options = {});
  // Instant upload: the object gets stored content without its bytes.
  // kNotFound when no stored content has these hashes and size.
  Result<ObjectMeta> PutInstant(std::string_view bucket, std::string_view key,
                                const ContentId& content, const PutOptions& options = {});
  // Bytes [offset, offset + length) of the object (to its end when length
  // is nullopt). Errors: kNotFound, kOutOfRange (offset past the end),
  // kCorruption (a chunk failed its checksum: never served).
  Result<Buffer> Get(std::string_view bucket, std::string_view key, uint64_t offset = 0,
                     std::optional<uint64_t> length = std::nullopt);
  // Bytes [offset, offset + length) of the object `meta` describes (as
  // GetObject returned it): a large object is served in pieces this way
  // without a second index lookup. length is clamped to the object's end.
  // Errors: kOutOfRange, kCorruption; kNotFound when the object was
  // replaced or deleted and its chunks freed since `meta` was read.
  Result<Buffer> Read(const ObjectMeta& meta, uint64_t offset, uint64_t length);
  Status Delete(std::string_view bucket, std::string_view key);
  // Deletes an empty bucket and its multipart uploads in progress.
  Status DeleteBucket(std::string_view bucket);

  // A copy sharing the source's content: no bytes move (a source without a
  // content id is copied byte by byte). `replacement` (S3's metadata
  // directive REPLACE) gives the copy its own content type and metadata.
  Result<ObjectMeta> Copy(std::string_view src_bucket, std::string_view src_key,
                          std::string_view dst_bucket, std::string_view dst_key,
                          const PutOptions* replacement = nullptr);

  // Multipart uploads (see IndexStore): parts are written with BeginPut()
  // and ObjectWriter::FinishPart().
  Result<std::string> CreateUpload(std::string_view bucket, std::string_view key,
                                   std::string_view owner, const PutOptions& options = {});
  Result<ObjectMeta> CompleteUpload(std::string_view upload_id,
                                    const std::vector<std::pair<uint32_t, std::string>>& parts,
                                    uint64_t min_part_bytes = kMinPartBytes);
  Status AbortUpload(std::string_view upload_id);

  // SHA-256, lazily (IndexStore's "Lazy SHA-256"): a PUT computes only MD5
  // while its bytes stream in; the SHA-256 that content de-duplication
  // needs is computed from the chunks when stored content has the same MD5
  // and size (a duplicate, an instant upload's claim, or a collision), or
  // ahead of that by HashContents(), which a program runs in the
  // background when it has nothing better to do. Hashes up to about
  // `max_bytes` of unhashed content; returns the contents hashed.
  Result<size_t> HashContents(uint64_t max_bytes);

  // Background work, run by the program every few seconds (Lifecycle's
  // Every): compacts every disk's mostly-deleted volumes. Reads and writes
  // go on meanwhile. Returns the volumes rewritten.
  Result<size_t> Maintain();

  ObjectStoreStats Stats() const;

 private:
  friend class ObjectWriter;
  struct Impl;
  explicit ObjectStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud::object
