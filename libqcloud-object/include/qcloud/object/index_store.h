#pragma once

// qcloud::object::IndexStore — COS's file index and user index in one LMDB
// environment (bench/README.md says why LMDB): which buckets each user owns,
// and for each object its size, ETag, content type, user metadata, time and
// the list of chunks that hold its bytes.
//
//   auto index = IndexStore::Open({.dir = "/data/index"}).value();
//   QCLOUD_RETURN_IF_ERROR(index->CreateBucket("alice", "photos"));
//   ObjectMeta meta{.size = 5, .etag = "...", .chunks = {{.store = 0, .chunk = id, .length = 5}}};
//   WriteOutcome out;
//   QCLOUD_RETURN_IF_ERROR(index->PutObject("photos", "2014/a.jpg", meta, &out));
//   for (const ChunkRef& c : out.free_chunks) ...  // no longer referenced: delete from CHX
//   ListResult page = index->List("photos", {.prefix = "2014/", .delimiter = "/"}).value();
//
// Atomicity: every call is one LMDB write transaction: a PutObject that
// returns ok is visible whole, and a crash (kill -9 at any instant) leaves
// every object either as it was or as it became, never in between.
// Durability: with `sync` (kDurable) a call returns after its transaction
// reached the disk (fdatasync); concurrent writers share one transaction and
// one fdatasync (group commit). Without it (kProcessCrash, the default) a
// returned call survives kill -9 of the process (it is in the kernel's page
// cache) but not a power cut.
//
// De-duplication: an object whose meta names its content (MD5 + SHA-256 +
// size, so that an MD5 collision can never merge two contents) shares the
// chunks of every other object with that content, across buckets and
// users; the content's reference count lives in the same transaction as
// the objects. A PUT whose content is already stored keeps the stored
// chunks and hands the ones it wrote back as free_chunks; one that brings
// no chunks at all is an "instant upload", refused with kNotFound when the
// content is unknown. Chunks are handed back for deletion only when the
// transaction that dropped their last reference has committed, so a crash
// can leave an unreferenced chunk (collected at the next start by the
// object store) but never lose a referenced one.
//
// Listing follows S3's ListObjectsV2: keys in byte order, `prefix`,
// `delimiter` rolling keys up into common prefixes, `max_keys` counting both,
// and a continuation point. Its cost is proportional to the page returned,
// not to the bucket: a common prefix is skipped with one seek.
//
// Thread safety: every method may be called from any thread; reads never
// wait for writes.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"
#include "qcloud/object/chx_store.h"

namespace qcloud::object {

// Where part of an object's bytes live: chunk `chunk` of CHX store number
// `store` (the object store's list of disks), `length` bytes.
struct ChunkRef {
  uint32_t store = 0;
  ChunkId chunk;
  uint64_t length = 0;
  friend bool operator==(const ChunkRef&, const ChunkRef&) = default;
};

struct ObjectMeta {
  uint64_t size = 0;
  std::string etag;          // S3's ETag without quotes: hex MD5, or "<hex>-<parts>"
  std::string content_type;  // as given on PUT; "" = not given
  int64_t mtime_ms = 0;      // last modified, UNIX milliseconds
  std::vector<std::pair<std::string, std::string>> user_metadata;  // x-amz-meta-<name>: value
  std::vector<ChunkRef> chunks;  // in order; their lengths add up to `size`
  // ContentId::Encode() of the bytes, for de-duplication; "" = not shared
  // (its chunks belong to this object alone).
  std::string content;
  friend bool operator==(const ObjectMeta&, const ObjectMeta&) = default;
};

// What identifies content for de-duplication.
struct QCLOUD_EXPORT ContentId {
  static constexpr size_t kEncodedSize = 16 + 32 + 8;
  uint8_t md5[16] = {};
  uint8_t sha256[32] = {};
  uint64_t size = 0;
  // 56 bytes: md5, sha256, size big-endian.
  std::string Encode() const;
};

// What a write did besides storing the object.
struct WriteOutcome {
  std::optional<ObjectMeta> previous;  // the object it replaced or removed
  std::vector<ChunkRef> free_chunks;   // referenced by nothing any more: delete them
  bool deduplicated = false;           // the content was already stored
};

struct BucketInfo {
  std::string name;
  std::string owner;
  int64_t created_ms = 0;
};

struct ListOptions {
  std::string prefix;       // only keys starting with it
  std::string delimiter;    // "" = none; else keys are rolled up at its first occurrence after the prefix
  std::string start_after;  // only keys (and common prefixes) after this (continuation point)
  size_t max_keys = 1000;   // objects + common prefixes per page, 1..1000 (S3's cap)
};

struct ListEntry {
  std::string key;
  uint64_t size = 0;
  std::string etag;
  int64_t mtime_ms = 0;
};

struct ListResult {
  std::vector<ListEntry> objects;
  std::vector<std::string> common_prefixes;
  bool truncated = false;
  // When truncated: pass it as start_after to get the next page.
  std::string next_start_after;
};

enum class Durability {
  kProcessCrash,  // returned writes survive kill -9 of the process (default)
  kDurable,       // and a power cut: fdatasync, group-committed
};

struct IndexOptions {
  std::string dir;                             // the LMDB environment; created if missing
  Durability durability = Durability::kProcessCrash;  // see Durability
  uint64_t map_bytes = uint64_t{64} << 30;     // LMDB's map (virtual address space, not RAM); 64 GiB
  Clock* clock = nullptr;  // buckets' creation times; not owned, outlives the store; null = real
};

// A wall-clock reading as UNIX milliseconds (ObjectMeta::mtime_ms and the like).
inline int64_t UnixMs(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(clock.WallNow().time_since_epoch()).count();
}

// Limits S3 sets, enforced here so that no caller can store more.
inline constexpr size_t kMaxKeyBytes = 1024;
inline constexpr size_t kMaxBucketBytes = 63;

class QCLOUD_EXPORT IndexStore {
 public:
  // Errors: kInvalidArgument (options), kIoError/kCorruption from LMDB.
  static Result<std::unique_ptr<IndexStore>> Open(const IndexOptions& options);
  ~IndexStore();
  IndexStore(const IndexStore&) = delete;
  IndexStore& operator=(const IndexStore&) = delete;

  // Buckets: the user index. Names follow S3's rules (3-63 of a-z 0-9 . -,
  // starting and ending with a letter or digit). Errors: kInvalidArgument
  // (name), kAlreadyExists, kNotFound, kAborted (DeleteBucket of a bucket
  // that still holds objects: S3's BucketNotEmpty).
  Status CreateBucket(std::string_view owner, std::string_view bucket);
  Status DeleteBucket(std::string_view bucket);
  Result<BucketInfo> GetBucket(std::string_view bucket) const;
  // The owner's buckets in name order.
  Result<std::vector<BucketInfo>> ListBuckets(std::string_view owner) const;

  // Objects: the file index. Errors: kNotFound (no such bucket or key),
  // kInvalidArgument (key empty or over 1024 bytes).
  Result<ObjectMeta> GetObject(std::string_view bucket, std::string_view key) const;
  // Creates or replaces. With meta.content set, the stored object shares
  // the content's chunks (see De-duplication); with no chunks and unknown
  // content: kNotFound. `outcome` (optional) says what else happened.
  Status PutObject(std::string_view bucket, std::string_view key, const ObjectMeta& meta,
                   WriteOutcome* outcome = nullptr);
  // Imports many objects in one transaction, all or none (migrations,
  // restores, tests); `free_chunks` receives every chunk they released.
  Status PutObjects(std::string_view bucket,
                    const std::vector<std::pair<std::string, ObjectMeta>>& objects,
                    std::vector<ChunkRef>* free_chunks = nullptr);
  // kNotFound when absent.
  Status DeleteObject(std::string_view bucket, std::string_view key,
                      WriteOutcome* outcome = nullptr);
  // The chunks of stored content: what an instant upload would share.
  // kNotFound when unknown.
  Result<std::vector<ChunkRef>> FindContent(const ContentId& content) const;
  // How many objects share the content (0 when unknown).
  Result<uint64_t> ContentReferences(const ContentId& content) const;
  // Calls fn for every chunk the index references (each once per content
  // or unshared object), over one snapshot: the "mark" of a garbage
  // collection of chunk stores.
  Status VisitChunks(const std::function<void(const ChunkRef&)>& fn) const;
  Result<ListResult> List(std::string_view bucket, const ListOptions& options) const;

  struct Impl;

 private:
  explicit IndexStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The stored form of ObjectMeta (versioned, bounds-checked), exposed for the
// fuzzer and tests. Decode errors: kCorruption.
QCLOUD_EXPORT std::string EncodeObjectMeta(const ObjectMeta& meta);
QCLOUD_EXPORT Result<ObjectMeta> DecodeObjectMeta(std::string_view bytes);

}  // namespace qcloud::object
