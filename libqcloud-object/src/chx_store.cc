// ChxStore: volumes, the index, recovery at open and compaction. The format
// is in object/chx_format.h, the index in object/chunk_index.h.
//
// Locks. `append_mu` serialises everything that writes a volume: appends
// (the active volume's end), deletes (read header, rewrite it, forget the
// id) and compaction's moves, so a chunk is never moved and deleted at once.
// `mu` (shared) guards the index, the volume table and the byte counts;
// readers take it shared only to look a chunk up, then read without a lock
// through a shared_ptr to the volume's file, which outlives a compaction's
// removal of the file. Order: append_mu before mu.
//
// Recovery. A crash can leave: a torn tail (cut at open), a record written
// but not synced (gone with the tail, or intact: both fine), a delete
// rewritten but not synced (the chunk reappears, as for any unsynced
// operation), and a compaction cut short, i.e. the same id in an old and a
// newer volume. Open() resolves the last: any copy marked deleted means the
// chunk is deleted; otherwise the newest copy wins; and a volume that still
// holds superseded copies is compacted at once, so a stale copy can never
// come back after the newer one is deleted and compacted away.

#include "qcloud/object/chx_store.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_set>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "object/chunk_index.h"
#include "qcloud/core/check.h"
#include "object/chx_format.h"

namespace qcloud::object {

namespace {

using chx::kRecordHeaderSize;
using chx::kVolumeHeaderSize;
using chx::RecordHeader;
using chx::RecordSpan;
using chx::kDirectAlign;
using chx::RecordType;

constexpr uint64_t kMinVolumeBytes = 64 * 1024;
constexpr uint64_t kMaxVolumeBytes = ChunkLocation::kMaxOffset + 8;  // 32 GiB
constexpr uint32_t kMaxSequence = 0xffffffffu;
// Recovery and compaction read volumes in windows of this size.
constexpr size_t kScanWindow = 1 << 20;

std::string VolumeName(uint32_t id) { return fmt::format("vol-{:08}.chx", id); }

// "vol-00000042.chx" -> 42.
std::optional<uint32_t> ParseVolumeName(std::string_view name) {
  constexpr std::string_view kPrefix = "vol-", kSuffix = ".chx";
  if (name.size() != kPrefix.size() + 8 + kSuffix.size() || !name.starts_with(kPrefix) ||
      !name.ends_with(kSuffix)) {
    return std::nullopt;
  }
  uint32_t id = 0;
  const char* b = name.data() + kPrefix.size();
  auto [end, ec] = std::from_chars(b, b + 8, id);
  if (ec != std::errc() || end != b + 8 || id == 0) return std::nullopt;
  return id;
}

struct Volume {
  uint32_t id = 0;
  std::string path;
  std::shared_ptr<File> file;
  std::shared_ptr<File> direct;  // the same file opened O_DIRECT, for aligned appends (lazily)
  // Append offset, the file's valid size: written under append_mu, read by
  // Stats() and Compact() under mu.
  std::atomic<uint64_t> end{kVolumeHeaderSize};
  uint64_t dead_bytes = 0;           // record spans that are not live
  bool sealed = false;
};

// Reads a volume front to back in windows; At() gives a view of [off, off+n)
// or an empty view past the end.
class VolumeReader {
 public:
  VolumeReader(File& file, uint64_t size) : file_(file), size_(size) {}
  Result<ByteView> At(uint64_t off, size_t n) {
    if (off + n > size_) return ByteView();
    if (off < start_ || off + n > start_ + buf_.size()) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(std::max(n, kScanWindow), size_ - off));
      buf_.resize(want);
      QCLOUD_ASSIGN_OR_RETURN(size_t got,
                              file_.ReadAt(off, {reinterpret_cast<std::byte*>(buf_.data()), want}));
      buf_.resize(got);
      start_ = off;
      if (got < n) return ByteView();
    }
    return ByteView(buf_.data() + (off - start_), n);
  }

 private:
  File& file_;
  uint64_t size_;
  uint64_t start_ = 0;
  std::string buf_;
};

struct ScanResult {
  uint64_t end = kVolumeHeaderSize;  // after the last good record
  uint64_t skipped = 0;              // damaged bytes between good records
};

// Calls fn(offset, header) for every record of a volume of `size` bytes.
// A region that does not parse is skipped up to the next good header; what
// follows the last good record is the torn tail (ScanResult::end).
template <typename Fn>
Result<ScanResult> ScanVolume(File& file, uint64_t size, uint32_t max_length, Fn&& fn) {
  VolumeReader reader(file, size);
  ScanResult r;
  uint64_t pos = kVolumeHeaderSize;
  auto good_at = [&](uint64_t off) -> Result<std::optional<RecordHeader>> {
    QCLOUD_ASSIGN_OR_RETURN(ByteView v, reader.At(off, kRecordHeaderSize));
    if (v.empty()) return std::optional<RecordHeader>();
    auto h = chx::DecodeRecordHeader(v, max_length);
    if (h && off + RecordSpan(*h) > size) h.reset();  // cut short: torn
    return h;
  };
  while (pos + kRecordHeaderSize <= size) {
    QCLOUD_ASSIGN_OR_RETURN(auto h, good_at(pos));
    if (!h) {
      uint64_t next = pos + chx::kRecordAlign;
      for (; next + kRecordHeaderSize <= size; next += chx::kRecordAlign) {
        QCLOUD_ASSIGN_OR_RETURN(h, good_at(next));
        if (h) break;
      }
      if (!h) break;  // nothing good after pos: a torn tail
      r.skipped += next - pos;
      pos = next;
    }
    fn(pos, *h);
    pos += RecordSpan(*h);
    r.end = pos;
  }
  return r;
}

}  // namespace

struct ChxStore::Impl {
  ChxOptions options;
  Env* env = nullptr;
  std::unique_ptr<Env> owned_env;
  Logger* logger = nullptr;
  Clock* clock = nullptr;

  mutable std::shared_mutex mu;
  ChunkIndex index;                                     // guarded by mu
  std::map<uint32_t, std::shared_ptr<Volume>> volumes;  // guarded by mu

  std::mutex append_mu;
  // Held across a whole SyncAll: a caller whose writes another caller took
  // into its fsync waits for that fsync instead of returning at once.
  std::mutex sync_mu;
  std::shared_ptr<Volume> active;   // guarded by append_mu
  uint32_t next_seq = 1;            // guarded by append_mu
  std::set<std::shared_ptr<Volume>> unsynced;  // guarded by append_mu
  bool dir_unsynced = false;        // guarded by append_mu

  std::mutex compact_mu;  // one Compact() at a time

  std::atomic<uint64_t> live_bytes{0};
  std::atomic<uint64_t> corrupt_reads{0};
  std::atomic<uint64_t> compactions{0};
  uint64_t recovered = 0, truncated = 0, skipped = 0;  // set by Open

  void Log(LogLevel level, const std::string& line) const {
    if (logger->Enabled(level)) logger->Log(level, line);
  }
  std::string PathOf(uint32_t id) const { return JoinPath(options.dir, VolumeName(id)); }

  Status Recover();
  Result<std::shared_ptr<Volume>> CreateVolume(uint32_t id);
  Status RollVolume();  // append_mu held
  // Appends a whole record (header + data + padding) to the active volume;
  // returns its offset there. append_mu held.
  Result<uint64_t> WriteRecord(ByteView record);
  // An aligned record (a multiple of 4096 bytes, in a 4096-aligned buffer):
  // a padding record first if the volume's end is not aligned, then the
  // record with O_DIRECT (buffered where that is refused).
  Result<uint64_t> WriteAlignedRecord(ByteView record);
  bool direct_refused = false;  // the file system said no to O_DIRECT once
  Status MarkDeleted(Volume& v, uint64_t offset, RecordHeader h);
  Status CompactVolume(std::shared_ptr<Volume> v);  // by value: it erases the table's copy
  Status SyncAll();
  // Where the chunk is, and its volume (kept open for the caller's read).
  Status Locate(ChunkId id, ChunkLocation* loc, std::shared_ptr<Volume>* v) const {
    std::shared_lock lock(mu);
    auto packed = index.Find(id.value);
    if (!packed) return NotFound(fmt::format("no chunk {:#x}", id.value));
    *loc = ChunkLocation::Unpack(*packed);
    *v = volumes.at(loc->volume);
    return Status::Ok();
  }
};

ChxStore::ChxStore(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ChxStore::~ChxStore() = default;

Result<std::unique_ptr<ChxStore>> ChxStore::Open(const ChxOptions& options) {
  if (options.dir.empty()) return InvalidArgument("ChxOptions::dir is empty");
  if (options.volume_bytes < kMinVolumeBytes || options.volume_bytes > kMaxVolumeBytes) {
    return InvalidArgument("volume_bytes must be 64 KiB..32 GiB");
  }
  if (options.max_chunk_bytes == 0 ||
      RecordSpan(options.max_chunk_bytes) > ChunkLocation::kMaxSpan) {
    return InvalidArgument("max_chunk_bytes must be 1..256 MiB - 4 KiB");
  }
  if (!(options.compact_dead_ratio > 0 && options.compact_dead_ratio <= 1)) {
    return InvalidArgument("compact_dead_ratio must be in (0, 1]");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->logger = options.logger != nullptr ? options.logger : &DiscardLogger();
  impl->clock = options.clock != nullptr ? options.clock : &RealClock();
  impl->env = options.env;
  if (impl->env == nullptr) {
    QCLOUD_ASSIGN_OR_RETURN(impl->owned_env, OpenPosixEnv());
    impl->env = impl->owned_env.get();
  }
  QCLOUD_RETURN_IF_ERROR(impl->env->CreateDirs(options.dir));
  QCLOUD_RETURN_IF_ERROR(impl->Recover());
  return std::unique_ptr<ChxStore>(new ChxStore(std::move(impl)));
}

namespace {
Status WriteVolumeHeader(File& f, uint32_t id, const Clock& clock) {
  const auto created = std::chrono::duration_cast<std::chrono::seconds>(clock.WallNow().time_since_epoch());
  std::byte header[kVolumeHeaderSize];
  chx::EncodeVolumeHeader({.volume_id = id, .created_unix = static_cast<uint64_t>(created.count())}, header);
  return f.WriteAt(0, ByteView(header, sizeof header));
}
}  // namespace

Result<std::shared_ptr<Volume>> ChxStore::Impl::CreateVolume(uint32_t id) {
  auto v = std::make_shared<Volume>();
  v->id = id;
  v->path = PathOf(id);
  QCLOUD_ASSIGN_OR_RETURN(auto f, env->OpenFile(v->path, OpenMode::kCreateExclusive));
  QCLOUD_RETURN_IF_ERROR(WriteVolumeHeader(*f, id, *clock));
  v->file = std::move(f);
  return v;
}

Status ChxStore::Impl::RollVolume() {
  if (active->id >= ChunkLocation::kMaxVolume) {
    return Status(Errc::kResourceExhausted, "CHX store: all 65535 volume ids are used");
  }
  QCLOUD_ASSIGN_OR_RETURN(auto v, CreateVolume(active->id + 1));
  {
    std::unique_lock lock(mu);
    active->sealed = true;
    volumes[v->id] = v;
  }
  active->direct.reset();   // sealed: no more appends, one descriptor is enough
  unsynced.insert(active);  // its last appends
  unsynced.insert(v);
  dir_unsynced = true;
  active = std::move(v);
  next_seq = 1;
  return Status::Ok();
}

Status ChxStore::Impl::Recover() {
  QCLOUD_ASSIGN_OR_RETURN(auto names, env->ListDir(options.dir));
  std::vector<uint32_t> ids;
  for (const auto& n : names) {
    if (auto id = ParseVolumeName(n)) ids.push_back(*id);
  }
  std::sort(ids.begin(), ids.end());
  std::unordered_set<uint64_t> deleted;           // ids with a copy marked deleted
  std::map<uint32_t, uint64_t> live_span;         // per volume
  std::set<uint32_t> superseded;                  // volumes holding older copies
  uint32_t max_seq_newest = 0;
  for (uint32_t id : ids) {
    auto v = std::make_shared<Volume>();
    v->id = id;
    v->path = PathOf(id);
    QCLOUD_ASSIGN_OR_RETURN(auto f, env->OpenFile(v->path, OpenMode::kReadWrite));
    QCLOUD_ASSIGN_OR_RETURN(uint64_t size, f->Size());
    std::byte header[kVolumeHeaderSize];
    QCLOUD_ASSIGN_OR_RETURN(size_t got, f->ReadAt(0, {header, sizeof header}));
    auto vh = chx::DecodeVolumeHeader(ByteView(header, got));
    if (!vh) {
      if (size < kVolumeHeaderSize && id == ids.back()) {
        // Created, then a crash before its header was written: start over.
        QCLOUD_RETURN_IF_ERROR(f->Truncate(0));
        QCLOUD_RETURN_IF_ERROR(WriteVolumeHeader(*f, id, *clock));
        truncated += size;
        size = kVolumeHeaderSize;
        vh = chx::VolumeHeader{.volume_id = id};
      } else {
        return Corruption(fmt::format("{}: damaged volume header", v->path));
      }
    }
    if (vh->version != chx::kFormatVersion) {
      return Corruption(fmt::format("{}: unknown CHX format version {}", v->path, vh->version));
    }
    if (vh->volume_id != id) {
      return Corruption(fmt::format("{}: header says volume {}", v->path, vh->volume_id));
    }
    QCLOUD_ASSIGN_OR_RETURN(
        ScanResult scan,
        ScanVolume(*f, size, options.max_chunk_bytes, [&](uint64_t off, const RecordHeader& h) {
          if (static_cast<uint32_t>(h.id >> 32) == ids.back()) {
            max_seq_newest = std::max(max_seq_newest, static_cast<uint32_t>(h.id));
          }
          if (h.type == RecordType::kPadding) return;  // dead space, by design
          if (h.type == RecordType::kDeleted) {
            deleted.insert(h.id);
            return;
          }
          const uint64_t span = RecordSpan(h);
          if (auto old = index.Find(h.id)) {  // a compaction was cut short
            const ChunkLocation loc = ChunkLocation::Unpack(*old);
            superseded.insert(loc.volume);
            live_span[loc.volume] -= span;  // the same record, copied whole
            live_bytes -= h.length;
          }
          index.Put(h.id, ChunkLocation::Pack(id, off, span));
          live_span[id] += span;
          live_bytes += h.length;
        }));
    if (scan.end < size) {
      Log(LogLevel::kWarning, fmt::format("{}: cutting a torn tail of {} bytes at {}", v->path,
                                          size - scan.end, scan.end));
      QCLOUD_RETURN_IF_ERROR(f->Truncate(scan.end));
      truncated += size - scan.end;
    }
    if (scan.skipped > 0) {
      Log(LogLevel::kError, fmt::format("{}: skipped {} damaged bytes", v->path, scan.skipped));
      skipped += scan.skipped;
    }
    v->end = scan.end;
    v->file = std::move(f);
    v->sealed = id != ids.back();
    volumes[id] = v;
  }
  // Any copy marked deleted deletes the chunk; its other copies are dead.
  for (uint64_t id : deleted) {
    auto packed = index.Find(id);
    if (!packed) continue;
    const ChunkLocation loc = ChunkLocation::Unpack(*packed);
    auto& v = *volumes[loc.volume];
    std::byte hb[kRecordHeaderSize];
    QCLOUD_ASSIGN_OR_RETURN(size_t got, v.file->ReadAt(loc.offset, {hb, sizeof hb}));
    auto h = chx::DecodeRecordHeader(ByteView(hb, got), options.max_chunk_bytes);
    if (h) {
      QCLOUD_RETURN_IF_ERROR(MarkDeleted(v, loc.offset, *h));
      live_span[loc.volume] -= RecordSpan(*h);
      live_bytes -= h->length;
    }
    index.Erase(id);
  }
  recovered = index.size();
  for (auto& [id, v] : volumes) {
    v->dead_bytes = v->end - kVolumeHeaderSize - live_span[id];
  }
  if (volumes.empty()) {
    QCLOUD_ASSIGN_OR_RETURN(auto v, CreateVolume(1));
    QCLOUD_RETURN_IF_ERROR(v->file->Sync());
    QCLOUD_RETURN_IF_ERROR(env->SyncDir(options.dir));
    volumes[1] = v;
  }
  active = volumes.rbegin()->second;
  next_seq = max_seq_newest + 1;
  if (max_seq_newest == kMaxSequence) QCLOUD_RETURN_IF_ERROR(RollVolume());
  for (uint32_t id : superseded) {
    // Finish the compaction a crash interrupted (the active volume never
    // holds superseded copies: compaction writes into it, never from it).
    auto it = volumes.find(id);
    if (it != volumes.end() && it->second != active) {
      Log(LogLevel::kInfo, fmt::format("{}: finishing an interrupted compaction", it->second->path));
      QCLOUD_RETURN_IF_ERROR(CompactVolume(it->second));
    }
  }
  Log(LogLevel::kInfo, fmt::format("CHX {}: {} volumes, {} chunks", options.dir, volumes.size(),
                                   recovered));
  return Status::Ok();
}

Result<uint64_t> ChxStore::Impl::WriteRecord(ByteView record) {
  if (active->end + record.size() > options.volume_bytes && active->end > kVolumeHeaderSize) {
    QCLOUD_RETURN_IF_ERROR(RollVolume());
  }
  const uint64_t offset = active->end;
  QCLOUD_RETURN_IF_ERROR(active->file->WriteAt(offset, record));
  active->end += record.size();
  unsynced.insert(active);
  return offset;
}

Result<uint64_t> ChxStore::Impl::WriteAlignedRecord(ByteView record) {
  uint64_t pad = (kDirectAlign - active->end % kDirectAlign) % kDirectAlign;
  if (pad != 0 && pad < kRecordHeaderSize) pad += kDirectAlign;
  if (active->end + pad + record.size() > options.volume_bytes && active->end > kVolumeHeaderSize) {
    QCLOUD_RETURN_IF_ERROR(RollVolume());
    pad = (kDirectAlign - active->end % kDirectAlign) % kDirectAlign;
    if (pad != 0 && pad < kRecordHeaderSize) pad += kDirectAlign;
  }
  if (pad != 0) {
    std::string padding(pad, '\0');
    chx::EncodeRecordHeader({.type = RecordType::kPadding,
                             .id = 0,
                             .length = static_cast<uint32_t>(pad - kRecordHeaderSize),
                             .data_sum = chx::DataSum(ByteView(std::string_view(padding).substr(kRecordHeaderSize)))},
                            reinterpret_cast<std::byte*>(padding.data()));
    QCLOUD_RETURN_IF_ERROR(active->file->WriteAt(active->end, ByteView(padding)));
    active->end += pad;
    std::unique_lock lock(mu);
    active->dead_bytes += pad;  // as recovery counts it
  }
  const uint64_t offset = active->end;
  if (!active->direct && !direct_refused) {
    auto direct = env->OpenFile(active->path, OpenMode::kReadWriteDirect);
    if (direct.ok()) {
      active->direct = std::move(*direct);
    } else {
      direct_refused = true;
      Log(LogLevel::kInfo, fmt::format("{}: O_DIRECT refused ({}); large chunks go through the page cache",
                                       active->path, direct.status().message()));
    }
  }
  Status written = active->direct ? active->direct->WriteAt(offset, record) : Status(Errc::kNotSupported, "");
  if (!written.ok() && active->direct && written == Errc::kInvalidArgument) {
    // EINVAL from an O_DIRECT write: the device wants another alignment.
    direct_refused = true;
    active->direct.reset();
  }
  if (!active->direct) written = active->file->WriteAt(offset, record);
  QCLOUD_RETURN_IF_ERROR(written);
  active->end += record.size();
  unsynced.insert(active);
  return offset;
}

ChunkBuffer::ChunkBuffer(size_t capacity) : capacity_(capacity) {
  const uint64_t span = chx::AlignedSpan(capacity);  // >= RecordSpan(capacity)
  record_ = static_cast<std::byte*>(std::aligned_alloc(kDirectAlign, span));
  QCLOUD_CHECK(record_ != nullptr);
}
ChunkBuffer::~ChunkBuffer() { std::free(record_); }
ChunkBuffer::ChunkBuffer(ChunkBuffer&& other) noexcept
    : record_(std::exchange(other.record_, nullptr)),
      capacity_(std::exchange(other.capacity_, 0)),
      size_(std::exchange(other.size_, 0)) {}
ChunkBuffer& ChunkBuffer::operator=(ChunkBuffer&& other) noexcept {
  if (this != &other) {
    std::free(record_);
    record_ = std::exchange(other.record_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}
ByteView ChunkBuffer::data() const noexcept {
  return record_ == nullptr ? ByteView() : ByteView(record_ + kRecordHeaderSize, size_);
}
void ChunkBuffer::Append(ByteView bytes) {
  QCLOUD_CHECK(bytes.size() <= capacity_ - size_);
  if (bytes.empty()) return;
  std::memcpy(record_ + kRecordHeaderSize + size_, bytes.data(), bytes.size());
  size_ += bytes.size();
}

Result<ChunkId> ChxStore::Append(ByteView data) {
  if (data.size() > impl_->options.max_chunk_bytes) {
    return Status(Errc::kTooLarge, fmt::format("chunk of {} bytes > max_chunk_bytes {}",
                                               data.size(), impl_->options.max_chunk_bytes));
  }
  ChunkBuffer chunk(data.size());
  chunk.Append(data);
  return Append(chunk);
}

Result<ChunkId> ChxStore::Append(ChunkBuffer& chunk) {
  Impl& im = *impl_;
  const ByteView data = chunk.data();
  if (data.size() > im.options.max_chunk_bytes) {
    return Status(Errc::kTooLarge, fmt::format("chunk of {} bytes > max_chunk_bytes {}",
                                               data.size(), im.options.max_chunk_bytes));
  }
  // Everything but the id is prepared before the lock: hashing a chunk of
  // megabytes must not serialise the other appenders.
  const bool aligned = im.options.direct_io_min != 0 && data.size() >= im.options.direct_io_min;
  const uint64_t span = aligned ? chx::AlignedSpan(data.size()) : RecordSpan(data.size());
  const uint64_t sum = chx::DataSum(data);
  std::byte* bytes = chunk.record_;
  std::memset(bytes + kRecordHeaderSize + data.size(), 0, span - kRecordHeaderSize - data.size());
  std::lock_guard lock(im.append_mu);
  if (im.next_seq == kMaxSequence) QCLOUD_RETURN_IF_ERROR(im.RollVolume());
  // Roll before taking the id, which names the volume the record lands in
  // (the writer then finds room and does not roll again).
  const uint64_t room = span + (aligned ? 2 * kDirectAlign : 0);
  if (im.active->end + room > im.options.volume_bytes && im.active->end > kVolumeHeaderSize) {
    QCLOUD_RETURN_IF_ERROR(im.RollVolume());
  }
  const ChunkId id{(uint64_t{im.active->id} << 32) | im.next_seq};
  chx::EncodeRecordHeader({.type = RecordType::kChunk,
                           .aligned = aligned,
                           .id = id.value,
                           .length = static_cast<uint32_t>(data.size()),
                           .data_sum = sum},
                          bytes);
  const ByteView record(bytes, span);
  QCLOUD_ASSIGN_OR_RETURN(uint64_t offset, aligned ? im.WriteAlignedRecord(record) : im.WriteRecord(record));
  ++im.next_seq;
  {
    std::unique_lock lock2(im.mu);
    im.index.Put(id.value, ChunkLocation::Pack(im.active->id, offset, span));
  }
  im.live_bytes += data.size();
  return id;
}

Status ChxStore::Impl::SyncAll() {
  std::lock_guard sync_lock(sync_mu);
  std::set<std::shared_ptr<Volume>> todo;
  bool dir = false;
  {
    std::lock_guard lock(append_mu);
    todo.swap(unsynced);
    std::swap(dir, dir_unsynced);
  }
  Status first;
  for (const auto& v : todo) {
    if (Status s = v->file->Sync(); !s.ok() && first.ok()) first = s;
  }
  if (dir) {
    if (Status s = env->SyncDir(options.dir); !s.ok() && first.ok()) first = s;
  }
  if (!first.ok()) {  // try again next time
    std::lock_guard lock(append_mu);
    unsynced.insert(todo.begin(), todo.end());
    dir_unsynced = dir_unsynced || dir;
  }
  return first;
}

Status ChxStore::Sync() { return impl_->SyncAll(); }

Result<Buffer> ChxStore::Read(ChunkId id) { return Read(id, UINT64_MAX); }

Result<Buffer> ChxStore::Read(ChunkId id, uint64_t length) {
  Impl& im = *impl_;
  ChunkLocation loc;
  std::shared_ptr<Volume> v;
  QCLOUD_RETURN_IF_ERROR(im.Locate(id, &loc, &v));
  const size_t want = length < loc.read_span - kRecordHeaderSize
                          ? static_cast<size_t>(kRecordHeaderSize + length)
                          : static_cast<size_t>(loc.read_span);
  Buffer buf(want);
  auto dst = buf.Prepare(want);
  QCLOUD_ASSIGN_OR_RETURN(size_t got, v->file->ReadAt(loc.offset, dst.first(want)));
  buf.Commit(got);
  auto h = chx::DecodeRecordHeader(buf.readable(), im.options.max_chunk_bytes);
  auto corrupt = [&](std::string_view what) {
    im.corrupt_reads++;
    const std::string msg =
        fmt::format("chunk {:#x} in {} at {}: {}", id.value, v->path, loc.offset, what);
    im.Log(LogLevel::kError, msg);
    return Corruption(msg);
  };
  if (!h || h->id != id.value) return corrupt("record header damaged");
  if (h->type == RecordType::kDeleted) return NotFound(fmt::format("chunk {:#x} deleted", id.value));
  if (got < kRecordHeaderSize + h->length) return corrupt("record cut short");
  buf.Consume(kRecordHeaderSize);
  buf.KeepFirst(h->length);
  if (chx::DataSum(buf.readable()) != h->data_sum) return corrupt("data checksum mismatch");
  return buf;
}

Status ChxStore::Impl::MarkDeleted(Volume& v, uint64_t offset, RecordHeader h) {
  h.type = RecordType::kDeleted;
  std::byte hb[kRecordHeaderSize];
  chx::EncodeRecordHeader(h, hb);
  return v.file->WriteAt(offset, ByteView(hb, sizeof hb));
}

Status ChxStore::Delete(ChunkId id) {
  Impl& im = *impl_;
  std::lock_guard lock(im.append_mu);  // no compaction moves it meanwhile
  ChunkLocation loc;
  std::shared_ptr<Volume> v;
  QCLOUD_RETURN_IF_ERROR(im.Locate(id, &loc, &v));
  std::byte hb[kRecordHeaderSize];
  QCLOUD_ASSIGN_OR_RETURN(size_t got, v->file->ReadAt(loc.offset, {hb, sizeof hb}));
  auto h = chx::DecodeRecordHeader(ByteView(hb, got), im.options.max_chunk_bytes);
  if (!h || h->id != id.value) {
    return Corruption(fmt::format("chunk {:#x} in {} at {}: record header damaged", id.value,
                                  v->path, loc.offset));
  }
  QCLOUD_RETURN_IF_ERROR(im.MarkDeleted(*v, loc.offset, *h));
  im.unsynced.insert(v);
  {
    std::unique_lock wlock(im.mu);
    im.index.Erase(id.value);
    v->dead_bytes += RecordSpan(*h);
  }
  im.live_bytes -= h->length;
  return Status::Ok();
}

Status ChxStore::Impl::CompactVolume(std::shared_ptr<Volume> v) {
  // Live records are those the index points at in this volume, found in
  // memory (a volume of overwritten data is not read at all). Each moves
  // under append_mu; a chunk deleted between the listing and its move is
  // marked deleted in its new place too.
  std::vector<std::pair<uint64_t, RecordHeader>> live;
  {
    std::vector<std::pair<uint64_t, uint64_t>> where;  // offset, id
    {
      std::shared_lock lock(mu);
      index.ForEach([&](uint64_t id, uint64_t packed) {
        const ChunkLocation loc = ChunkLocation::Unpack(packed);
        if (loc.volume == v->id) where.emplace_back(loc.offset, id);
      });
    }
    std::sort(where.begin(), where.end());  // read the volume in order
    std::byte header[kRecordHeaderSize];
    for (const auto& [off, id] : where) {
      QCLOUD_ASSIGN_OR_RETURN(size_t got, v->file->ReadAt(off, {header, sizeof header}));
      auto h = got == sizeof header ? chx::DecodeRecordHeader(ByteView(header, sizeof header), options.max_chunk_bytes)
                                    : std::nullopt;
      if (!h || h->type != RecordType::kChunk || h->id != id) {
        return Corruption(fmt::format("{}: no record of chunk {} at {}", v->path, id, off));
      }
      live.emplace_back(off, *h);
    }
  }
  std::string record;
  for (const auto& [off, h] : live) {
    const uint64_t span = RecordSpan(h);
    record.resize(span);
    QCLOUD_ASSIGN_OR_RETURN(size_t got,
                            v->file->ReadAt(off, {reinterpret_cast<std::byte*>(record.data()), span}));
    if (got < span) return Corruption(fmt::format("{}: record at {} cut short", v->path, off));
    std::lock_guard lock(append_mu);
    QCLOUD_ASSIGN_OR_RETURN(uint64_t moved, WriteRecord(ByteView(record)));
    std::unique_lock wlock(mu);
    auto packed = index.Find(h.id);
    if (packed && ChunkLocation::Unpack(*packed).volume == v->id &&
        ChunkLocation::Unpack(*packed).offset == off) {
      index.Put(h.id, ChunkLocation::Pack(active->id, moved, span));
    } else {  // deleted since the scan
      QCLOUD_RETURN_IF_ERROR(MarkDeleted(*active, moved, h));
      active->dead_bytes += span;
    }
  }
  // The copies must be durable before the only other copy goes.
  QCLOUD_RETURN_IF_ERROR(SyncAll());
  {
    std::unique_lock lock(mu);
    volumes.erase(v->id);
  }
  QCLOUD_RETURN_IF_ERROR(env->RemoveFile(v->path));
  QCLOUD_RETURN_IF_ERROR(env->SyncDir(options.dir));
  compactions++;
  Log(LogLevel::kInfo, fmt::format("{}: compacted, {} live chunks moved", v->path, live.size()));
  return Status::Ok();
}

Result<size_t> ChxStore::Compact() {
  Impl& im = *impl_;
  std::lock_guard lock(im.compact_mu);
  std::vector<std::shared_ptr<Volume>> todo;
  {
    std::shared_lock rlock(im.mu);
    for (const auto& [id, v] : im.volumes) {
      const uint64_t used = v->end - kVolumeHeaderSize;
      if (v->sealed && used > 0 &&
          static_cast<double>(v->dead_bytes) >= im.options.compact_dead_ratio * static_cast<double>(used)) {
        todo.push_back(v);
      }
    }
  }
  for (const auto& v : todo) QCLOUD_RETURN_IF_ERROR(im.CompactVolume(v));
  return todo.size();
}

std::vector<ChunkId> ChxStore::ListChunks() const {
  std::shared_lock lock(impl_->mu);
  std::vector<ChunkId> ids;
  ids.reserve(impl_->index.size());
  impl_->index.ForEach([&](uint64_t id, uint64_t) { ids.push_back(ChunkId{id}); });
  return ids;
}

ChxStats ChxStore::Stats() const {
  const Impl& im = *impl_;
  ChxStats s;
  std::shared_lock lock(im.mu);
  s.chunks = im.index.size();
  s.index_bytes = im.index.memory_bytes();
  s.volumes = im.volumes.size();
  for (const auto& [id, v] : im.volumes) {
    s.dead_bytes += v->dead_bytes;
    s.disk_bytes += v->end;
  }
  s.live_bytes = im.live_bytes.load();
  s.corrupt_reads = im.corrupt_reads.load();
  s.compactions = im.compactions.load();
  s.recovered_chunks = im.recovered;
  s.truncated_bytes = im.truncated;
  s.skipped_bytes = im.skipped;
  return s;
}

}  // namespace qcloud::object
