#pragma once

// qcloud::object::IndexStore — COS's file index and user index in one LMDB
// environment (bench/README.md says why LMDB): which buckets each user owns,
// and for each object its size, ETag, content type, user metadata, time and
// the list of chunks that hold its bytes.
//
//   auto index = IndexStore::Open({.dir = "/data/index"}).value();
//   QCLOUD_RETURN_IF_ERROR(index->CreateBucket("alice", "photos"));
//   ObjectMeta meta{.size = 5, .etag = "...", .chunks = {{.store = 0, .chunk = id, .length = 5}}};
//   std::optional<ObjectMeta> replaced;
//   QCLOUD_RETURN_IF_ERROR(index->PutObject("photos", "2014/a.jpg", meta, &replaced));
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
// Listing follows S3's ListObjectsV2: keys in byte order, `prefix`,
// `delimiter` rolling keys up into common prefixes, `max_keys` counting both,
// and a continuation point. Its cost is proportional to the page returned,
// not to the bucket: a common prefix is skipped with one seek.
//
// Thread safety: every method may be called from any thread; reads never
// wait for writes.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
  friend bool operator==(const ObjectMeta&, const ObjectMeta&) = default;
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
};

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
  // Creates or replaces; `replaced` (optional) receives the previous meta,
  // whose chunks the caller may now free.
  Status PutObject(std::string_view bucket, std::string_view key, const ObjectMeta& meta,
                   std::optional<ObjectMeta>* replaced = nullptr);
  // Imports many objects in one transaction, all or none (migrations,
  // restores, tests); what they replace is not returned, so use it only
  // where no chunks need freeing.
  Status PutObjects(std::string_view bucket,
                    const std::vector<std::pair<std::string, ObjectMeta>>& objects);
  // kNotFound when absent; `removed` (optional) receives the meta.
  Status DeleteObject(std::string_view bucket, std::string_view key,
                      std::optional<ObjectMeta>* removed = nullptr);
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
