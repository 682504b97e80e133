// IndexStore over LMDB. Three named databases in one environment:
//   buckets  bucket name                      -> BucketRecord (owner, created)
//   owners   owner '\0' bucket                -> "" (a user's buckets, in order)
//   objects  len(bucket) bucket key           -> ObjectMeta (EncodeObjectMeta)
//   contents md5, size (BE64), ordinal (BE32)  -> references, SHA-256 if known, chunk list
//   unhashed content key                       -> "" (contents whose SHA-256 is not known)
//   uploads  upload id                         -> UploadInfo (multipart in progress)
//   parts    upload id, part number (BE32)     -> PartInfo
//   bucket_uploads len(bucket) bucket upload id -> "" (a bucket's uploads)
//   bucket_attrs len(bucket) bucket name      -> value (a bucket's settings)
// The objects key starts with the bucket name's length (one byte, names are
// at most 63), so one bucket's keys are contiguous and in S3's byte order.
//
// Writes go through Write(): concurrent callers are gathered into one LMDB
// write transaction by whoever finds no commit running (the leader); each
// caller's changes run in a nested transaction, so one caller's failure
// (say, "bucket not empty") undoes only its own changes. One commit, one
// fdatasync (with Durability::kDurable) for the whole group.

#include "qcloud/object/index_store.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <algorithm>
#include <functional>
#include <mutex>
#include <random>

#include <fmt/format.h>

#include "qcloud/core/bytes.h"
#include "qcloud/core/hash.h"
#include "qcloud/object/errc.h"

namespace qcloud::object {

namespace {

constexpr uint8_t kMetaVersion = 1;
constexpr size_t kMaxEtag = 256;
constexpr size_t kMaxContentType = 1024;
constexpr size_t kMaxUserMetaEntries = 1024;
constexpr size_t kMaxUserMetaBytes = 8 * 1024;  // S3: 2 KiB of user metadata in total
constexpr size_t kMaxChunks = size_t{1} << 24;
constexpr size_t kMaxOwnerBytes = 256;
constexpr size_t kMaxListKeys = 1000;
constexpr unsigned kMaxDbs = 16;
constexpr size_t kMaxIdleReaders = 64;  // kept between reads, of kMaxReaders slots
constexpr unsigned kMaxReaders = 1024;

uint64_t ZigZag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }


Status LmdbError(int rc, std::string_view what) {
  switch (rc) {
    case MDB_MAP_FULL:
      return Status(qcloud::Errc::kResourceExhausted, fmt::format("{}: index map full", what));
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return Corruption(fmt::format("{}: {}", what, mdb_strerror(rc)));
    default:
      if (rc > 0) return Status::FromErrno(rc, what);
      return IoError(fmt::format("{}: {}", what, mdb_strerror(rc)));
  }
}

MDB_val Val(std::string_view s) { return {s.size(), const_cast<char*>(s.data())}; }
std::string_view View(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

bool ValidBucket(std::string_view b) {
  if (b.size() < 3 || b.size() > kMaxBucketBytes) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(b.front()) || !alnum(b.back())) return false;
  for (char c : b) {
    if (!alnum(c) && c != '-' && c != '.') return false;
  }
  return b.find("..") == std::string_view::npos;
}

Status CheckBucketName(std::string_view bucket) {
  if (bucket.empty() || bucket.size() > kMaxBucketBytes) {
    return NotFound(fmt::format("no bucket '{}'", bucket));
  }
  return Status::Ok();
}

Status CheckKey(std::string_view key) {
  if (key.empty() || key.size() > kMaxKeyBytes) {
    return InvalidArgument(fmt::format("object key of {} bytes: must be 1..{}", key.size(), kMaxKeyBytes));
  }
  return Status::Ok();
}

std::string ObjectKey(std::string_view bucket, std::string_view key) {
  std::string k;
  k.reserve(1 + bucket.size() + key.size());
  k.push_back(static_cast<char>(bucket.size()));
  k.append(bucket);
  k.append(key);
  return k;
}

// The smallest string greater than every string starting with `s`; "" when
// there is none (s is all 0xff).
std::string Successor(std::string s) {
  while (!s.empty() && static_cast<unsigned char>(s.back()) == 0xff) s.pop_back();
  if (!s.empty()) s.back() = static_cast<char>(static_cast<unsigned char>(s.back()) + 1);
  return s;
}

// LMDB keys are at most 511 bytes (its compile-time MDB_MAXKEYSIZE); S3
// keys reach 1024. A composite key (length byte, bucket, key) of up to
// kDirectMax bytes is its own LMDB key. A longer one lives in a "bundle":
// the LMDB record under its first kBundleKey bytes, holding every such key's
// rest and record, sorted. Direct keys are shorter than bundle keys, so the
// two never collide, and LMDB's order of direct keys and bundles is the
// order of the full keys (a direct key that is a prefix of a bundle's keys
// is shorter, hence first).
constexpr size_t kDirectMax = 479;
constexpr size_t kBundleKey = 480;
constexpr size_t kMaxBundleEntries = 1 << 20;
constexpr size_t kMaxRecordBytes = 64 * 1024 * 1024;

using BundleEntries = std::vector<std::pair<std::string, std::string>>;  // (rest, record)

std::string EncodeBundle(const BundleEntries& entries) {
  Buffer out;
  ByteWriter w(out);
  w.PutU8(kMetaVersion);
  w.PutVarint64(entries.size());
  for (const auto& [rest, record] : entries) {
    w.PutLengthPrefixed(ByteView(rest));
    w.PutLengthPrefixed(ByteView(record));
  }
  return out.readable().ToString();
}

Result<BundleEntries> DecodeBundle(std::string_view bytes) {
  ByteReader r{ByteView(bytes)};
  auto version = r.ReadU8();
  auto n = r.ReadVarint64();
  if (!version || *version != kMetaVersion || !n || *n > kMaxBundleEntries || *n > r.remaining() / 2) {
    return Corruption("long-key bundle: damaged header");
  }
  BundleEntries entries;
  for (uint64_t i = 0; i < *n; ++i) {
    auto rest = r.ReadLengthPrefixed(kMaxKeyBytes + 1 + kMaxBucketBytes);
    auto record = r.ReadLengthPrefixed(kMaxRecordBytes);
    if (!rest || !record) return Corruption("long-key bundle: damaged entry");
    entries.emplace_back(rest->ToString(), record->ToString());
  }
  if (!r.empty()) return Corruption("long-key bundle: trailing bytes");
  return entries;
}

// Reads, writes and deletes one composite key, bundled or not.
Result<std::optional<std::string>> GetRecord(MDB_txn* txn, MDB_dbi dbi, std::string_view composite) {
  const bool direct = composite.size() <= kDirectMax;
  MDB_val k = Val(direct ? composite : composite.substr(0, kBundleKey)), v;
  const int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string>();
  if (rc != 0) return LmdbError(rc, "get object");
  if (direct) return std::optional<std::string>(std::string(View(v)));
  QCLOUD_ASSIGN_OR_RETURN(BundleEntries entries, DecodeBundle(View(v)));
  const std::string_view rest = composite.substr(kBundleKey);
  for (auto& [r, record] : entries) {
    if (r == rest) return std::optional<std::string>(std::move(record));
  }
  return std::optional<std::string>();
}

Status PutRecord(MDB_txn* txn, MDB_dbi dbi, std::string_view composite, std::string_view record) {
  if (composite.size() <= kDirectMax) {
    MDB_val k = Val(composite), v = Val(record);
    const int rc = mdb_put(txn, dbi, &k, &v, 0);
    return rc == 0 ? Status::Ok() : LmdbError(rc, "put object");
  }
  MDB_val k = Val(composite.substr(0, kBundleKey)), v;
  BundleEntries entries;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == 0) {
    QCLOUD_ASSIGN_OR_RETURN(entries, DecodeBundle(View(v)));
  } else if (rc != MDB_NOTFOUND) {
    return LmdbError(rc, "get bundle");
  }
  const std::string rest(composite.substr(kBundleKey));
  auto it = std::lower_bound(entries.begin(), entries.end(), rest,
                             [](const auto& e, const std::string& r) { return e.first < r; });
  if (it != entries.end() && it->first == rest) {
    it->second = std::string(record);
  } else {
    if (entries.size() >= kMaxBundleEntries) {
      return Status(qcloud::Errc::kResourceExhausted, "too many long keys share their first 480 bytes");
    }
    entries.insert(it, {rest, std::string(record)});
  }
  const std::string bundle = EncodeBundle(entries);
  MDB_val nv = Val(bundle);
  rc = mdb_put(txn, dbi, &k, &nv, 0);
  return rc == 0 ? Status::Ok() : LmdbError(rc, "put bundle");
}

Status DeleteRecord(MDB_txn* txn, MDB_dbi dbi, std::string_view composite) {
  if (composite.size() <= kDirectMax) {
    MDB_val k = Val(composite);
    const int rc = mdb_del(txn, dbi, &k, nullptr);
    return rc == 0 ? Status::Ok() : LmdbError(rc, "delete object");
  }
  MDB_val k = Val(composite.substr(0, kBundleKey)), v;
  int rc = mdb_get(txn, dbi, &k, &v);
  if (rc != 0) return LmdbError(rc, "get bundle");
  QCLOUD_ASSIGN_OR_RETURN(BundleEntries entries, DecodeBundle(View(v)));
  const std::string_view rest = composite.substr(kBundleKey);
  std::erase_if(entries, [&](const auto& e) { return e.first == rest; });
  if (entries.empty()) {
    rc = mdb_del(txn, dbi, &k, nullptr);
    return rc == 0 ? Status::Ok() : LmdbError(rc, "delete bundle");
  }
  const std::string bundle = EncodeBundle(entries);
  MDB_val nv = Val(bundle);
  rc = mdb_put(txn, dbi, &k, &nv, 0);
  return rc == 0 ? Status::Ok() : LmdbError(rc, "put bundle");
}

// Walks composite keys in order, direct ones and the entries of bundles.
class ObjectCursor {
 public:
  ObjectCursor(MDB_txn* txn, MDB_dbi dbi) { status_ = Rc(mdb_cursor_open(txn, dbi, &c_), "cursor"); }
  ~ObjectCursor() {
    if (c_ != nullptr) mdb_cursor_close(c_);
  }
  ObjectCursor(const ObjectCursor&) = delete;
  ObjectCursor& operator=(const ObjectCursor&) = delete;

  // To the first key >= target.
  void Seek(std::string_view target) {
    if (!status_.ok()) return;
    const std::string lk(target.size() <= kDirectMax ? target : target.substr(0, kBundleKey));
    MDB_val k = Val(lk), v;
    // LMDB refuses empty keys: seeking to "" is seeking to the first.
    Load(mdb_cursor_get(c_, &k, &v, lk.empty() ? MDB_FIRST : MDB_SET_RANGE), k, v);
    if (valid_ && bundle_ && target.size() > kDirectMax && View(k) == lk) {
      const std::string_view rest = target.substr(kBundleKey);
      while (pos_ < entries_.size() && entries_[pos_].first < rest) ++pos_;
      if (pos_ == entries_.size()) Next();
      else Compose();
    }
  }
  void Next() {
    if (!valid_) return;
    if (bundle_ && ++pos_ < entries_.size()) {
      Compose();
      return;
    }
    MDB_val k, v;
    Load(mdb_cursor_get(c_, &k, &v, MDB_NEXT), k, v);
  }
  bool valid() const { return valid_; }
  const Status& status() const { return status_; }
  std::string_view key() const { return bundle_ ? std::string_view(key_) : direct_key_; }
  std::string_view value() const {
    return bundle_ ? std::string_view(entries_[pos_].second) : direct_value_;
  }

 private:
  Status Rc(int rc, std::string_view what) { return rc == 0 ? Status::Ok() : LmdbError(rc, what); }
  void Load(int rc, const MDB_val& k, const MDB_val& v) {
    valid_ = false;
    if (rc == MDB_NOTFOUND) return;
    if (rc != 0) {
      status_ = LmdbError(rc, "cursor");
      return;
    }
    bundle_ = k.mv_size == kBundleKey;
    if (!bundle_) {
      direct_key_ = View(k);
      direct_value_ = View(v);
      valid_ = true;
      return;
    }
    auto entries = DecodeBundle(View(v));
    if (!entries.ok()) {
      status_ = entries.status();
      return;
    }
    entries_ = std::move(*entries);
    bundle_key_ = std::string(View(k));
    pos_ = 0;
    if (entries_.empty()) {  // never written so; skip
      MDB_val k2, v2;
      Load(mdb_cursor_get(c_, &k2, &v2, MDB_NEXT), k2, v2);
      return;
    }
    Compose();
  }
  void Compose() {
    key_ = bundle_key_ + entries_[pos_].first;
    valid_ = true;
  }

  MDB_cursor* c_ = nullptr;
  Status status_;
  bool valid_ = false;
  bool bundle_ = false;
  std::string_view direct_key_, direct_value_;  // valid while the txn lives
  BundleEntries entries_;
  std::string bundle_key_, key_;
  size_t pos_ = 0;
};

std::string EncodeBucket(const BucketInfo& b) {
  Buffer out;
  ByteWriter w(out);
  w.PutU8(kMetaVersion);
  w.PutLengthPrefixed(ByteView(b.owner));
  w.PutVarint64(ZigZag(b.created_ms));
  return out.readable().ToString();
}

Result<BucketInfo> DecodeBucket(std::string_view name, std::string_view bytes) {
  ByteReader r{ByteView(bytes)};
  BucketInfo b;
  b.name = std::string(name);
  auto v = r.ReadU8();
  auto owner = r.ReadLengthPrefixed(kMaxOwnerBytes);
  auto created = r.ReadVarint64();
  if (!v || *v != kMetaVersion || !owner || !created || !r.empty()) {
    return Corruption(fmt::format("bucket record of {} is damaged", name));
  }
  b.owner = owner->ToString();
  b.created_ms = UnZigZag(*created);
  return b;
}

// User metadata as stored in object and upload records: (name, value)
// pairs, each length-prefixed; the count is written and checked by the
// record's own codec.
void PutPairs(ByteWriter& w, const std::vector<std::pair<std::string, std::string>>& pairs) {
  w.PutVarint64(pairs.size());
  for (const auto& [name, value] : pairs) {
    w.PutLengthPrefixed(ByteView(name));
    w.PutLengthPrefixed(ByteView(value));
  }
}

bool ReadPairs(ByteReader& r, uint64_t n, std::vector<std::pair<std::string, std::string>>* out) {
  for (uint64_t i = 0; i < n; ++i) {
    auto name = r.ReadLengthPrefixed(kMaxUserMetaBytes);
    auto value = r.ReadLengthPrefixed(kMaxUserMetaBytes);
    if (!name || !value) return false;
    out->emplace_back(name->ToString(), value->ToString());
  }
  return true;
}

std::string EncodeUpload(const UploadInfo& u) {
  Buffer out;
  ByteWriter w(out);
  w.PutU8(kMetaVersion);
  w.PutLengthPrefixed(ByteView(u.bucket));
  w.PutLengthPrefixed(ByteView(u.key));
  w.PutLengthPrefixed(ByteView(u.owner));
  w.PutVarint64(ZigZag(u.initiated_ms));
  w.PutLengthPrefixed(ByteView(u.content_type));
  PutPairs(w, u.user_metadata);
  return out.readable().ToString();
}

Result<UploadInfo> DecodeUpload(std::string_view id, std::string_view bytes) {
  ByteReader r{ByteView(bytes)};
  UploadInfo u;
  u.upload_id = std::string(id);
  auto v = r.ReadU8();
  auto bucket = r.ReadLengthPrefixed(kMaxBucketBytes);
  auto key = r.ReadLengthPrefixed(kMaxKeyBytes);
  auto owner = r.ReadLengthPrefixed(kMaxOwnerBytes);
  auto initiated = r.ReadVarint64();
  auto type = r.ReadLengthPrefixed(kMaxContentType);
  auto nmeta = r.ReadVarint64();
  if (!v || *v != kMetaVersion || !bucket || !key || !owner || !initiated || !type || !nmeta ||
      *nmeta > kMaxUserMetaEntries) {
    return Corruption("upload record: damaged");
  }
  u.bucket = bucket->ToString();
  u.key = key->ToString();
  u.owner = owner->ToString();
  u.initiated_ms = UnZigZag(*initiated);
  u.content_type = type->ToString();
  if (!ReadPairs(r, *nmeta, &u.user_metadata)) return Corruption("upload record: damaged user metadata");
  if (!r.empty()) return Corruption("upload record: trailing bytes");
  return u;
}

// `prefix` followed by `v` big-endian (so keys sort by v within a prefix).
std::string WithBigEndian32(std::string_view prefix, uint32_t v) {
  std::string k(prefix);
  char be[4];
  EncodeBigEndian32(reinterpret_cast<std::byte*>(be), v);
  k.append(be, 4);
  return k;
}

std::string PartKey(std::string_view upload_id, uint32_t number) { return WithBigEndian32(upload_id, number); }

}  // namespace

namespace {

void PutChunks(ByteWriter& w, const std::vector<ChunkRef>& chunks) {
  w.PutVarint64(chunks.size());
  for (const ChunkRef& c : chunks) {
    w.PutVarint64(c.store);
    w.PutFixed64(c.chunk.value);
    w.PutVarint64(c.length);
  }
}

Status ReadChunks(ByteReader& r, std::vector<ChunkRef>* chunks, uint64_t* total) {
  auto n = r.ReadVarint64();
  // A chunk takes at least 10 bytes: a count beyond that is a lie.
  if (!n || *n > kMaxChunks || *n > r.remaining() / 10) return Corruption("damaged chunk count");
  chunks->reserve(static_cast<size_t>(*n));
  for (uint64_t i = 0; i < *n; ++i) {
    auto store = r.ReadVarint64();
    auto chunk = r.ReadFixed64();
    auto length = r.ReadVarint64();
    if (!store || *store > UINT32_MAX || !chunk || !length) return Corruption("damaged chunk");
    if (*length > UINT64_MAX - *total) return Corruption("chunk lengths overflow");
    *total += *length;
    chunks->push_back({static_cast<uint32_t>(*store), ChunkId{*chunk}, *length});
  }
  return Status::Ok();
}

// A content's record: how many objects share it, its SHA-256 once known,
// and its chunks. Version 2 (version 1 keyed contents by their SHA-256).
constexpr uint8_t kContentVersion = 2;
constexpr uint8_t kContentHasSha = 1;

struct ContentRecord {
  uint64_t references = 0;
  std::optional<Sha256Digest> sha256;
  std::vector<ChunkRef> chunks;
};

std::string EncodeContent(const ContentRecord& c) {
  Buffer out;
  ByteWriter w(out);
  w.PutU8(kContentVersion);
  w.PutVarint64(c.references);
  w.PutU8(c.sha256 ? kContentHasSha : 0);
  if (c.sha256) w.PutBytes(AsBytes(*c.sha256));
  PutChunks(w, c.chunks);
  return out.readable().ToString();
}

Result<ContentRecord> DecodeContent(std::string_view bytes) {
  ByteReader r{ByteView(bytes)};
  ContentRecord c;
  auto version = r.ReadU8();
  auto refs = r.ReadVarint64();
  auto flags = r.ReadU8();
  if (!version || *version != kContentVersion || !refs || !flags || (*flags & ~kContentHasSha) != 0) {
    return Corruption("content record: damaged");
  }
  c.references = *refs;
  if ((*flags & kContentHasSha) != 0) {
    auto sha = r.ReadBytes(32);
    if (!sha) return Corruption("content record: damaged SHA-256");
    Sha256Digest d;
    std::memcpy(d.data(), sha->data(), d.size());
    c.sha256 = d;
  }
  uint64_t total = 0;
  QCLOUD_RETURN_IF_ERROR(ReadChunks(r, &c.chunks, &total));
  if (!r.empty()) return Corruption("content record: trailing bytes");
  return c;
}

std::string ContentPrefix(const uint8_t (&md5)[16], uint64_t size) {
  std::string k(kContentKeyBytes - 4, '\0');
  std::memcpy(k.data(), md5, 16);
  EncodeBigEndian64(reinterpret_cast<std::byte*>(k.data() + 16), size);
  return k;
}

std::string ContentKey(std::string_view prefix, uint32_t ordinal) { return WithBigEndian32(prefix, ordinal); }

bool SameSha(const ContentId& id, const Sha256Digest& d) {
  return id.has_sha256 && std::memcmp(id.sha256, d.data(), d.size()) == 0;
}

std::string EncodePart(const PartInfo& p) {
  Buffer out;
  ByteWriter w(out);
  w.PutU8(kMetaVersion);
  w.PutVarint64(p.size);
  w.PutLengthPrefixed(ByteView(p.etag));
  w.PutVarint64(ZigZag(p.mtime_ms));
  PutChunks(w, p.chunks);
  return out.readable().ToString();
}

Result<PartInfo> DecodePart(uint32_t number, std::string_view bytes) {
  ByteReader r{ByteView(bytes)};
  PartInfo p;
  p.number = number;
  auto v = r.ReadU8();
  auto size = r.ReadVarint64();
  auto etag = r.ReadLengthPrefixed(kMaxEtag);
  auto mtime = r.ReadVarint64();
  if (!v || *v != kMetaVersion || !size || !etag || !mtime) return Corruption("part record: damaged");
  p.size = *size;
  p.etag = etag->ToString();
  p.mtime_ms = UnZigZag(*mtime);
  uint64_t total = 0;
  QCLOUD_RETURN_IF_ERROR(ReadChunks(r, &p.chunks, &total));
  if (!r.empty() || total != p.size) return Corruption("part record: damaged chunk list");
  return p;
}

}  // namespace

std::string EncodeContentRecord(const StoredContent& content) {
  return EncodeContent({content.references, content.sha256, content.chunks});
}

Result<StoredContent> DecodeContentRecord(std::string_view bytes) {
  QCLOUD_ASSIGN_OR_RETURN(ContentRecord c, DecodeContent(bytes));
  StoredContent out;
  out.references = c.references;
  out.sha256 = c.sha256;
  out.chunks = std::move(c.chunks);
  for (const ChunkRef& r : out.chunks) out.size += r.length;
  return out;
}

std::string EncodeObjectMeta(const ObjectMeta& m) {
  Buffer out;
  ByteWriter w(out);
  w.PutU8(kMetaVersion);
  w.PutVarint64(m.size);
  w.PutVarint64(ZigZag(m.mtime_ms));
  w.PutLengthPrefixed(ByteView(m.etag));
  w.PutLengthPrefixed(ByteView(m.content_type));
  PutPairs(w, m.user_metadata);
  PutChunks(w, m.chunks);
  w.PutLengthPrefixed(ByteView(m.content));
  return out.readable().ToString();
}

Result<ObjectMeta> DecodeObjectMeta(std::string_view bytes) {
  ByteReader r{ByteView(bytes)};
  ObjectMeta m;
  auto bad = [](std::string_view what) {
    return Corruption(fmt::format("object record: {}", what));
  };
  auto version = r.ReadU8();
  if (!version || *version != kMetaVersion) return bad("unknown version");
  auto size = r.ReadVarint64();
  auto mtime = r.ReadVarint64();
  auto etag = r.ReadLengthPrefixed(kMaxEtag);
  auto type = r.ReadLengthPrefixed(kMaxContentType);
  auto nmeta = r.ReadVarint64();
  if (!size || !mtime || !etag || !type || !nmeta || *nmeta > kMaxUserMetaEntries) {
    return bad("damaged header");
  }
  m.size = *size;
  m.mtime_ms = UnZigZag(*mtime);
  m.etag = etag->ToString();
  m.content_type = type->ToString();
  if (!ReadPairs(r, *nmeta, &m.user_metadata)) return bad("damaged user metadata");
  uint64_t total = 0;
  QCLOUD_RETURN_IF_ERROR(ReadChunks(r, &m.chunks, &total));
  auto content = r.ReadLengthPrefixed(kContentKeyBytes);
  if (!content || (!content->empty() && content->size() != kContentKeyBytes)) {
    return bad("damaged content id");
  }
  m.content = content->ToString();
  if (!r.empty()) return bad("trailing bytes");
  if (total != m.size) return bad("chunk lengths do not add up to the size");
  return m;
}

struct IndexStore::Impl {
  IndexOptions options;
  Clock* clock = nullptr;
  MDB_env* env = nullptr;
  MDB_dbi buckets{}, owners{}, objects{}, contents{}, unhashed{};
  MDB_dbi uploads{}, parts{}, bucket_uploads{}, bucket_attrs{};

  // Writes (or with nullopt deletes) the object under composite key `k` in
  // `txn`, keeping the contents' reference counts; fills `out`.
  // With `claim`, the object's bytes are that content (see Claim; `unique`:
  // a content of its own, never matched against stored ones).
  Status ApplyObject(MDB_txn* txn, std::string_view k, std::optional<ObjectMeta> meta,
                     WriteOutcome& out, const ContentId* claim = nullptr, bool unique = false);
  // The stored contents with this MD5 and size, by ordinal.
  Result<std::vector<StoredContent>> ContentsWith(MDB_txn* txn, const uint8_t (&md5)[16],
                                                  uint64_t size) const;
  // Decides which stored content `claim` is: the stored content, nullopt
  // when none is, or kContentUnhashed when that cannot be told.
  Result<std::optional<StoredContent>> Match(MDB_txn* txn, const ContentId& claim) const;
  // Gives `meta` the content `claim` names and takes a reference to it: a
  // stored content (whose chunks replace meta's, which go to free_chunks)
  // or a new one made of meta's chunks (always, when `unique`).
  Status Claim(MDB_txn* txn, const ContentId& claim, ObjectMeta& meta, WriteOutcome& out,
               bool unique = false);
  // PutObject, with or without a content claim.
  Status Put(std::string_view bucket, std::string_view key, const ObjectMeta& meta,
             const ContentId* claim, WriteOutcome* outcome);
  // Drops one reference to what `meta` points at; collects freed chunks.
  Status Release(MDB_txn* txn, const ObjectMeta& meta, std::vector<ChunkRef>& free_chunks);
  // Ok when the bucket exists; kNotFound otherwise.
  Status RequireBucket(MDB_txn* txn, std::string_view bucket) const {
    MDB_val k = Val(bucket), v;
    const int rc = mdb_get(txn, buckets, &k, &v);
    if (rc == MDB_NOTFOUND) return NotFound(fmt::format("no bucket {}", bucket));
    return rc == 0 ? Status::Ok() : LmdbError(rc, "get bucket");
  }
  // The upload's record, or kNoSuchUpload.
  Result<UploadInfo> LoadUpload(MDB_txn* txn, std::string_view upload_id) const;
  // Visits the upload's parts in number order; fn returns false to stop.
  Status ForEachPart(MDB_txn* txn, std::string_view upload_id, uint32_t after,
                     const std::function<Result<bool>(PartInfo&&)>& fn) const;
  // Deletes the upload and its parts; the chunks of parts not in `kept` go
  // to free_chunks.
  Status DropUpload(MDB_txn* txn, const UploadInfo& upload, const std::vector<uint32_t>& kept,
                    std::vector<ChunkRef>& free_chunks);

  // Group commit.
  struct Request {
    std::function<Status(MDB_txn*)> fn;
    Status result;
    bool done = false;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Request*> queue;
  bool committing = false;

  // Read transactions between uses: reset, kept with their reader slot, and
  // renewed by the next reader (a fresh mdb_txn_begin takes the reader
  // table's lock; a renew does not).
  mutable std::mutex readers_mu;
  mutable std::vector<MDB_txn*> idle_readers;

  ~Impl() {
    for (MDB_txn* t : idle_readers) mdb_txn_abort(t);
    if (env != nullptr) mdb_env_close(env);
  }

  Status Write(std::function<Status(MDB_txn*)> fn) {
    Request req{std::move(fn)};
    std::unique_lock lock(mu);
    queue.push_back(&req);
    while (!req.done) {
      if (committing) {
        cv.wait(lock);
        continue;
      }
      committing = true;
      std::deque<Request*> batch;
      batch.swap(queue);
      lock.unlock();
      CommitGroup(batch);
      lock.lock();
      committing = false;
      for (Request* r : batch) r->done = true;
      cv.notify_all();
    }
    return req.result;
  }

  void CommitGroup(std::deque<Request*>& batch) {
    MDB_txn* txn = nullptr;
    int rc = mdb_txn_begin(env, nullptr, 0, &txn);
    if (rc != 0) {
      for (Request* r : batch) r->result = LmdbError(rc, "begin write");
      return;
    }
    for (Request* r : batch) {
      MDB_txn* child = nullptr;
      rc = mdb_txn_begin(env, txn, 0, &child);
      if (rc != 0) {
        r->result = LmdbError(rc, "begin nested");
        continue;
      }
      r->result = r->fn(child);
      if (r->result.ok()) {
        rc = mdb_txn_commit(child);
        if (rc != 0) r->result = LmdbError(rc, "commit nested");
      } else {
        mdb_txn_abort(child);
      }
    }
    rc = mdb_txn_commit(txn);
    if (rc != 0) {
      const Status s = LmdbError(rc, "commit");
      for (Request* r : batch) {
        if (r->result.ok()) r->result = s;
      }
    }
  }

  // Runs fn over a read-only snapshot.
  template <typename Fn>
  auto Read(Fn&& fn) const -> decltype(fn(static_cast<MDB_txn*>(nullptr))) {
    MDB_txn* txn = nullptr;
    {
      std::lock_guard lock(readers_mu);
      if (!idle_readers.empty()) {
        txn = idle_readers.back();
        idle_readers.pop_back();
      }
    }
    int rc = 0;
    if (txn != nullptr) {
      rc = mdb_txn_renew(txn);
      if (rc != 0) {
        mdb_txn_abort(txn);
        txn = nullptr;
      }
    }
    if (txn == nullptr) {
      rc = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn);
      if (rc != 0) return LmdbError(rc, "begin read");
    }
    auto result = fn(txn);
    mdb_txn_reset(txn);
    std::lock_guard lock(readers_mu);
    if (idle_readers.size() < kMaxIdleReaders) {
      idle_readers.push_back(txn);
    } else {
      mdb_txn_abort(txn);
    }
    return result;
  }
};

IndexStore::IndexStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
IndexStore::~IndexStore() = default;

Result<std::unique_ptr<IndexStore>> IndexStore::Open(const IndexOptions& options) {
  if (options.dir.empty()) return InvalidArgument("IndexOptions::dir is empty");
  if (options.map_bytes < (uint64_t{1} << 20)) return InvalidArgument("map_bytes below 1 MiB");
  if (::mkdir(options.dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "mkdir " + options.dir);
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->clock = options.clock != nullptr ? options.clock : &RealClock();
  int rc = mdb_env_create(&impl->env);
  if (rc != 0) return LmdbError(rc, "mdb_env_create");
  mdb_env_set_maxdbs(impl->env, kMaxDbs);
  // One reader slot per concurrent reader thread (LMDB's default is 126):
  // server workers, commit threads and the idle pool.
  mdb_env_set_maxreaders(impl->env, kMaxReaders);
  rc = mdb_env_set_mapsize(impl->env, options.map_bytes);
  if (rc != 0) return LmdbError(rc, "mdb_env_set_mapsize");
  // MDB_NOTLS: read transactions are not tied to threads. MDB_NOSYNC: a
  // commit is written (pwrite) but not fdatasync'd: it survives the
  // process, not the machine, which is what kProcessCrash promises.
  unsigned flags = MDB_NOTLS;
  if (options.durability == Durability::kProcessCrash) flags |= MDB_NOSYNC;
  rc = mdb_env_open(impl->env, options.dir.c_str(), flags, 0644);
  if (rc != 0) return LmdbError(rc, "open index " + options.dir);
  MDB_txn* txn = nullptr;
  rc = mdb_txn_begin(impl->env, nullptr, 0, &txn);
  if (rc != 0) return LmdbError(rc, "begin");
  for (auto [name, dbi] : {std::pair{"buckets", &impl->buckets}, std::pair{"owners", &impl->owners},
                           std::pair{"objects", &impl->objects}, std::pair{"contents", &impl->contents},
                           std::pair{"unhashed", &impl->unhashed},
                           std::pair{"uploads", &impl->uploads}, std::pair{"parts", &impl->parts},
                           std::pair{"bucket_uploads", &impl->bucket_uploads},
                           std::pair{"bucket_attrs", &impl->bucket_attrs}}) {
    rc = mdb_dbi_open(txn, name, MDB_CREATE, dbi);
    if (rc != 0) {
      mdb_txn_abort(txn);
      return LmdbError(rc, std::string("open table ") + name);
    }
  }
  rc = mdb_txn_commit(txn);
  if (rc != 0) return LmdbError(rc, "commit");
  return std::unique_ptr<IndexStore>(new IndexStore(std::move(impl)));
}

Status IndexStore::CreateBucket(std::string_view owner, std::string_view bucket) {
  if (!ValidBucket(bucket)) return InvalidArgument(fmt::format("invalid bucket name '{}'", bucket));
  if (owner.empty() || owner.size() > kMaxOwnerBytes || owner.find('\0') != std::string_view::npos) {
    return InvalidArgument("owner must be 1..256 bytes without NUL");
  }
  const std::string record = EncodeBucket({std::string(bucket), std::string(owner), UnixMs(*impl_->clock)});
  std::string owner_key = std::string(owner) + '\0' + std::string(bucket);
  return impl_->Write([&](MDB_txn* txn) -> Status {
    MDB_val k = Val(bucket), v = Val(record);
    int rc = mdb_put(txn, impl_->buckets, &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) return Status(qcloud::Errc::kAlreadyExists, fmt::format("bucket {} exists", bucket));
    if (rc != 0) return LmdbError(rc, "put bucket");
    MDB_val ok = Val(owner_key), empty{0, nullptr};
    rc = mdb_put(txn, impl_->owners, &ok, &empty, 0);
    return rc == 0 ? Status::Ok() : LmdbError(rc, "put owner");
  });
}

Status IndexStore::DeleteBucket(std::string_view bucket, std::vector<ChunkRef>* free_chunks) {
  std::vector<ChunkRef> freed;
  Status s = impl_->Write([&](MDB_txn* txn) -> Status {
    freed.clear();
    MDB_val k = Val(bucket), v;
    int rc = mdb_get(txn, impl_->buckets, &k, &v);
    if (rc == MDB_NOTFOUND) return NotFound(fmt::format("no bucket {}", bucket));
    if (rc != 0) return LmdbError(rc, "get bucket");
    QCLOUD_ASSIGN_OR_RETURN(BucketInfo info, DecodeBucket(bucket, View(v)));
    // Empty? The first objects key at or after the bucket's range start.
    const std::string start = ObjectKey(bucket, "");
    ObjectCursor c(txn, impl_->objects);
    c.Seek(start);
    QCLOUD_RETURN_IF_ERROR(c.status());
    const bool has_objects = c.valid() && c.key().starts_with(start);
    if (has_objects) return Status(qcloud::Errc::kAborted, fmt::format("bucket {} is not empty", bucket));
    rc = mdb_del(txn, impl_->buckets, &k, nullptr);
    if (rc != 0) return LmdbError(rc, "delete bucket");
    const std::string owner_key = info.owner + '\0' + std::string(bucket);
    MDB_val ok = Val(owner_key);
    rc = mdb_del(txn, impl_->owners, &ok, nullptr);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "delete owner entry");
    // Uploads in progress go with the bucket.
    std::vector<std::string> ids;
    {
      MDB_cursor* uc = nullptr;
      rc = mdb_cursor_open(txn, impl_->bucket_uploads, &uc);
      if (rc != 0) return LmdbError(rc, "cursor");
      MDB_val uk = Val(start), uv;
      for (rc = mdb_cursor_get(uc, &uk, &uv, MDB_SET_RANGE); rc == 0 && View(uk).starts_with(start);
           rc = mdb_cursor_get(uc, &uk, &uv, MDB_NEXT)) {
        ids.emplace_back(View(uk).substr(start.size()));
      }
      mdb_cursor_close(uc);
    }
    for (const std::string& id : ids) {
      QCLOUD_ASSIGN_OR_RETURN(UploadInfo u, impl_->LoadUpload(txn, id));
      QCLOUD_RETURN_IF_ERROR(impl_->DropUpload(txn, u, {}, freed));
    }
    // And its settings.
    MDB_cursor* ac = nullptr;
    rc = mdb_cursor_open(txn, impl_->bucket_attrs, &ac);
    if (rc != 0) return LmdbError(rc, "cursor");
    MDB_val ak = Val(start), av;
    for (rc = mdb_cursor_get(ac, &ak, &av, MDB_SET_RANGE); rc == 0 && View(ak).starts_with(start);
         rc = mdb_cursor_get(ac, &ak, &av, MDB_NEXT)) {
      rc = mdb_cursor_del(ac, 0);
      if (rc != 0) break;
    }
    mdb_cursor_close(ac);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "delete bucket settings");
    return Status::Ok();
  });
  if (s.ok() && free_chunks != nullptr) *free_chunks = std::move(freed);
  return s;
}

Result<BucketInfo> IndexStore::GetBucket(std::string_view bucket) const {
  return impl_->Read([&](MDB_txn* txn) -> Result<BucketInfo> {
    MDB_val k = Val(bucket), v;
    const int rc = mdb_get(txn, impl_->buckets, &k, &v);
    if (rc == MDB_NOTFOUND) return NotFound(fmt::format("no bucket {}", bucket));
    if (rc != 0) return LmdbError(rc, "get bucket");
    return DecodeBucket(bucket, View(v));
  });
}

Result<std::vector<BucketInfo>> IndexStore::ListBuckets(std::string_view owner) const {
  return impl_->Read([&](MDB_txn* txn) -> Result<std::vector<BucketInfo>> {
    std::vector<BucketInfo> out;
    const std::string start = std::string(owner) + '\0';
    MDB_cursor* c = nullptr;
    int rc = mdb_cursor_open(txn, impl_->owners, &c);
    if (rc != 0) return LmdbError(rc, "cursor");
    MDB_val k = Val(start), v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && View(k).starts_with(start);
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      const std::string_view name = View(k).substr(start.size());
      MDB_val bk = Val(name), bv;
      if (mdb_get(txn, impl_->buckets, &bk, &bv) == 0) {
        auto info = DecodeBucket(name, View(bv));
        if (!info.ok()) {
          mdb_cursor_close(c);
          return info.status();
        }
        out.push_back(std::move(*info));
      }
    }
    mdb_cursor_close(c);
    return out;
  });
}

Status IndexStore::SetBucketAttribute(std::string_view bucket, std::string_view name,
                                      std::string_view value) {
  if (name.empty() || name.size() > 64) return InvalidArgument("bucket setting names are 1..64 bytes");
  if (value.size() > 64 * 1024) return InvalidArgument("bucket setting over 64 KiB");
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(bucket));
  const std::string k = ObjectKey(bucket, name);
  return impl_->Write([&](MDB_txn* txn) -> Status {
    MDB_val bk = Val(bucket), bv;
    int rc = mdb_get(txn, impl_->buckets, &bk, &bv);
    if (rc == MDB_NOTFOUND) return NotFound(fmt::format("no bucket {}", bucket));
    if (rc != 0) return LmdbError(rc, "get bucket");
    MDB_val ak = Val(k), av = Val(value);
    rc = value.empty() ? mdb_del(txn, impl_->bucket_attrs, &ak, nullptr)
                       : mdb_put(txn, impl_->bucket_attrs, &ak, &av, 0);
    return rc == 0 || rc == MDB_NOTFOUND ? Status::Ok() : LmdbError(rc, "put bucket setting");
  });
}

Result<std::optional<std::string>> IndexStore::GetBucketAttribute(std::string_view bucket,
                                                                  std::string_view name) const {
  if (name.empty() || name.size() > 64) return InvalidArgument("bucket setting names are 1..64 bytes");
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(bucket));
  const std::string k = ObjectKey(bucket, name);
  return impl_->Read([&](MDB_txn* txn) -> Result<std::optional<std::string>> {
    MDB_val ak = Val(k), av;
    const int rc = mdb_get(txn, impl_->bucket_attrs, &ak, &av);
    if (rc == MDB_NOTFOUND) return std::optional<std::string>();
    if (rc != 0) return LmdbError(rc, "get bucket setting");
    return std::optional<std::string>(std::string(View(av)));
  });
}

Result<ObjectMeta> IndexStore::GetObject(std::string_view bucket, std::string_view key) const {
  QCLOUD_RETURN_IF_ERROR(CheckKey(key));
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(bucket));
  const std::string k = ObjectKey(bucket, key);
  return impl_->Read([&](MDB_txn* txn) -> Result<ObjectMeta> {
    if (k.size() <= kDirectMax) {
      // Decoded straight from LMDB's page (valid for this transaction).
      MDB_val mk = Val(k), mv;
      const int rc = mdb_get(txn, impl_->objects, &mk, &mv);
      if (rc == MDB_NOTFOUND) return NotFound(fmt::format("no object {}/{}", bucket, key));
      if (rc != 0) return LmdbError(rc, "get object");
      return DecodeObjectMeta(View(mv));
    }
    QCLOUD_ASSIGN_OR_RETURN(auto record, GetRecord(txn, impl_->objects, k));
    if (!record) return NotFound(fmt::format("no object {}/{}", bucket, key));
    return DecodeObjectMeta(*record);
  });
}

Status IndexStore::Impl::Release(MDB_txn* txn, const ObjectMeta& meta,
                                 std::vector<ChunkRef>& free_chunks) {
  if (meta.content.empty()) {
    free_chunks.insert(free_chunks.end(), meta.chunks.begin(), meta.chunks.end());
    return Status::Ok();
  }
  MDB_val ck = Val(meta.content), found;
  int rc = mdb_get(txn, contents, &ck, &found);
  if (rc == MDB_NOTFOUND) return Corruption("an object names content the index does not hold");
  if (rc != 0) return LmdbError(rc, "get content");
  QCLOUD_ASSIGN_OR_RETURN(ContentRecord c, DecodeContent(View(found)));
  if (c.references <= 1) {
    free_chunks.insert(free_chunks.end(), c.chunks.begin(), c.chunks.end());
    rc = mdb_del(txn, contents, &ck, nullptr);
    if (rc != 0) return LmdbError(rc, "delete content");
    if (!c.sha256) {
      rc = mdb_del(txn, unhashed, &ck, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "delete unhashed");
    }
    return Status::Ok();
  }
  --c.references;
  const std::string record = EncodeContent(c);
  MDB_val nv = Val(record);
  rc = mdb_put(txn, contents, &ck, &nv, 0);
  return rc == 0 ? Status::Ok() : LmdbError(rc, "put content");
}

Result<std::vector<StoredContent>> IndexStore::Impl::ContentsWith(MDB_txn* txn,
                                                                 const uint8_t (&md5)[16],
                                                                 uint64_t size) const {
  const std::string prefix = ContentPrefix(md5, size);
  std::vector<StoredContent> found;
  MDB_cursor* c = nullptr;
  int rc = mdb_cursor_open(txn, contents, &c);
  if (rc != 0) return LmdbError(rc, "cursor");
  MDB_val k = Val(prefix), v;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    const std::string_view key = View(k);
    if (key.size() != kContentKeyBytes || key.substr(0, prefix.size()) != prefix) break;
    auto record = DecodeContent(View(v));
    if (!record.ok()) {
      mdb_cursor_close(c);
      return record.status();
    }
    found.push_back({std::string(key), size, record->references, std::move(record->chunks), record->sha256});
  }
  mdb_cursor_close(c);
  if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "scan contents");
  return found;
}

namespace {
// Which of `same` (the stored contents with the claim's MD5 and size) the
// claim is: one of them, none, or kContentUnhashed when that cannot be told.
Result<const StoredContent*> Decide(const std::vector<StoredContent>& same, const ContentId& claim) {
  bool undecided = false;
  for (const StoredContent& c : same) {
    if (c.sha256 && SameSha(claim, *c.sha256)) return &c;
    if (!c.sha256 || !claim.has_sha256) undecided = true;
  }
  if (undecided) {
    return Status(object::Errc::kContentUnhashed,
                  "stored content has this MD5 and size but the SHA-256 of one side is not known");
  }
  return static_cast<const StoredContent*>(nullptr);
}
}  // namespace

Result<std::optional<StoredContent>> IndexStore::Impl::Match(MDB_txn* txn, const ContentId& claim) const {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<StoredContent> same, ContentsWith(txn, claim.md5, claim.size));
  QCLOUD_ASSIGN_OR_RETURN(const StoredContent* found, Decide(same, claim));
  return found != nullptr ? std::optional<StoredContent>(*found) : std::optional<StoredContent>();
}

Status IndexStore::Impl::Claim(MDB_txn* txn, const ContentId& claim, ObjectMeta& meta,
                               WriteOutcome& out, bool unique) {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<StoredContent> same, ContentsWith(txn, claim.md5, claim.size));
  const StoredContent* stored = nullptr;
  if (!unique) {
    QCLOUD_ASSIGN_OR_RETURN(stored, Decide(same, claim));
  }
  ContentRecord record;
  std::string key;
  if (stored != nullptr) {
    out.free_chunks.insert(out.free_chunks.end(), meta.chunks.begin(), meta.chunks.end());
    out.deduplicated = true;
    key = stored->key;
    record = {stored->references + 1, stored->sha256, stored->chunks};
  } else {
    if (meta.chunks.empty() && meta.size > 0) {
      return NotFound("content not stored: an instant upload needs the bytes");
    }
    // The next ordinal after the contents with this MD5 and size (almost
    // always 0: another is an MD5 collision).
    const std::string prefix = ContentPrefix(claim.md5, claim.size);
    uint32_t ordinal = 0;
    if (!same.empty()) {
      ordinal = DecodeBigEndian32(reinterpret_cast<const std::byte*>(same.back().key.data() + prefix.size()));
      if (ordinal == UINT32_MAX) return Status(qcloud::Errc::kResourceExhausted, "too many MD5 collisions");
      ++ordinal;
    }
    key = ContentKey(prefix, ordinal);
    record.references = 1;
    if (claim.has_sha256) {
      Sha256Digest d;
      std::memcpy(d.data(), claim.sha256, d.size());
      record.sha256 = d;
    }
    record.chunks = meta.chunks;
    if (!record.sha256) {
      MDB_val uk = Val(key), empty{0, nullptr};
      const int rc = mdb_put(txn, unhashed, &uk, &empty, 0);
      if (rc != 0) return LmdbError(rc, "put unhashed");
    }
  }
  meta.chunks = record.chunks;
  meta.content = key;
  out.content = key;
  out.content_chunks = meta.chunks;
  const std::string encoded = EncodeContent(record);
  MDB_val ck = Val(key), nv = Val(encoded);
  const int rc = mdb_put(txn, contents, &ck, &nv, 0);
  return rc == 0 ? Status::Ok() : LmdbError(rc, "put content");
}

Status IndexStore::Impl::ApplyObject(MDB_txn* txn, std::string_view k,
                                     std::optional<ObjectMeta> meta, WriteOutcome& out,
                                     const ContentId* claim, bool unique) {
  QCLOUD_ASSIGN_OR_RETURN(auto previous, GetRecord(txn, objects, k));
  if (previous) {
    QCLOUD_ASSIGN_OR_RETURN(ObjectMeta before, DecodeObjectMeta(*previous));
    out.previous = std::move(before);
  }
  if (meta) {
    // Take a reference first, so that replacing an object by the same
    // content never sees the count reach zero.
    if (claim != nullptr) {
      QCLOUD_RETURN_IF_ERROR(Claim(txn, *claim, *meta, out, unique));
    } else if (!meta->content.empty()) {
      MDB_val ck = Val(meta->content), found;
      int rc = mdb_get(txn, contents, &ck, &found);
      if (rc == MDB_NOTFOUND) return NotFound("content not stored");
      if (rc != 0) return LmdbError(rc, "get content");
      QCLOUD_ASSIGN_OR_RETURN(ContentRecord c, DecodeContent(View(found)));
      ++c.references;
      meta->chunks = c.chunks;
      const std::string record = EncodeContent(c);
      MDB_val nv = Val(record);
      rc = mdb_put(txn, contents, &ck, &nv, 0);
      if (rc != 0) return LmdbError(rc, "put content");
    }
    QCLOUD_RETURN_IF_ERROR(PutRecord(txn, objects, k, EncodeObjectMeta(*meta)));
  } else {
    if (!out.previous) return NotFound("no such object");
    QCLOUD_RETURN_IF_ERROR(DeleteRecord(txn, objects, k));
  }
  if (out.previous) QCLOUD_RETURN_IF_ERROR(Release(txn, *out.previous, out.free_chunks));
  return Status::Ok();
}

namespace {
// What DecodeObjectMeta and DecodeUpload accept: the index never writes a
// record it could not read back.
Status CheckUserMetadata(const std::vector<std::pair<std::string, std::string>>& entries) {
  for (const auto& [name, value] : entries) {
    if (name.size() > kMaxUserMetaBytes || value.size() > kMaxUserMetaBytes) {
      return InvalidArgument("a metadata name or value over 8 KiB");
    }
  }
  return Status::Ok();
}

// `claim`: the object is put with a ContentId (meta.content ignored).
Status CheckMeta(const ObjectMeta& meta, const ContentId* claim = nullptr) {
  uint64_t total = 0;
  for (const ChunkRef& c : meta.chunks) total += c.length;
  // Shared content brings its own chunks: none is fine.
  const bool shared = claim != nullptr || !meta.content.empty();
  if (total != meta.size && !(shared && meta.chunks.empty())) {
    return InvalidArgument("chunk lengths do not add up to the size");
  }
  if (claim != nullptr && claim->size != meta.size) return InvalidArgument("content size is not the object's");
  if (claim == nullptr && !meta.content.empty() && meta.content.size() != kContentKeyBytes) {
    return InvalidArgument("meta.content must be a stored content's key");
  }
  if (meta.etag.size() > kMaxEtag || meta.content_type.size() > kMaxContentType ||
      meta.user_metadata.size() > kMaxUserMetaEntries) {
    return InvalidArgument("object metadata over its limits");
  }
  return CheckUserMetadata(meta.user_metadata);
}
}  // namespace

Status IndexStore::PutObject(std::string_view bucket, std::string_view key, const ObjectMeta& meta,
                             WriteOutcome* outcome) {
  return impl_->Put(bucket, key, meta, nullptr, outcome);
}

Status IndexStore::PutObject(std::string_view bucket, std::string_view key, const ObjectMeta& meta,
                             const ContentId& content, WriteOutcome* outcome) {
  return impl_->Put(bucket, key, meta, &content, outcome);
}

Status IndexStore::Impl::Put(std::string_view bucket, std::string_view key, const ObjectMeta& meta,
                             const ContentId* claim, WriteOutcome* outcome) {
  QCLOUD_RETURN_IF_ERROR(CheckKey(key));
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(bucket));
  QCLOUD_RETURN_IF_ERROR(CheckMeta(meta, claim));
  const std::string k = ObjectKey(bucket, key);
  WriteOutcome out;
  Status s = Write([&](MDB_txn* txn) -> Status {
    out = {};
    QCLOUD_RETURN_IF_ERROR(RequireBucket(txn, bucket));
    return ApplyObject(txn, k, meta, out, claim);
  });
  if (s.ok() && outcome != nullptr) *outcome = std::move(out);
  return s;
}

Status IndexStore::PutObjects(std::string_view bucket,
                              const std::vector<std::pair<std::string, ObjectMeta>>& objects,
                              std::vector<ChunkRef>* free_chunks) {
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(bucket));
  std::vector<std::string> keys;
  keys.reserve(objects.size());
  for (const auto& [key, meta] : objects) {
    QCLOUD_RETURN_IF_ERROR(CheckKey(key));
    QCLOUD_RETURN_IF_ERROR(CheckMeta(meta).WithContext(key));
    keys.push_back(ObjectKey(bucket, key));
  }
  std::vector<ChunkRef> freed;
  Status s = impl_->Write([&](MDB_txn* txn) -> Status {
    freed.clear();
    QCLOUD_RETURN_IF_ERROR(impl_->RequireBucket(txn, bucket));
    for (size_t i = 0; i < objects.size(); ++i) {
      WriteOutcome out;
      QCLOUD_RETURN_IF_ERROR(impl_->ApplyObject(txn, keys[i], objects[i].second, out));
      freed.insert(freed.end(), out.free_chunks.begin(), out.free_chunks.end());
    }
    return Status::Ok();
  });
  if (s.ok() && free_chunks != nullptr) *free_chunks = std::move(freed);
  return s;
}

Status IndexStore::DeleteObject(std::string_view bucket, std::string_view key, WriteOutcome* outcome) {
  QCLOUD_RETURN_IF_ERROR(CheckKey(key));
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(bucket));
  const std::string k = ObjectKey(bucket, key);
  WriteOutcome out;
  Status s = impl_->Write([&](MDB_txn* txn) -> Status {
    out = {};
    Status st = impl_->ApplyObject(txn, k, std::nullopt, out);
    if (st == qcloud::Errc::kNotFound) return NotFound(fmt::format("no object {}/{}", bucket, key));
    return st;
  });
  if (s.ok() && outcome != nullptr) *outcome = std::move(out);
  return s;
}

Result<std::vector<ChunkRef>> IndexStore::FindContent(const ContentId& content) const {
  return impl_->Read([&](MDB_txn* txn) -> Result<std::vector<ChunkRef>> {
    QCLOUD_ASSIGN_OR_RETURN(std::optional<StoredContent> found, impl_->Match(txn, content));
    if (!found) return NotFound("content not stored");
    return std::move(found->chunks);
  });
}

Result<uint64_t> IndexStore::ContentReferences(const ContentId& content) const {
  return impl_->Read([&](MDB_txn* txn) -> Result<uint64_t> {
    QCLOUD_ASSIGN_OR_RETURN(std::optional<StoredContent> found, impl_->Match(txn, content));
    return found ? found->references : uint64_t{0};
  });
}

Result<std::vector<StoredContent>> IndexStore::ContentsWith(const uint8_t (&md5)[16], uint64_t size) const {
  return impl_->Read([&](MDB_txn* txn) { return impl_->ContentsWith(txn, md5, size); });
}

Result<std::vector<StoredContent>> IndexStore::UnhashedContents(size_t max, std::string_view after) const {
  return impl_->Read([&](MDB_txn* txn) -> Result<std::vector<StoredContent>> {
    std::vector<StoredContent> found;
    MDB_cursor* c = nullptr;
    int rc = mdb_cursor_open(txn, impl_->unhashed, &c);
    if (rc != 0) return LmdbError(rc, "cursor");
    MDB_val k = Val(after), v;
    for (rc = mdb_cursor_get(c, &k, &v, after.empty() ? MDB_FIRST : MDB_SET_RANGE); rc == 0 && found.size() < max;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      if (!after.empty() && View(k) == after) continue;
      MDB_val cv;
      const int grc = mdb_get(txn, impl_->contents, &k, &cv);
      if (grc == MDB_NOTFOUND) continue;
      if (grc != 0) {
        mdb_cursor_close(c);
        return LmdbError(grc, "get content");
      }
      auto record = DecodeContent(View(cv));
      const std::string_view key = View(k);
      if (!record.ok() || key.size() != kContentKeyBytes) {
        mdb_cursor_close(c);
        return record.ok() ? Corruption("unhashed: damaged content key") : record.status();
      }
      const uint64_t size = DecodeBigEndian64(reinterpret_cast<const std::byte*>(key.data() + 16));
      found.push_back({std::string(key), size, record->references, std::move(record->chunks), record->sha256});
    }
    mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND) return LmdbError(rc, "scan unhashed");
    return found;
  });
}

Status IndexStore::SetContentSha256(std::string_view content_key, const Sha256Digest& sha256) {
  if (content_key.size() != kContentKeyBytes) return InvalidArgument("not a content key");
  return impl_->Write([&](MDB_txn* txn) -> Status {
    MDB_val ck = Val(content_key), found;
    int rc = mdb_get(txn, impl_->contents, &ck, &found);
    if (rc == MDB_NOTFOUND) return Status::Ok();
    if (rc != 0) return LmdbError(rc, "get content");
    QCLOUD_ASSIGN_OR_RETURN(ContentRecord c, DecodeContent(View(found)));
    if (c.sha256) return Status::Ok();
    c.sha256 = sha256;
    const std::string record = EncodeContent(c);
    MDB_val nv = Val(record);
    rc = mdb_put(txn, impl_->contents, &ck, &nv, 0);
    if (rc != 0) return LmdbError(rc, "put content");
    rc = mdb_del(txn, impl_->unhashed, &ck, nullptr);
    return rc == 0 || rc == MDB_NOTFOUND ? Status::Ok() : LmdbError(rc, "delete unhashed");
  });
}

Status IndexStore::VisitChunks(const std::function<void(const ChunkRef&)>& fn) const {
  return impl_->Read([&](MDB_txn* txn) -> Status {
    MDB_cursor* c = nullptr;
    int rc = mdb_cursor_open(txn, impl_->contents, &c);
    if (rc != 0) return LmdbError(rc, "cursor");
    MDB_val k, v;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      auto content = DecodeContent(View(v));
      if (!content.ok()) {
        mdb_cursor_close(c);
        return content.status();
      }
      for (const ChunkRef& r : content->chunks) fn(r);
    }
    mdb_cursor_close(c);
    ObjectCursor objects(txn, impl_->objects);
    objects.Seek("");
    for (; objects.valid(); objects.Next()) {
      QCLOUD_ASSIGN_OR_RETURN(ObjectMeta meta, DecodeObjectMeta(objects.value()));
      if (meta.content.empty()) {
        for (const ChunkRef& r : meta.chunks) fn(r);
      }
    }
    QCLOUD_RETURN_IF_ERROR(objects.status());
    rc = mdb_cursor_open(txn, impl_->parts, &c);
    if (rc != 0) return LmdbError(rc, "cursor");
    for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      auto part = DecodePart(0, View(v));
      if (!part.ok()) {
        mdb_cursor_close(c);
        return part.status();
      }
      for (const ChunkRef& r : part->chunks) fn(r);
    }
    mdb_cursor_close(c);
    return Status::Ok();
  });
}

Result<ListResult> IndexStore::List(std::string_view bucket, const ListOptions& o) const {
  if (o.max_keys == 0 || o.max_keys > kMaxListKeys) return InvalidArgument("max_keys must be 1..1000");
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(bucket));
  if (o.prefix.size() > kMaxKeyBytes || o.start_after.size() > kMaxKeyBytes) {
    return InvalidArgument("prefix or start_after over 1024 bytes");
  }
  const std::string range = ObjectKey(bucket, o.prefix);  // every listed key starts with it
  const size_t head = 1 + bucket.size();
  return impl_->Read([&](MDB_txn* txn) -> Result<ListResult> {
    QCLOUD_RETURN_IF_ERROR(impl_->RequireBucket(txn, bucket));
    // Where to start: the prefix, or just after start_after; a start_after
    // that is one of this listing's common prefixes skips the keys under it.
    std::string seek = range;
    bool skip_equal = false;
    if (!o.start_after.empty() && ObjectKey(bucket, o.start_after) >= range) {
      const std::string& sa = o.start_after;
      const bool is_prefix_of_listing = !o.delimiter.empty() && sa.starts_with(o.prefix) &&
                                        sa.ends_with(o.delimiter) &&
                                        sa.find(o.delimiter, o.prefix.size()) == sa.size() - o.delimiter.size();
      if (is_prefix_of_listing) {
        seek = ObjectKey(bucket, Successor(sa));
      } else {
        seek = ObjectKey(bucket, sa);
        skip_equal = true;
      }
    }
    ListResult out;
    ObjectCursor c(txn, impl_->objects);
    c.Seek(seek);
    if (c.valid() && skip_equal && c.key() == seek) c.Next();
    size_t count = 0;
    std::string last;
    while (c.valid() && c.key().starts_with(range)) {
      const std::string_view key = c.key().substr(head);
      size_t at = std::string_view::npos;
      if (!o.delimiter.empty()) at = key.find(o.delimiter, o.prefix.size());
      if (count == o.max_keys) {
        out.truncated = true;
        break;
      }
      ++count;
      if (at != std::string_view::npos) {
        std::string cp(key.substr(0, at + o.delimiter.size()));
        last = cp;
        const std::string next = Successor(cp);
        out.common_prefixes.push_back(std::move(cp));
        if (next.empty()) break;
        c.Seek(ObjectKey(bucket, next));  // one seek past the whole prefix
        continue;
      }
      auto meta = DecodeObjectMeta(c.value());
      if (!meta.ok()) return meta.status().WithContext(std::string(key));
      last = std::string(key);
      out.objects.push_back({last, meta->size, meta->etag, meta->mtime_ms});
      c.Next();
    }
    QCLOUD_RETURN_IF_ERROR(c.status());
    if (out.truncated) out.next_start_after = last;
    return out;
  });
}

Result<UploadInfo> IndexStore::Impl::LoadUpload(MDB_txn* txn, std::string_view upload_id) const {
  MDB_val k = Val(upload_id), v;
  if (upload_id.empty() || upload_id.size() > 64) {
    return Status(object::Errc::kNoSuchUpload, fmt::format("no upload '{}'", upload_id));
  }
  const int rc = mdb_get(txn, uploads, &k, &v);
  if (rc == MDB_NOTFOUND) return Status(object::Errc::kNoSuchUpload, fmt::format("no upload '{}'", upload_id));
  if (rc != 0) return LmdbError(rc, "get upload");
  return DecodeUpload(upload_id, View(v));
}

Status IndexStore::Impl::ForEachPart(MDB_txn* txn, std::string_view upload_id, uint32_t after,
                                     const std::function<Result<bool>(PartInfo&&)>& fn) const {
  MDB_cursor* c = nullptr;
  int rc = mdb_cursor_open(txn, parts, &c);
  if (rc != 0) return LmdbError(rc, "cursor");
  const std::string start = PartKey(upload_id, after + 1);
  MDB_val k = Val(start), v;
  Status status;
  for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
    const std::string_view key = View(k);
    if (key.size() != upload_id.size() + 4 || !key.starts_with(upload_id)) break;
    const uint32_t number = DecodeBigEndian32(reinterpret_cast<const std::byte*>(key.data() + upload_id.size()));
    auto part = DecodePart(number, View(v));
    if (!part.ok()) {
      status = part.status();
      break;
    }
    auto more = fn(std::move(*part));
    if (!more.ok()) {
      status = more.status();
      break;
    }
    if (!*more) break;
  }
  if (status.ok() && rc != 0 && rc != MDB_NOTFOUND) status = LmdbError(rc, "cursor");
  mdb_cursor_close(c);
  return status;
}

Status IndexStore::Impl::DropUpload(MDB_txn* txn, const UploadInfo& upload,
                                    const std::vector<uint32_t>& kept,
                                    std::vector<ChunkRef>& free_chunks) {
  std::vector<std::string> part_keys;
  QCLOUD_RETURN_IF_ERROR(ForEachPart(txn, upload.upload_id, 0, [&](PartInfo&& part) -> Result<bool> {
    if (!std::binary_search(kept.begin(), kept.end(), part.number)) {
      free_chunks.insert(free_chunks.end(), part.chunks.begin(), part.chunks.end());
    }
    part_keys.push_back(PartKey(upload.upload_id, part.number));
    return true;
  }));
  for (const std::string& pk : part_keys) {
    MDB_val k = Val(pk);
    const int rc = mdb_del(txn, parts, &k, nullptr);
    if (rc != 0) return LmdbError(rc, "delete part");
  }
  MDB_val uk = Val(upload.upload_id);
  int rc = mdb_del(txn, uploads, &uk, nullptr);
  if (rc != 0) return LmdbError(rc, "delete upload");
  const std::string bk = ObjectKey(upload.bucket, upload.upload_id);
  MDB_val bkv = Val(bk);
  rc = mdb_del(txn, bucket_uploads, &bkv, nullptr);
  return rc == 0 || rc == MDB_NOTFOUND ? Status::Ok() : LmdbError(rc, "delete bucket upload");
}

Result<ObjectMeta> IndexStore::CopyObject(std::string_view src_bucket, std::string_view src_key,
                                          std::string_view dst_bucket, std::string_view dst_key,
                                          const ObjectMeta* replacement, WriteOutcome* outcome) {
  QCLOUD_RETURN_IF_ERROR(CheckKey(src_key));
  QCLOUD_RETURN_IF_ERROR(CheckKey(dst_key));
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(src_bucket));
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(dst_bucket));
  if (replacement != nullptr &&
      (replacement->content_type.size() > kMaxContentType ||
       replacement->user_metadata.size() > kMaxUserMetaEntries ||
       !CheckUserMetadata(replacement->user_metadata).ok())) {
    return InvalidArgument("object metadata over its limits");
  }
  const std::string sk = ObjectKey(src_bucket, src_key);
  const std::string dk = ObjectKey(dst_bucket, dst_key);
  const int64_t now = UnixMs(*impl_->clock);
  WriteOutcome out;
  ObjectMeta copy;
  Status s = impl_->Write([&](MDB_txn* txn) -> Status {
    out = {};
    QCLOUD_RETURN_IF_ERROR(impl_->RequireBucket(txn, dst_bucket));
    QCLOUD_ASSIGN_OR_RETURN(auto record, GetRecord(txn, impl_->objects, sk));
    if (!record) return NotFound(fmt::format("no object {}/{}", src_bucket, src_key));
    QCLOUD_ASSIGN_OR_RETURN(copy, DecodeObjectMeta(*record));
    if (copy.content.empty()) {
      return Status(qcloud::Errc::kNotSupported, "the source's chunks are not shared: copy its bytes");
    }
    if (replacement != nullptr) {
      copy.content_type = replacement->content_type;
      copy.user_metadata = replacement->user_metadata;
    }
    copy.mtime_ms = now;
    // No chunks of its own: ApplyObject takes a reference to the content's.
    ObjectMeta named = copy;
    named.chunks.clear();
    return impl_->ApplyObject(txn, dk, named, out);
  });
  if (!s.ok()) return s;
  if (outcome != nullptr) *outcome = std::move(out);
  return copy;
}

Result<std::string> IndexStore::CreateUpload(const UploadInfo& info) {
  QCLOUD_RETURN_IF_ERROR(CheckKey(info.key));
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(info.bucket));
  if (info.owner.size() > kMaxOwnerBytes || info.content_type.size() > kMaxContentType ||
      info.user_metadata.size() > kMaxUserMetaEntries || !CheckUserMetadata(info.user_metadata).ok()) {
    return InvalidArgument("upload metadata over its limits");
  }
  uint8_t raw[16];
  {
    std::random_device rd;
    for (size_t i = 0; i < sizeof raw; i += 4) {
      const uint32_t r = rd();
      std::memcpy(raw + i, &r, 4);
    }
  }
  UploadInfo u = info;
  u.upload_id = ToHex(ByteView(raw, sizeof raw));
  u.initiated_ms = UnixMs(*impl_->clock);
  const std::string record = EncodeUpload(u);
  const std::string bk = ObjectKey(u.bucket, u.upload_id);
  QCLOUD_RETURN_IF_ERROR(impl_->Write([&](MDB_txn* txn) -> Status {
    MDB_val b = Val(u.bucket), bv;
    int rc = mdb_get(txn, impl_->buckets, &b, &bv);
    if (rc == MDB_NOTFOUND) return NotFound(fmt::format("no bucket {}", u.bucket));
    if (rc != 0) return LmdbError(rc, "get bucket");
    MDB_val k = Val(u.upload_id), v = Val(record);
    rc = mdb_put(txn, impl_->uploads, &k, &v, MDB_NOOVERWRITE);
    if (rc != 0) return LmdbError(rc, "put upload");
    MDB_val k2 = Val(bk), empty{0, nullptr};
    rc = mdb_put(txn, impl_->bucket_uploads, &k2, &empty, 0);
    return rc == 0 ? Status::Ok() : LmdbError(rc, "put bucket upload");
  }));
  return u.upload_id;
}

Result<UploadInfo> IndexStore::GetUpload(std::string_view upload_id) const {
  return impl_->Read([&](MDB_txn* txn) { return impl_->LoadUpload(txn, upload_id); });
}

Status IndexStore::PutPart(std::string_view upload_id, const PartInfo& part,
                           std::vector<ChunkRef>* free_chunks) {
  if (part.number < 1 || part.number > kMaxPartNumber) {
    return InvalidArgument(fmt::format("part number {} outside 1..{}", part.number, kMaxPartNumber));
  }
  uint64_t total = 0;
  for (const ChunkRef& c : part.chunks) total += c.length;
  if (total != part.size || part.etag.size() > kMaxEtag) return InvalidArgument("part record is inconsistent");
  const std::string key = PartKey(upload_id, part.number);
  const std::string record = EncodePart(part);
  std::vector<ChunkRef> freed;
  Status s = impl_->Write([&](MDB_txn* txn) -> Status {
    freed.clear();
    QCLOUD_RETURN_IF_ERROR(impl_->LoadUpload(txn, upload_id).status());
    MDB_val k = Val(key), v;
    int rc = mdb_get(txn, impl_->parts, &k, &v);
    if (rc == 0) {
      QCLOUD_ASSIGN_OR_RETURN(PartInfo old, DecodePart(part.number, View(v)));
      freed = std::move(old.chunks);
    } else if (rc != MDB_NOTFOUND) {
      return LmdbError(rc, "get part");
    }
    MDB_val nv = Val(record);
    rc = mdb_put(txn, impl_->parts, &k, &nv, 0);
    return rc == 0 ? Status::Ok() : LmdbError(rc, "put part");
  });
  if (s.ok() && free_chunks != nullptr) *free_chunks = std::move(freed);
  return s;
}

Result<ListPartsResult> IndexStore::ListParts(std::string_view upload_id, uint32_t after,
                                              size_t max_parts) const {
  if (max_parts == 0 || max_parts > kMaxListKeys) return InvalidArgument("max_parts must be 1..1000");
  return impl_->Read([&](MDB_txn* txn) -> Result<ListPartsResult> {
    QCLOUD_RETURN_IF_ERROR(impl_->LoadUpload(txn, upload_id).status());
    ListPartsResult out;
    if (after >= kMaxPartNumber) return out;
    QCLOUD_RETURN_IF_ERROR(impl_->ForEachPart(txn, upload_id, after, [&](PartInfo&& p) -> Result<bool> {
      if (out.parts.size() == max_parts) {
        out.truncated = true;
        return false;
      }
      out.parts.push_back(std::move(p));
      return true;
    }));
    if (out.truncated) out.next_marker = out.parts.back().number;
    return out;
  });
}

Result<ListUploadsResult> IndexStore::ListUploads(std::string_view bucket,
                                                  const ListUploadsOptions& o) const {
  if (o.max_uploads == 0 || o.max_uploads > kMaxListKeys) return InvalidArgument("max_uploads must be 1..1000");
  QCLOUD_RETURN_IF_ERROR(CheckBucketName(bucket));
  return impl_->Read([&](MDB_txn* txn) -> Result<ListUploadsResult> {
    MDB_val bk = Val(bucket), bv;
    int rc = mdb_get(txn, impl_->buckets, &bk, &bv);
    if (rc == MDB_NOTFOUND) return NotFound(fmt::format("no bucket {}", bucket));
    if (rc != 0) return LmdbError(rc, "get bucket");
    std::vector<UploadInfo> all;
    const std::string start = ObjectKey(bucket, "");
    MDB_cursor* c = nullptr;
    rc = mdb_cursor_open(txn, impl_->bucket_uploads, &c);
    if (rc != 0) return LmdbError(rc, "cursor");
    MDB_val k = Val(start), v;
    Status status;
    for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && View(k).starts_with(start);
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
      auto u = impl_->LoadUpload(txn, View(k).substr(start.size()));
      if (!u.ok()) {
        status = u.status();
        break;
      }
      if (!u->key.starts_with(o.prefix)) continue;
      if (!o.key_marker.empty()) {
        if (u->key < o.key_marker) continue;
        if (u->key == o.key_marker &&
            (o.upload_id_marker.empty() || u->upload_id <= o.upload_id_marker)) {
          continue;
        }
      }
      all.push_back(std::move(*u));
    }
    mdb_cursor_close(c);
    QCLOUD_RETURN_IF_ERROR(status);
    std::sort(all.begin(), all.end(), [](const UploadInfo& a, const UploadInfo& b) {
      return a.key != b.key ? a.key < b.key : a.upload_id < b.upload_id;
    });
    ListUploadsResult out;
    if (all.size() > o.max_uploads) {
      all.resize(o.max_uploads);
      out.truncated = true;
      out.next_key_marker = all.back().key;
      out.next_upload_id_marker = all.back().upload_id;
    }
    out.uploads = std::move(all);
    return out;
  });
}

namespace {
std::string_view Unquote(std::string_view etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') etag = etag.substr(1, etag.size() - 2);
  return etag;
}
bool SameEtag(std::string_view a, std::string_view b) {
  a = Unquote(a);
  b = Unquote(b);
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](char x, char y) { return std::tolower(static_cast<unsigned char>(x)) ==
                                                std::tolower(static_cast<unsigned char>(y)); });
}
}  // namespace

Result<ObjectMeta> IndexStore::CompleteUpload(std::string_view upload_id,
                                              const std::vector<std::pair<uint32_t, std::string>>& parts,
                                              uint64_t min_part_bytes, WriteOutcome* outcome) {
  if (parts.empty()) return InvalidArgument("a multipart upload completes with at least one part");
  std::vector<uint32_t> numbers;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0 && parts[i].first <= parts[i - 1].first) {
      return Status(object::Errc::kInvalidPartOrder, "parts must be listed in ascending part-number order");
    }
    numbers.push_back(parts[i].first);
  }
  // A content of its own: the MD5 is the multipart ETag's digest, the
  // SHA-256 random (the whole body's is not known here), stored without
  // matching against other contents; copies share it, no upload can match it.
  ContentId content;
  {
    std::random_device rd;
    for (size_t i = 0; i < sizeof content.sha256; i += 4) {
      const uint32_t r = rd();
      std::memcpy(content.sha256 + i, &r, 4);
    }
  }
  const int64_t now = UnixMs(*impl_->clock);
  WriteOutcome out;
  ObjectMeta meta;
  Status s = impl_->Write([&](MDB_txn* txn) -> Status {
    out = {};
    meta = {};
    QCLOUD_ASSIGN_OR_RETURN(UploadInfo u, impl_->LoadUpload(txn, upload_id));
    QCLOUD_RETURN_IF_ERROR(impl_->RequireBucket(txn, u.bucket));
    Md5Hasher etag_md5;
    for (size_t i = 0; i < parts.size(); ++i) {
      const auto& [number, etag] = parts[i];
      const std::string pk = PartKey(upload_id, number);
      MDB_val k = Val(pk), v;
      const int prc = mdb_get(txn, impl_->parts, &k, &v);
      if (prc == MDB_NOTFOUND) {
        return Status(object::Errc::kInvalidPart, fmt::format("part {} was not uploaded", number));
      }
      if (prc != 0) return LmdbError(prc, "get part");
      QCLOUD_ASSIGN_OR_RETURN(PartInfo part, DecodePart(number, View(v)));
      if (!SameEtag(etag, part.etag)) {
        return Status(object::Errc::kInvalidPart, fmt::format("part {}: ETag {} is not the part's", number, etag));
      }
      if (i + 1 < parts.size() && part.size < min_part_bytes) {
        return Status(object::Errc::kEntityTooSmall,
                      fmt::format("part {} has {} bytes; all but the last need {}", number, part.size,
                                  min_part_bytes));
      }
      std::string digest;
      if (!FromHex(part.etag, &digest) || digest.size() != 16) {
        return Corruption("part record: ETag is not an MD5");
      }
      etag_md5.Update(ByteView(digest));
      meta.size += part.size;
      meta.chunks.insert(meta.chunks.end(), part.chunks.begin(), part.chunks.end());
    }
    const Md5Digest d = etag_md5.Finish();
    meta.etag = fmt::format("{}-{}", ToHex(AsBytes(d)), parts.size());
    meta.content_type = u.content_type;
    meta.user_metadata = u.user_metadata;
    meta.mtime_ms = now;
    ContentId id = content;
    std::memcpy(id.md5, d.data(), d.size());
    id.size = meta.size;
    const std::string k = ObjectKey(u.bucket, u.key);
    QCLOUD_RETURN_IF_ERROR(impl_->ApplyObject(txn, k, meta, out, &id, /*unique=*/true));
    QCLOUD_ASSIGN_OR_RETURN(auto stored, GetRecord(txn, impl_->objects, k));
    if (!stored) return Corruption("a completed upload's object is missing");
    QCLOUD_ASSIGN_OR_RETURN(meta, DecodeObjectMeta(*stored));
    return impl_->DropUpload(txn, u, numbers, out.free_chunks);
  });
  if (!s.ok()) return s;
  if (outcome != nullptr) *outcome = std::move(out);
  return meta;
}

Status IndexStore::AbortUpload(std::string_view upload_id, std::vector<ChunkRef>* free_chunks) {
  std::vector<ChunkRef> freed;
  Status s = impl_->Write([&](MDB_txn* txn) -> Status {
    freed.clear();
    QCLOUD_ASSIGN_OR_RETURN(UploadInfo u, impl_->LoadUpload(txn, upload_id));
    return impl_->DropUpload(txn, u, {}, freed);
  });
  if (s.ok() && free_chunks != nullptr) *free_chunks = std::move(freed);
  return s;
}

}  // namespace qcloud::object
