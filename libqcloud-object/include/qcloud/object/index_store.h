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
// De-duplication: content is identified by MD5, size and SHA-256 (so that
// an MD5 collision can never merge two contents). An object put with a
// ContentId shares the chunks of every other object with that content,
// across buckets and users; the content's reference count lives in the
// same transaction as the objects. A PUT whose content is already stored
// keeps the stored chunks and hands the ones it wrote back as free_chunks;
// one that brings no chunks at all is an "instant upload", refused with
// kNotFound when the content is unknown. Chunks are handed back for
// deletion only when the transaction that dropped their last reference has
// committed, so a crash can leave an unreferenced chunk (collected at the
// next start by the object store) but never lose a referenced one.
//
// Lazy SHA-256: a content may be stored with its MD5 and size only
// (ContentId::has_sha256 false): SHA-256 is needed only to tell apart
// contents with the same MD5 and size, so the writer of a large object need
// not compute it while the bytes stream in. When a write meets stored
// content with its MD5 and size and either side's SHA-256 is missing, it
// fails with object::Errc::kContentUnhashed and changes nothing; the caller
// (the object store) hashes what is missing from the chunks
// (SetContentSha256, UnhashedContents) and retries. Contents are keyed by
// MD5, size and an ordinal, so one learns its SHA-256 without its objects
// changing.
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
#include "qcloud/core/hash.h"
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
  // The stored content the object shares (kContentKeyBytes: MD5, size,
  // ordinal), assigned by PutObject with a ContentId; "" = not shared (its
  // chunks belong to this object alone).
  std::string content;
  friend bool operator==(const ObjectMeta&, const ObjectMeta&) = default;
};

// What identifies content for de-duplication.
struct ContentId {
  uint8_t md5[16] = {};
  uint8_t sha256[32] = {};
  uint64_t size = 0;
  bool has_sha256 = true;  // false: sha256 not computed (see "Lazy SHA-256")
};

// ObjectMeta::content: MD5, size (big-endian), ordinal (big-endian).
inline constexpr size_t kContentKeyBytes = 16 + 8 + 4;

// A stored content.
struct StoredContent {
  std::string key;  // what ObjectMeta::content of its objects holds
  uint64_t size = 0;
  uint64_t references = 0;
  std::vector<ChunkRef> chunks;
  std::optional<Sha256Digest> sha256;  // nullopt: not computed yet
};

// What a write did besides storing the object.
struct WriteOutcome {
  std::optional<ObjectMeta> previous;  // the object it replaced or removed
  std::vector<ChunkRef> free_chunks;   // referenced by nothing any more: delete them
  bool deduplicated = false;           // the content was already stored
  // With a ContentId: the content the object names now, and its chunks
  // (the stored ones when deduplicated), as GetObject would report them.
  std::string content;
  std::vector<ChunkRef> content_chunks;
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

// A multipart upload in progress (S3's CreateMultipartUpload .. Complete).
struct UploadInfo {
  std::string upload_id;  // assigned by CreateUpload: 32 hex digits
  std::string bucket;
  std::string key;
  std::string owner;
  int64_t initiated_ms = 0;
  std::string content_type;  // what the completed object will carry
  std::vector<std::pair<std::string, std::string>> user_metadata;
};

// One uploaded part.
struct PartInfo {
  uint32_t number = 0;   // 1..10000
  uint64_t size = 0;
  std::string etag;      // hex MD5 of the part's bytes
  int64_t mtime_ms = 0;
  std::vector<ChunkRef> chunks;  // their lengths add up to `size`
};

struct ListPartsResult {
  std::vector<PartInfo> parts;  // in part-number order
  bool truncated = false;
  uint32_t next_marker = 0;     // when truncated: pass as `after`
};

struct ListUploadsOptions {
  std::string prefix;            // only uploads of keys starting with it
  std::string key_marker;        // only uploads after (key_marker, upload_id_marker)
  std::string upload_id_marker;  // with key_marker; "" = every upload of key_marker is skipped
  size_t max_uploads = 1000;     // 1..1000
};

struct ListUploadsResult {
  std::vector<UploadInfo> uploads;  // by key, then initiation time
  bool truncated = false;
  std::string next_key_marker, next_upload_id_marker;
};

// Limits S3 sets on multipart uploads.
inline constexpr uint32_t kMaxPartNumber = 10000;
inline constexpr uint64_t kMinPartBytes = uint64_t{5} << 20;  // every part but the last

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
  // that still holds objects: S3's BucketNotEmpty). DeleteBucket aborts the
  // bucket's multipart uploads in progress; their chunks go to free_chunks.
  Status CreateBucket(std::string_view owner, std::string_view bucket);
  Status DeleteBucket(std::string_view bucket, std::vector<ChunkRef>* free_chunks = nullptr);
  Result<BucketInfo> GetBucket(std::string_view bucket) const;
  // The owner's buckets in name order.
  Result<std::vector<BucketInfo>> ListBuckets(std::string_view owner) const;
  // A bucket's settings (access policy, referer allow-list, ...) by name:
  // small values (at most 64 KiB) kept with the bucket and deleted with it.
  // An empty value deletes the setting. Errors: kNotFound (bucket),
  // kInvalidArgument (name 1..64 bytes, value over 64 KiB).
  Status SetBucketAttribute(std::string_view bucket, std::string_view name, std::string_view value);
  // nullopt when not set.
  Result<std::optional<std::string>> GetBucketAttribute(std::string_view bucket,
                                                        std::string_view name) const;

  // Objects: the file index. Errors: kNotFound (no such bucket or key),
  // kInvalidArgument (key empty or over 1024 bytes).
  Result<ObjectMeta> GetObject(std::string_view bucket, std::string_view key) const;
  // Creates or replaces. meta.content is "" (the chunks are the object's
  // own) or the key of a stored content (one more reference to it; else
  // kNotFound). `outcome` (optional) says what else happened.
  Status PutObject(std::string_view bucket, std::string_view key, const ObjectMeta& meta,
                   WriteOutcome* outcome = nullptr);
  // Creates or replaces an object whose bytes are `content` (see
  // De-duplication): meta.chunks hold them, or are empty for an instant
  // upload (kNotFound when the content is not stored). meta.content is
  // ignored; the stored object names the content. Errors besides
  // PutObject's: object::Errc::kContentUnhashed (see Lazy SHA-256).
  Status PutObject(std::string_view bucket, std::string_view key, const ObjectMeta& meta,
                   const ContentId& content, WriteOutcome* outcome = nullptr);
  // Imports many objects in one transaction, all or none (migrations,
  // restores, tests); `free_chunks` receives every chunk they released.
  Status PutObjects(std::string_view bucket,
                    const std::vector<std::pair<std::string, ObjectMeta>>& objects,
                    std::vector<ChunkRef>* free_chunks = nullptr);
  // kNotFound when absent.
  Status DeleteObject(std::string_view bucket, std::string_view key,
                      WriteOutcome* outcome = nullptr);
  // The chunks of stored content: what an instant upload would share.
  // kNotFound when unknown; kContentUnhashed when undecided (a stored
  // content with its MD5 and size lacks its SHA-256, or `content` does).
  Result<std::vector<ChunkRef>> FindContent(const ContentId& content) const;
  // How many objects share the content (0 when unknown); errors as FindContent.
  Result<uint64_t> ContentReferences(const ContentId& content) const;
  // Stored contents with this MD5 and size (usually none or one).
  Result<std::vector<StoredContent>> ContentsWith(const uint8_t (&md5)[16], uint64_t size) const;
  // Up to `max` stored contents whose SHA-256 is not known yet, in key
  // order after the content key `after` ("" = from the first): what a
  // background hasher works through.
  Result<std::vector<StoredContent>> UnhashedContents(size_t max, std::string_view after = {}) const;
  // Records a content's SHA-256, computed from its chunks. Nothing happens
  // when the content is gone or its SHA-256 is known already.
  Status SetContentSha256(std::string_view content_key, const Sha256Digest& sha256);
  // Calls fn for every chunk the index references (each once per content
  // or unshared object), over one snapshot: the "mark" of a garbage
  // collection of chunk stores.
  Status VisitChunks(const std::function<void(const ChunkRef&)>& fn) const;
  Result<ListResult> List(std::string_view bucket, const ListOptions& options) const;

  // Copies an object's name, in one transaction: the copy shares the
  // source's content (one more reference, no bytes copied). With
  // `replacement`, the copy takes its content type and user metadata
  // instead of the source's. Errors: kNotFound (either bucket, the source
  // key), kNotSupported (a source without a content id: its chunks are
  // not shared; copy the bytes instead).
  Result<ObjectMeta> CopyObject(std::string_view src_bucket, std::string_view src_key,
                                std::string_view dst_bucket, std::string_view dst_key,
                                const ObjectMeta* replacement = nullptr,
                                WriteOutcome* outcome = nullptr);

  // Multipart uploads. Parts are held under the upload until it completes
  // (their chunks become the object's, in one transaction; parts left out
  // are freed) or is aborted (every part freed). Uploads are listed per
  // bucket at a cost proportional to the bucket's uploads in progress.
  // Errors: kNotFound (bucket), object::Errc::kNoSuchUpload (unknown or
  // finished upload), kInvalidArgument (part number outside 1..10000).
  Result<std::string> CreateUpload(const UploadInfo& info);
  Result<UploadInfo> GetUpload(std::string_view upload_id) const;
  // Adds or replaces part `part.number`; the replaced part's chunks go to
  // free_chunks.
  Status PutPart(std::string_view upload_id, const PartInfo& part,
                 std::vector<ChunkRef>* free_chunks = nullptr);
  Result<ListPartsResult> ListParts(std::string_view upload_id, uint32_t after,
                                    size_t max_parts) const;
  Result<ListUploadsResult> ListUploads(std::string_view bucket,
                                        const ListUploadsOptions& options) const;
  // Makes the object from `parts` (number, ETag with or without quotes), in
  // ascending order, each but the last at least `min_part_bytes`. The
  // object's ETag is S3's: hex MD5 of the parts' MD5s, "-", the part count.
  // Errors besides the above: object::Errc::kInvalidPartOrder,
  // kInvalidPart (missing part or ETag mismatch), kEntityTooSmall.
  Result<ObjectMeta> CompleteUpload(std::string_view upload_id,
                                    const std::vector<std::pair<uint32_t, std::string>>& parts,
                                    uint64_t min_part_bytes = kMinPartBytes,
                                    WriteOutcome* outcome = nullptr);
  Status AbortUpload(std::string_view upload_id, std::vector<ChunkRef>* free_chunks = nullptr);

  struct Impl;

 private:
  explicit IndexStore(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The stored form of ObjectMeta (versioned, bounds-checked), exposed for the
// fuzzer and tests. Decode errors: kCorruption.
QCLOUD_EXPORT std::string EncodeObjectMeta(const ObjectMeta& meta);
QCLOUD_EXPORT Result<ObjectMeta> DecodeObjectMeta(std::string_view bytes);
// The stored form of a content record (references, SHA-256 if known,
// chunks; the key and size are not in it), likewise.
QCLOUD_EXPORT std::string EncodeContentRecord(const StoredContent& content);
QCLOUD_EXPORT Result<StoredContent> DecodeContentRecord(std::string_view bytes);

}  // namespace qcloud::object
