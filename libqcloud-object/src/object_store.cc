#include "qcloud/object/object_store.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <unordered_set>

#include <fmt/format.h>

#include "object/chunk_cache.h"
#include "qcloud/object/errc.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/worker_pool.h"

namespace qcloud::object {

namespace {

constexpr uint64_t kMinChunkBytes = 4096;

}  // namespace

struct ObjectStore::Impl {
  ObjectStoreOptions options;
  Logger* logger = nullptr;
  Clock* clock = nullptr;
  std::vector<std::unique_ptr<ChxStore>> disks;
  std::unique_ptr<IndexStore> index;
  std::atomic<uint64_t> next_disk{0};
  std::atomic<uint64_t> collected{0};
  std::atomic<uint64_t> free_errors{0};
  std::unique_ptr<ChunkCache> cache;
  // Chunk-sized buffers of finished writes, kept for the next large PUT
  // (no allocation, no page faults); at most kFreeBuffers.
  static constexpr size_t kFreeBuffers = 4;
  std::mutex buffers_mu;
  std::vector<ChunkBuffer> free_buffers;
  ChunkBuffer TakeBuffer() {
    {
      std::lock_guard lock(buffers_mu);
      if (!free_buffers.empty()) {
        ChunkBuffer b = std::move(free_buffers.back());
        free_buffers.pop_back();
        return b;
      }
    }
    return ChunkBuffer(static_cast<size_t>(options.chunk_bytes));
  }
  void GiveBuffer(ChunkBuffer b) {
    if (b.capacity() != options.chunk_bytes) return;
    b.Clear();
    std::lock_guard lock(buffers_mu);
    if (free_buffers.size() < kFreeBuffers) free_buffers.push_back(std::move(b));
  }
  // Declared after the buffers: destroyed (joined) first, as its jobs give
  // buffers back.
  std::unique_ptr<WorkerPool> writers;  // null: chunks are written on the caller's thread

  void Log(LogLevel level, const std::string& line) const {
    if (logger->Enabled(level)) logger->Log(level, line);
  }

  // Deletes chunks nothing references any more. A failure is counted and
  // logged: the chunk is garbage the next Open() collects.
  void Free(const std::vector<ChunkRef>& chunks) {
    for (const ChunkRef& c : chunks) {
      if (c.store >= disks.size()) continue;
      Status s = disks[c.store]->Delete(c.chunk);
      if (!s.ok() && !(s == qcloud::Errc::kNotFound)) {
        free_errors++;
        Log(LogLevel::kWarning, s.WithContext("freeing a chunk").ToString());
      }
    }
  }

  // SHA-256 of the bytes in `chunks`, read back (checksums verified).
  Result<Sha256Digest> HashChunks(const std::vector<ChunkRef>& chunks) {
    Sha256Hasher sha;
    for (const ChunkRef& c : chunks) {
      if (c.store >= disks.size()) return Corruption("content names a disk that is not configured");
      QCLOUD_ASSIGN_OR_RETURN(Buffer data, disks[c.store]->Read(c.chunk, c.length));
      if (data.size() != c.length) return Corruption("chunk length differs from the index");
      sha.Update(data.readable());
    }
    return sha.Finish();
  }

  // Gives the stored contents with this MD5 and size their SHA-256.
  Status HashContentsWith(const uint8_t (&md5)[16], uint64_t size) {
    QCLOUD_ASSIGN_OR_RETURN(std::vector<StoredContent> same, index->ContentsWith(md5, size));
    for (const StoredContent& c : same) {
      if (c.sha256) continue;
      auto sha = HashChunks(c.chunks);
      // Deleted meanwhile: nothing to decide against any more. Damaged (a
      // chunk failed its checksum): it can match nothing; the caller ends up
      // storing its object unshared.
      if (!sha.ok() && sha.status() == qcloud::Errc::kNotFound) continue;
      if (!sha.ok() && sha.status() == qcloud::Errc::kCorruption) {
        Log(LogLevel::kWarning, sha.status().WithContext("hashing stored content").ToString());
        continue;
      }
      QCLOUD_RETURN_IF_ERROR(sha.status());
      QCLOUD_RETURN_IF_ERROR(index->SetContentSha256(c.key, *sha));
    }
    return Status::Ok();
  }

  // PutObject with a content claim, settling kContentUnhashed: the stored
  // contents with the claim's MD5 and size are hashed, and so is the
  // claim's own bytes (`own`, when it has none). Bounded: a content that
  // keeps racing in unhashed leaves the object unshared (correct, merely
  // not de-duplicated).
  Status PutContent(std::string_view bucket, std::string_view key, ObjectMeta& meta, ContentId claim,
                    const std::vector<ChunkRef>& own, WriteOutcome& out) {
    constexpr int kAttempts = 4;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      Status s = index->PutObject(bucket, key, meta, claim, &out);
      if (s.code() != object::Errc::kContentUnhashed) return s;
      QCLOUD_RETURN_IF_ERROR(HashContentsWith(claim.md5, claim.size));
      if (!claim.has_sha256) {
        QCLOUD_ASSIGN_OR_RETURN(Sha256Digest sha, HashChunks(own));
        std::memcpy(claim.sha256, sha.data(), sha.size());
        claim.has_sha256 = true;
      }
    }
    if (own.empty() && meta.size > 0) {
      return Status(qcloud::Errc::kUnavailable, "content kept changing while being matched; try again");
    }
    meta.content.clear();
    return index->PutObject(bucket, key, meta, &out);
  }

  Status SyncDisks() {
    for (auto& d : disks) QCLOUD_RETURN_IF_ERROR(d->Sync());
    return Status::Ok();
  }

  // Mark (the index's references) and sweep (every disk's chunks).
  Status CollectGarbage() {
    std::vector<std::unordered_set<uint64_t>> live(disks.size());
    QCLOUD_RETURN_IF_ERROR(index->VisitChunks([&](const ChunkRef& r) {
      if (r.store < live.size()) live[r.store].insert(r.chunk.value);
    }));
    for (size_t i = 0; i < disks.size(); ++i) {
      for (ChunkId id : disks[i]->ListChunks()) {
        if (live[i].count(id.value) != 0) continue;
        QCLOUD_RETURN_IF_ERROR(disks[i]->Delete(id));
        collected++;
      }
    }
    if (collected.load() > 0) {
      Log(LogLevel::kInfo, fmt::format("collected {} unreferenced chunks", collected.load()));
    }
    return SyncDisks();
  }
};

namespace {

// MD5 in pairs. A large PUT's bytes are hashed in batches as they arrive,
// each batch together with another large PUT's unhashed bytes arriving on
// the same thread when there are enough (Md5Hasher::UpdatePair: about 1.5
// times one stream's rate), which is how one core keeps up with several
// large uploads. A writer with kHashBatch unhashed bytes hashes with the
// partner that has the most (at least kMinPartnerBytes); without one it
// waits for one until kHashAlone bytes are unhashed. The writers of one
// thread meet in its HashGroup: a writer joins at its first batch (small
// objects never do) and leaves before Finish, which may run on another
// thread. A partner's bytes are read only under the group's lock and only
// on the partner's own thread, where it cannot be writing at that moment.
constexpr size_t kHashBatch = 64 * 1024;
constexpr size_t kMinPartnerBytes = 32 * 1024;
constexpr size_t kHashAlone = 512 * 1024;

// Objects up to this size get their SHA-256 at PUT time (see Finish).
constexpr uint64_t kInlineSha256Max = 256 * 1024;

struct HashGroup;

// The MD5 of one writer's bytes (`*pending`, the chunk being filled).
struct StreamHash {
  const ChunkBuffer* pending = nullptr;
  size_t hashed = 0;  // how many bytes of *pending MD5 has seen
  Md5Hasher md5;
  std::shared_ptr<HashGroup> group;  // set while in the thread's group

  size_t unhashed() const { return pending->size() - hashed; }
  ByteView Unhashed() const { return pending->data().subview(hashed, unhashed()); }
  // Hashes the bytes MD5 has not seen, with a partner's when one has
  // enough; with none, only when at least `alone_from` are waiting.
  void HashPending(size_t alone_from = 0);
  void Join();
  void Leave();
};

struct HashGroup {
  std::mutex mu;
  std::vector<StreamHash*> members;
};

std::shared_ptr<HashGroup> ThreadHashGroup() {
  thread_local std::shared_ptr<HashGroup> group = std::make_shared<HashGroup>();
  return group;
}

void StreamHash::HashPending(size_t alone_from) {
  if (unhashed() == 0) return;
  if (group == nullptr) {
    md5.Update(Unhashed());
    hashed = pending->size();
    return;
  }
  std::lock_guard lock(group->mu);
  StreamHash* partner = nullptr;
  for (StreamHash* m : group->members) {
    if (m != this && m->unhashed() >= kMinPartnerBytes &&
        (partner == nullptr || m->unhashed() > partner->unhashed())) {
      partner = m;
    }
  }
  if (partner != nullptr) {
    Md5Hasher::UpdatePair(md5, Unhashed(), partner->md5, partner->Unhashed());
    partner->hashed = partner->pending->size();
  } else if (unhashed() >= alone_from) {
    md5.Update(Unhashed());
  } else {
    return;
  }
  hashed = pending->size();
}

void StreamHash::Join() {
  if (group != nullptr) return;
  group = ThreadHashGroup();
  std::lock_guard lock(group->mu);
  group->members.push_back(this);
}

void StreamHash::Leave() {
  if (group == nullptr) return;
  {
    std::lock_guard lock(group->mu);
    std::erase(group->members, this);
  }
  group.reset();
}

}  // namespace

struct ObjectWriter::Impl {
  ObjectStore::Impl* store = nullptr;
  ChunkBuffer pending;            // bytes not yet in a chunk
  StreamHash hash{&pending};      // their MD5, in batches
  std::vector<ChunkRef> written;  // chunks this PUT wrote, in order
  // Full chunks handed to the store's writer threads, oldest first.
  struct InFlight {
    uint32_t disk = 0;
    uint64_t length = 0;
    std::future<Result<ChunkId>> id;
  };
  std::deque<InFlight> inflight;
  uint64_t size = 0;
  bool done = false;

  // Waits until at most `keep` chunks are in flight, moving the finished
  // ones to `written`. Returns the first failure.
  Status Reap(size_t keep) {
    Status first;
    while (inflight.size() > keep) {
      InFlight f = std::move(inflight.front());
      inflight.pop_front();
      Result<ChunkId> id = f.id.get();
      if (id.ok()) {
        written.push_back({f.disk, *id, f.length});
      } else if (first.ok()) {
        first = id.status();
      }
    }
    return first;
  }

  // Writes `pending` as the next chunk: on a writer thread when `async`
  // (leaving at most one chunk in flight), else here, after the others.
  Status Flush(bool async) {
    hash.HashPending();
    if (!async) QCLOUD_RETURN_IF_ERROR(Reap(0));
    if (pending.empty()) return Status::Ok();
    const uint32_t disk = static_cast<uint32_t>(store->next_disk++ % store->disks.size());
    ChxStore* chx = store->disks[disk].get();
    if (async && store->writers != nullptr) {
      const uint64_t length = pending.size();
      inflight.push_back({disk, length,
                          store->writers->Submit([chx, s = store, bytes = std::move(pending)]() mutable {
                            Result<ChunkId> id = chx->Append(bytes);
                            s->GiveBuffer(std::move(bytes));
                            return id;
                          })});
      pending = store->TakeBuffer();
      hash.hashed = 0;
      return Reap(1);
    }
    QCLOUD_ASSIGN_OR_RETURN(ChunkId id, chx->Append(pending));
    written.push_back({disk, id, pending.size()});
    pending.Clear();
    hash.hashed = 0;
    return Status::Ok();
  }
  // Room for more bytes in `pending`: small at first (most objects are
  // small), a whole chunk (from the store's spares) once it is large.
  void Grow() {
    const size_t chunk = static_cast<size_t>(store->options.chunk_bytes);
    const size_t want = pending.capacity() < 256 * 1024 ? std::max<size_t>(16 * 1024, 2 * pending.capacity()) : chunk;
    ChunkBuffer bigger = want >= chunk ? store->TakeBuffer() : ChunkBuffer(want);
    bigger.Append(pending.data());
    pending = std::move(bigger);
  }
  // Once the writer is done: its buffer goes back to the store (a finished
  // writer may outlive the store; it touches it no more).
  void ReleaseBuffer() { store->GiveBuffer(std::move(pending)); }
  void Abort() {
    hash.Leave();
    if (done) return;
    done = true;
    ReleaseBuffer();
    (void)Reap(0);  // chunks still being written are freed with the rest
    store->Free(written);
    written.clear();
  }
};

ObjectWriter::ObjectWriter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ObjectWriter::~ObjectWriter() { impl_->Abort(); }
void ObjectWriter::Abort() { impl_->Abort(); }
uint64_t ObjectWriter::size() const noexcept { return impl_->size; }

Status ObjectWriter::Write(ByteView data) {
  Impl& w = *impl_;
  if (w.done) return Status(qcloud::Errc::kAborted, "write after Finish or Abort");
  w.size += data.size();
  const uint64_t chunk = w.store->options.chunk_bytes;
  while (!data.empty()) {
    if (w.pending.size() == w.pending.capacity()) w.Grow();
    const size_t take = std::min({data.size(), w.pending.capacity() - w.pending.size(),
                                  static_cast<size_t>(chunk - w.pending.size())});
    w.pending.Append(data.first(take));
    data.RemovePrefix(take);
    if (w.hash.unhashed() >= kHashBatch && w.pending.size() < chunk) {
      w.hash.Join();
      w.hash.HashPending(kHashAlone);
    }
    if (w.pending.size() == chunk) {
      if (Status s = w.Flush(/*async=*/true); !s.ok()) {
        w.Abort();
        return s;
      }
    }
  }
  return Status::Ok();
}

Result<ObjectMeta> ObjectWriter::Finish(std::string_view bucket, std::string_view key,
                                        const PutOptions& options) {
  Impl& w = *impl_;
  if (w.done) return Status(qcloud::Errc::kAborted, "Finish after Finish or Abort");
  auto fail = [&](Status s) {
    w.Abort();
    return s;
  };
  w.hash.Leave();  // Finish may run on another thread than the writes
  // SHA-256: a small object's is taken here, from memory (it costs little
  // next to the PUT, and keeps small contents out of the unhashed list); a
  // large object's is left to the index's lazy rule.
  std::optional<Sha256Digest> sha = options.sha256;
  if (!sha && w.written.empty() && w.inflight.empty() && w.size <= kInlineSha256Max) {
    sha = Sha256(w.pending.data());
  }
  if (Status s = w.Flush(/*async=*/false); !s.ok()) return fail(s);
  const Md5Digest md5 = w.hash.md5.Finish();
  if (options.expected_md5 && *options.expected_md5 != md5) {
    return fail(Corruption("the body's MD5 does not match Content-MD5"));
  }
  ContentId content;
  std::memcpy(content.md5, md5.data(), md5.size());
  content.size = w.size;
  content.has_sha256 = sha.has_value();
  if (sha) std::memcpy(content.sha256, sha->data(), sha->size());
  ObjectMeta meta;
  meta.size = w.size;
  meta.etag = ToHex(AsBytes(md5));
  meta.content_type = options.content_type;
  meta.user_metadata = options.user_metadata;
  meta.mtime_ms = UnixMs(*w.store->clock);
  meta.chunks = w.written;
  if (w.store->options.durability == Durability::kDurable) {
    if (Status s = w.store->SyncDisks(); !s.ok()) return fail(s);
  }
  WriteOutcome out;
  if (Status s = w.store->PutContent(bucket, key, meta, content, w.written, out); !s.ok()) return fail(s);
  w.done = true;  // the chunks belong to the index now
  w.ReleaseBuffer();
  w.store->Free(out.free_chunks);
  // What the index stored (no second read): the content it named, and the
  // shared chunks when the bytes were a duplicate.
  meta.content = out.content;
  if (!out.content.empty()) meta.chunks = out.content_chunks;
  return meta;
}

Result<PartInfo> ObjectWriter::FinishPart(std::string_view upload_id, uint32_t number,
                                          const std::optional<Md5Digest>& expected_md5) {
  Impl& w = *impl_;
  if (w.done) return Status(qcloud::Errc::kAborted, "FinishPart after Finish or Abort");
  auto fail = [&](Status s) {
    w.Abort();
    return s;
  };
  w.hash.Leave();  // Finish may run on another thread than the writes
  if (Status s = w.Flush(/*async=*/false); !s.ok()) return fail(s);
  const Md5Digest md5 = w.hash.md5.Finish();
  if (expected_md5 && *expected_md5 != md5) {
    return fail(Corruption("the body's MD5 does not match Content-MD5"));
  }
  PartInfo part;
  part.number = number;
  part.size = w.size;
  part.etag = ToHex(AsBytes(md5));
  part.mtime_ms = UnixMs(*w.store->clock);
  part.chunks = w.written;
  if (w.store->options.durability == Durability::kDurable) {
    if (Status s = w.store->SyncDisks(); !s.ok()) return fail(s);
  }
  std::vector<ChunkRef> replaced;
  if (Status s = w.store->index->PutPart(upload_id, part, &replaced); !s.ok()) return fail(s);
  w.done = true;
  w.ReleaseBuffer();
  w.store->Free(replaced);
  return part;
}

ObjectStore::ObjectStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ObjectStore::~ObjectStore() = default;
IndexStore& ObjectStore::index() noexcept { return *impl_->index; }

Result<std::unique_ptr<ObjectStore>> ObjectStore::Open(const ObjectStoreOptions& options) {
  if (options.disks.empty()) return InvalidArgument("ObjectStoreOptions::disks is empty");
  if (options.disks.size() > UINT32_MAX) return InvalidArgument("too many disks");
  if (options.chunk_bytes < kMinChunkBytes || options.chunk_bytes > (uint64_t{64} << 20)) {
    return InvalidArgument("chunk_bytes must be 4 KiB..64 MiB");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->logger = options.logger != nullptr ? options.logger : &DiscardLogger();
  impl->clock = options.clock != nullptr ? options.clock : &RealClock();
  impl->cache = std::make_unique<ChunkCache>(options.chunk_cache_bytes, options.chunk_cache_max_chunk);
  if (options.write_threads > 0) impl->writers = std::make_unique<WorkerPool>(options.write_threads);
  for (const std::string& dir : options.disks) {
    QCLOUD_ASSIGN_OR_RETURN(
        auto chx, ChxStore::Open({.dir = dir,
                                  .env = options.env,
                                  .volume_bytes = options.volume_bytes,
                                  .max_chunk_bytes = static_cast<uint32_t>(options.chunk_bytes),
                                  .logger = options.logger,
                                  .clock = impl->clock}));
    impl->disks.push_back(std::move(chx));
  }
  QCLOUD_ASSIGN_OR_RETURN(impl->index,
                          IndexStore::Open({.dir = options.index_dir,
                                            .durability = options.durability,
                                            .map_bytes = options.index_map_bytes,
                                            .clock = impl->clock}));
  QCLOUD_RETURN_IF_ERROR(impl->CollectGarbage());
  return std::unique_ptr<ObjectStore>(new ObjectStore(std::move(impl)));
}

std::unique_ptr<ObjectWriter> ObjectStore::BeginPut() {
  auto w = std::make_unique<ObjectWriter::Impl>();
  w->store = impl_.get();
  return std::unique_ptr<ObjectWriter>(new ObjectWriter(std::move(w)));
}

Result<ObjectMeta> ObjectStore::Put(std::string_view bucket, std::string_view key, ByteView body,
                                    const PutOptions& options) {
  auto w = BeginPut();
  QCLOUD_RETURN_IF_ERROR(w->Write(body));
  return w->Finish(bucket, key, options);
}

Result<ObjectMeta> ObjectStore::PutInstant(std::string_view bucket, std::string_view key,
                                           const ContentId& content, const PutOptions& options) {
  if (!content.has_sha256) return InvalidArgument("an instant upload names its content's SHA-256");
  ObjectMeta meta;
  meta.size = content.size;
  meta.etag = ToHex(ByteView(content.md5, sizeof content.md5));
  meta.content_type = options.content_type;
  meta.user_metadata = options.user_metadata;
  meta.mtime_ms = UnixMs(*impl_->clock);
  WriteOutcome out;
  QCLOUD_RETURN_IF_ERROR(impl_->PutContent(bucket, key, meta, content, {}, out));
  impl_->Free(out.free_chunks);
  meta.content = out.content;
  meta.chunks = out.content_chunks;
  return meta;
}

Result<size_t> ObjectStore::HashContents(uint64_t max_bytes) {
  constexpr size_t kBatch = 16;  // contents listed per index read
  size_t hashed = 0;
  uint64_t bytes = 0;
  std::string after;  // one pass over the unhashed list per call
  while (bytes < max_bytes) {
    QCLOUD_ASSIGN_OR_RETURN(std::vector<StoredContent> todo, impl_->index->UnhashedContents(kBatch, after));
    if (todo.empty()) break;
    for (const StoredContent& c : todo) {
      if (bytes >= max_bytes) break;
      after = c.key;
      auto sha = impl_->HashChunks(c.chunks);
      if (!sha.ok() && sha.status() == qcloud::Errc::kNotFound) continue;  // deleted meanwhile
      if (!sha.ok() && sha.status() == qcloud::Errc::kCorruption) {
        // Damaged (reported on every read of its objects): it can match
        // nothing; the others behind it are hashed all the same.
        impl_->Log(LogLevel::kWarning, sha.status().WithContext("hashing stored content").ToString());
        continue;
      }
      QCLOUD_RETURN_IF_ERROR(sha.status());
      QCLOUD_RETURN_IF_ERROR(impl_->index->SetContentSha256(c.key, *sha));
      ++hashed;
      bytes += c.size;
    }
  }
  return hashed;
}

Result<Buffer> ObjectStore::Get(std::string_view bucket, std::string_view key, uint64_t offset,
                                std::optional<uint64_t> length) {
  QCLOUD_ASSIGN_OR_RETURN(ObjectMeta meta, impl_->index->GetObject(bucket, key));
  return Read(meta, offset, length.value_or(meta.size));
}

Result<Buffer> ObjectStore::Read(const ObjectMeta& meta, uint64_t offset, uint64_t length) {
  if (offset > meta.size || (offset == meta.size && meta.size > 0)) {
    return Status(qcloud::Errc::kOutOfRange, fmt::format("offset {} past the object's {} bytes", offset, meta.size));
  }
  const uint64_t end = offset + std::min(length, meta.size - offset);
  Buffer out(static_cast<size_t>(end - offset));
  uint64_t at = 0;  // the current chunk's first byte in the object
  for (const ChunkRef& c : meta.chunks) {
    const uint64_t chunk_end = at + c.length;
    if (chunk_end > offset && at < end) {
      if (c.store >= impl_->disks.size()) return Corruption("object names a disk that is not configured");
      const uint64_t from = std::max(offset, at) - at;
      const uint64_t to = std::min(end, chunk_end) - at;
      ChunkCache& cache = *impl_->cache;
      const bool cacheable = cache.Cacheable(c.length);
      if (!cacheable || !cache.Get(c.store, c.chunk.value, from, to, out)) {
        QCLOUD_ASSIGN_OR_RETURN(Buffer data, impl_->disks[c.store]->Read(c.chunk, c.length));
        if (data.size() != c.length) return Corruption("chunk length differs from the index");
        if (cacheable) cache.Put(c.store, c.chunk.value, data.readable());
        out.Append(data.readable().subview(static_cast<size_t>(from), static_cast<size_t>(to - from)));
      }
    }
    at = chunk_end;
    if (at >= end) break;
  }
  return out;
}

Status ObjectStore::Delete(std::string_view bucket, std::string_view key) {
  WriteOutcome out;
  QCLOUD_RETURN_IF_ERROR(impl_->index->DeleteObject(bucket, key, &out));
  impl_->Free(out.free_chunks);
  return Status::Ok();
}

Status ObjectStore::DeleteBucket(std::string_view bucket) {
  std::vector<ChunkRef> freed;
  QCLOUD_RETURN_IF_ERROR(impl_->index->DeleteBucket(bucket, &freed));
  impl_->Free(freed);
  return Status::Ok();
}

Result<ObjectMeta> ObjectStore::Copy(std::string_view src_bucket, std::string_view src_key,
                                     std::string_view dst_bucket, std::string_view dst_key,
                                     const PutOptions* replacement) {
  ObjectMeta given;
  if (replacement != nullptr) {
    given.content_type = replacement->content_type;
    given.user_metadata = replacement->user_metadata;
  }
  WriteOutcome out;
  auto copied = impl_->index->CopyObject(src_bucket, src_key, dst_bucket, dst_key,
                                         replacement != nullptr ? &given : nullptr, &out);
  if (copied.ok()) {
    impl_->Free(out.free_chunks);
    return copied;
  }
  if (!(copied.status() == qcloud::Errc::kNotSupported)) return copied.status();
  // A source whose chunks are its own: copy the bytes, a chunk at a time.
  QCLOUD_ASSIGN_OR_RETURN(ObjectMeta src, impl_->index->GetObject(src_bucket, src_key));
  PutOptions options{.content_type = src.content_type, .user_metadata = src.user_metadata};
  if (replacement != nullptr) options = *replacement;
  auto w = BeginPut();
  for (uint64_t at = 0; at < src.size; at += impl_->options.chunk_bytes) {
    QCLOUD_ASSIGN_OR_RETURN(Buffer piece, Read(src, at, impl_->options.chunk_bytes));
    QCLOUD_RETURN_IF_ERROR(w->Write(piece.readable()));
  }
  return w->Finish(dst_bucket, dst_key, options);
}

Result<std::string> ObjectStore::CreateUpload(std::string_view bucket, std::string_view key,
                                              std::string_view owner, const PutOptions& options) {
  UploadInfo info;
  info.bucket = std::string(bucket);
  info.key = std::string(key);
  info.owner = std::string(owner);
  info.content_type = options.content_type;
  info.user_metadata = options.user_metadata;
  return impl_->index->CreateUpload(info);
}

Result<ObjectMeta> ObjectStore::CompleteUpload(std::string_view upload_id,
                                               const std::vector<std::pair<uint32_t, std::string>>& parts,
                                               uint64_t min_part_bytes) {
  WriteOutcome out;
  QCLOUD_ASSIGN_OR_RETURN(ObjectMeta meta,
                          impl_->index->CompleteUpload(upload_id, parts, min_part_bytes, &out));
  impl_->Free(out.free_chunks);
  return meta;
}

Status ObjectStore::AbortUpload(std::string_view upload_id) {
  std::vector<ChunkRef> freed;
  QCLOUD_RETURN_IF_ERROR(impl_->index->AbortUpload(upload_id, &freed));
  impl_->Free(freed);
  return Status::Ok();
}

Result<size_t> ObjectStore::Maintain() {
  size_t total = 0;
  for (auto& d : impl_->disks) {
    QCLOUD_ASSIGN_OR_RETURN(size_t n, d->Compact());
    total += n;
  }
  return total;
}

ObjectStoreStats ObjectStore::Stats() const {
  ObjectStoreStats s;
  for (const auto& d : impl_->disks) {
    const ChxStats c = d->Stats();
    s.chunks += c.chunks;
    s.chunk_bytes += c.live_bytes;
  }
  s.collected_chunks = impl_->collected.load();
  s.free_errors = impl_->free_errors.load();
  s.cache_hits = impl_->cache->hits();
  s.cache_misses = impl_->cache->misses();
  s.cache_bytes = impl_->cache->bytes();
  return s;
}

}  // namespace qcloud::object
