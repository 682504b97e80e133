#include "kv/cold_tier.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "qcloud/core/check.h"
#include "qcloud/core/compress.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/status.h"

namespace qcloud::kv {

namespace {

constexpr char kMagic[8] = {'Q', 'C', 'K', 'V', 'S', 'E', 'G', '1'};
constexpr uint32_t kVersion = 1;
constexpr size_t kSegmentHeader = 32;
constexpr size_t kFixed = 56;  // checksum .. value lengths
constexpr uint8_t kItem = 1;
constexpr uint8_t kTombstone = 2;
constexpr uint8_t kZstd = 1;
constexpr size_t kMaxRecord = size_t{1} << 31;

uint64_t Loc(uint64_t seg, uint64_t off) { return (seg << 32) | off; }
uint64_t LocSeg(uint64_t loc) { return loc >> 32; }
uint64_t LocOff(uint64_t loc) { return loc & 0xffffffffu; }

struct Record {
  uint8_t type = 0;
  uint8_t coding = 0;
  std::string_view key;
  uint32_t flags = 0;
  uint64_t seq = 0;
  uint64_t cas = 0;
  int64_t exptime = 0;
  int64_t atime = 0;
  std::string_view stored;  // value as stored (maybe compressed)
  uint32_t raw_len = 0;
  size_t size = 0;  // whole record
};

// Parses the record at the front of `in`; nullopt when incomplete or corrupt.
std::optional<Record> Parse(ByteView in) {
  if (in.size() < kFixed) return std::nullopt;
  const std::byte* p = in.data();
  const uint32_t checksum = DecodeFixed32(p);
  const uint32_t length = DecodeFixed32(p + 4);
  if (length < kFixed - 8 || length > kMaxRecord || in.size() - 8 < length) return std::nullopt;
  if (static_cast<uint32_t>(Xxh3_64(ByteView(p + 8, length))) != checksum) return std::nullopt;
  Record r;
  r.type = static_cast<uint8_t>(p[8]);
  r.coding = static_cast<uint8_t>(p[9]);
  const size_t klen = static_cast<uint8_t>(p[10]);
  r.flags = DecodeFixed32(p + 12);
  r.seq = DecodeFixed64(p + 16);
  r.cas = DecodeFixed64(p + 24);
  r.exptime = static_cast<int64_t>(DecodeFixed64(p + 32));
  r.atime = static_cast<int64_t>(DecodeFixed64(p + 40));
  const uint32_t stored_len = DecodeFixed32(p + 48);
  r.raw_len = DecodeFixed32(p + 52);
  if (size_t{kFixed} + klen + stored_len != size_t{length} + 8) return std::nullopt;
  if (r.type != kItem && r.type != kTombstone) return std::nullopt;
  r.key = std::string_view(reinterpret_cast<const char*>(p + kFixed), klen);
  r.stored = std::string_view(reinterpret_cast<const char*>(p + kFixed + klen), stored_len);
  r.size = size_t{length} + 8;
  return r;
}

void Encode(Buffer& out, uint8_t type, uint8_t coding, std::string_view key, uint32_t flags,
            uint64_t seq, uint64_t cas, int64_t exptime, int64_t atime, std::string_view stored,
            uint32_t raw_len) {
  const size_t total = kFixed + key.size() + stored.size();
  std::byte* p = out.Prepare(total).data();
  EncodeFixed32(p + 4, static_cast<uint32_t>(total - 8));
  p[8] = std::byte{type};
  p[9] = std::byte{coding};
  p[10] = std::byte(static_cast<uint8_t>(key.size()));
  p[11] = std::byte{0};
  EncodeFixed32(p + 12, flags);
  EncodeFixed64(p + 16, seq);
  EncodeFixed64(p + 24, cas);
  EncodeFixed64(p + 32, static_cast<uint64_t>(exptime));
  EncodeFixed64(p + 40, static_cast<uint64_t>(atime));
  EncodeFixed32(p + 48, static_cast<uint32_t>(stored.size()));
  EncodeFixed32(p + 52, raw_len);
  std::memcpy(p + kFixed, key.data(), key.size());
  if (!stored.empty()) std::memcpy(p + kFixed + key.size(), stored.data(), stored.size());
  EncodeFixed32(p, static_cast<uint32_t>(Xxh3_64(ByteView(p + 8, total - 8))));
  out.Commit(total);
}

uint64_t FixHash(uint64_t h) { return h == 0 ? 1 : h; }

// The item a parsed record holds, its value decompressed.
Result<ColdItem> ItemOf(const Record& rec, uint64_t location) {
  ColdItem item;
  item.flags = rec.flags;
  item.cas = rec.cas;
  item.exptime = rec.exptime;
  item.atime = rec.atime;
  item.location = location;
  if ((rec.coding & kZstd) != 0) {
    QCLOUD_ASSIGN_OR_RETURN(Buffer raw, ZstdDecompress(ByteView(rec.stored), rec.raw_len));
    if (raw.size() != rec.raw_len) return Corruption("cold value length");
    item.value = raw.readable().ToString();
  } else {
    item.value = std::string(rec.stored);
  }
  return item;
}

}  // namespace

std::string ColdTier::SegmentPath(uint64_t id) const {
  char name[32];
  std::snprintf(name, sizeof name, "seg-%016" PRIx64 ".qkv", id);
  return JoinPath(options_.dir, name);
}

ColdTier::~ColdTier() {
  std::lock_guard lock(mu_);
  (void)FlushBufferLocked();
  if (auto it = segments_.find(active_); it != segments_.end()) (void)it->second.file->Sync();
}

Result<std::unique_ptr<ColdTier>> ColdTier::Open(const ColdTierOptions& options) {
  if (options.env == nullptr || options.dir.empty()) {
    return InvalidArgument("cold tier needs an Env and a directory");
  }
  if (options.segment_bytes < (1 << 20) || options.segment_bytes > (uint64_t{1} << 30)) {
    return InvalidArgument("segment_bytes must be 1 MiB..1 GiB");
  }
  if (options.capacity_bytes < 2 * options.segment_bytes) {
    return InvalidArgument("the cold tier needs room for at least two segments");
  }
  std::unique_ptr<ColdTier> tier(new ColdTier(options));
  tier->stubs_.resize(1024);
  QCLOUD_RETURN_IF_ERROR(options.env->CreateDirs(options.dir));
  QCLOUD_RETURN_IF_ERROR(tier->Recover());
  return tier;
}

Status ColdTier::Recover() {
  QCLOUD_ASSIGN_OR_RETURN(std::vector<std::string> names, options_.env->ListDir(options_.dir));
  std::vector<uint64_t> ids;
  for (const std::string& n : names) {
    uint64_t id = 0;
    char tail[8] = {};
    if (n.size() == 24 && std::sscanf(n.c_str(), "seg-%16" SCNx64 ".%3s", &id, tail) == 2 &&
        std::string_view(tail) == "qkv") {
      ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end());
  struct Latest {
    uint64_t seq;
    uint64_t location;
    uint32_t length;
    uint8_t type;
  };
  std::unordered_map<uint64_t, Latest> latest;
  for (size_t i = 0; i < ids.size(); ++i) {
    const std::string path = SegmentPath(ids[i]);
    QCLOUD_ASSIGN_OR_RETURN(std::unique_ptr<File> file, options_.env->OpenFile(path, OpenMode::kReadWrite));
    QCLOUD_ASSIGN_OR_RETURN(uint64_t size, file->Size());
    std::string data(static_cast<size_t>(size), '\0');
    QCLOUD_ASSIGN_OR_RETURN(size_t got,
                            file->ReadAt(0, MutableByteView(reinterpret_cast<std::byte*>(data.data()), data.size())));
    data.resize(got);
    Segment seg;
    if (data.size() < kSegmentHeader || std::memcmp(data.data(), kMagic, 8) != 0 ||
        DecodeFixed32(reinterpret_cast<const std::byte*>(data.data()) + 8) != kVersion) {
      // A segment torn at creation (the newest, its header not durable) is
      // removed; anything else unreadable is left for an operator.
      const bool zeros = data.find_first_not_of('\0') == std::string::npos;
      if (data.size() < kSegmentHeader || (i + 1 == ids.size() && zeros)) {
        file.reset();
        QCLOUD_RETURN_IF_ERROR(options_.env->RemoveFile(path));
        continue;
      }
      return Corruption(path + ": not a qcloud-kv segment of version 1");
    }
    seg.compressed = (DecodeFixed32(reinterpret_cast<const std::byte*>(data.data()) + 12) & 1) != 0;
    size_t off = kSegmentHeader;
    while (off < data.size()) {
      auto rec = Parse(ByteView(data.data() + off, data.size() - off));
      if (!rec) break;
      const uint64_t hash = FixHash(Xxh3_64(ByteView(rec->key)));
      Latest& l = latest[hash];
      if (rec->seq >= l.seq) {
        l = {rec->seq, Loc(ids[i], off), static_cast<uint32_t>(rec->size), rec->type};
      }
      seq_ = std::max(seq_, rec->seq + 1);
      max_cas_ = std::max(max_cas_, rec->cas);
      off += rec->size;
    }
    if (off < data.size()) {
      // A torn tail (crash mid-write): cut it so appends never follow garbage.
      QCLOUD_RETURN_IF_ERROR(file->Truncate(off));
      QCLOUD_RETURN_IF_ERROR(file->Sync());
    }
    seg.size = off;
    seg.file = std::move(file);
    disk_bytes_ += off;
    segments_.emplace(ids[i], std::move(seg));
  }
  for (const auto& [hash, l] : latest) {
    if (l.type != kItem) continue;
    StubInsert({hash, l.location, l.length});
    segments_[LocSeg(l.location)].live += l.length;
    ++stats_.recovered;
  }
  return OpenActive(ids.empty() ? 1 : ids.back() + 1);
}

Status ColdTier::OpenActive(uint64_t id) {
  QCLOUD_ASSIGN_OR_RETURN(std::unique_ptr<File> file,
                          options_.env->OpenFile(SegmentPath(id), OpenMode::kCreateExclusive));
  std::byte header[kSegmentHeader] = {};
  std::memcpy(header, kMagic, 8);
  EncodeFixed32(header + 8, kVersion);
  EncodeFixed32(header + 12, options_.compress ? 1 : 0);
  EncodeFixed64(header + 16, id);
  QCLOUD_RETURN_IF_ERROR(file->WriteAt(0, ByteView(header, kSegmentHeader)));
  QCLOUD_RETURN_IF_ERROR(file->Sync());
  QCLOUD_RETURN_IF_ERROR(options_.env->SyncDir(options_.dir));
  Segment seg;
  seg.file = std::move(file);
  seg.size = kSegmentHeader;
  seg.compressed = options_.compress;
  segments_[id] = std::move(seg);
  active_ = id;
  flushed_ = kSegmentHeader;
  disk_bytes_ += kSegmentHeader;
  return Status::Ok();
}

Status ColdTier::FlushBufferLocked() {
  if (buffer_.empty()) return Status::Ok();
  auto it = segments_.find(active_);
  if (it == segments_.end()) return Status::Ok();
  QCLOUD_RETURN_IF_ERROR(it->second.file->WriteAt(flushed_, buffer_.readable()));
  flushed_ += buffer_.size();
  buffer_.Clear();
  return Status::Ok();
}

Status ColdTier::RollLocked() {
  QCLOUD_RETURN_IF_ERROR(FlushBufferLocked());
  QCLOUD_RETURN_IF_ERROR(segments_[active_].file->Sync());
  return OpenActive(active_ + 1);
}

Result<uint64_t> ColdTier::AppendLocked(ByteView record) {
  Segment& seg = segments_[active_];
  const uint64_t location = Loc(active_, seg.size);
  buffer_.Append(record);
  seg.size += record.size();
  disk_bytes_ += record.size();
  if (buffer_.size() >= options_.write_buffer) QCLOUD_RETURN_IF_ERROR(FlushBufferLocked());
  if (seg.size >= options_.segment_bytes) QCLOUD_RETURN_IF_ERROR(RollLocked());
  return location;
}

bool ColdTier::MayContain(uint64_t hash) const {
  std::lock_guard lock(mu_);
  if (stub_count_ == 0) return false;
  hash = FixHash(hash);
  const size_t mask = stubs_.size() - 1;
  for (size_t i = hash & mask;; i = (i + 1) & mask) {
    if (stubs_[i].hash == 0) return false;
    if (stubs_[i].hash == hash) return true;
  }
}

Result<std::string> ColdTier::ReadRecord(uint64_t location) {
  std::shared_ptr<File> file;
  {
    std::lock_guard lock(mu_);
    auto it = segments_.find(LocSeg(location));
    if (it == segments_.end()) return NotFound("segment gone");
    const uint64_t off = LocOff(location);
    if (LocSeg(location) == active_ && off >= flushed_) {
      ByteView b = buffer_.readable();
      const size_t at = static_cast<size_t>(off - flushed_);
      if (at + 8 > b.size()) return Corruption("record past the buffer");
      const size_t len = DecodeFixed32(b.data() + at + 4) + size_t{8};
      if (at + len > b.size()) return Corruption("record past the buffer");
      return std::string(b.chars() + at, len);
    }
    file = it->second.file;
    ++stats_.reads;
  }
  std::string data(4096, '\0');
  auto view = [&](size_t from) {
    return MutableByteView(reinterpret_cast<std::byte*>(data.data()) + from, data.size() - from);
  };
  QCLOUD_ASSIGN_OR_RETURN(size_t got, file->ReadAt(LocOff(location), view(0)));
  if (got < 8) return Corruption("short record");
  const size_t len = DecodeFixed32(reinterpret_cast<const std::byte*>(data.data()) + 4) + size_t{8};
  if (len > kMaxRecord) return Corruption("record length");
  if (len > got) {
    data.resize(len);
    QCLOUD_ASSIGN_OR_RETURN(size_t more, file->ReadAt(LocOff(location) + got, view(got)));
    got += more;
  }
  if (got < len) return Corruption("short record");
  data.resize(len);
  return data;
}

Result<std::optional<ColdItem>> ColdTier::Find(std::string_view key, uint64_t hash) {
  std::vector<uint64_t> candidates;
  {
    std::lock_guard lock(mu_);
    candidates = StubFind(FixHash(hash));
  }
  for (uint64_t location : candidates) {
    QCLOUD_ASSIGN_OR_RETURN(std::string bytes, ReadRecord(location));
    auto rec = Parse(ByteView(bytes));
    if (!rec) return Corruption("cold record fails its checksum");
    if (rec->type != kItem || rec->key != key) continue;
    QCLOUD_ASSIGN_OR_RETURN(ColdItem item, ItemOf(*rec, location));
    return std::optional<ColdItem>(std::move(item));
  }
  return std::optional<ColdItem>();
}

std::optional<ColdTier::Location> ColdTier::Locate(uint64_t hash) const {
  std::lock_guard lock(mu_);
  const Stub* stub = StubOnly(FixHash(hash));
  if (stub == nullptr || stub->length < kFixed) return std::nullopt;
  const uint64_t location = stub->location;
  auto it = segments_.find(LocSeg(location));
  if (it == segments_.end()) return std::nullopt;
  if (LocSeg(location) == active_ && LocOff(location) >= flushed_) return std::nullopt;  // buffered
  const int fd = it->second.file->native_handle();
  if (fd < 0) return std::nullopt;
  return Location{it->second.file, fd, LocOff(location), stub->length, location};
}

Result<std::optional<ColdItem>> ColdTier::Decode(std::string_view key, uint64_t hash,
                                                 uint64_t location, ByteView record) {
  {
    std::lock_guard lock(mu_);
    if (!StubAt(FixHash(hash), location)) return std::optional<ColdItem>();
    ++stats_.reads;
  }
  auto rec = Parse(record);
  if (!rec || rec->size != record.size()) return Corruption("cold record fails its checksum");
  if (rec->type != kItem || rec->key != key) return std::optional<ColdItem>();
  QCLOUD_ASSIGN_OR_RETURN(ColdItem item, ItemOf(*rec, location));
  return std::optional<ColdItem>(std::move(item));
}

Status ColdTier::Put(std::string_view key, uint64_t hash, const ColdItem& item) {
  std::string compressed;
  uint8_t coding = 0;
  std::string_view stored = item.value;
  if (options_.compress && item.value.size() >= 128) {
    auto z = ZstdCompress(ByteView(item.value), {.level = 1});
    if (z.ok() && z->size() + 16 < item.value.size()) {
      compressed = z->readable().ToString();
      stored = compressed;
      coding = kZstd;
    }
  }
  // One live record per key: an older record of the same key (possible
  // when an item sank, came back and sank again before the old record was
  // erased) is superseded. Only keys whose hash already has a stub pay the
  // read that tells collisions apart.
  std::vector<uint64_t> superseded;
  std::vector<uint64_t> candidates;
  {
    std::lock_guard lock(mu_);
    candidates = StubFind(FixHash(hash));
  }
  for (uint64_t location : candidates) {
    auto bytes = ReadRecord(location);
    if (!bytes.ok()) continue;
    auto rec = Parse(ByteView(*bytes));
    if (rec && rec->type == kItem && rec->key == key) superseded.push_back(location);
  }
  std::lock_guard lock(mu_);
  for (uint64_t location : superseded) {
    const uint32_t len = StubErase(FixHash(hash), location);
    if (auto it = segments_.find(LocSeg(location)); it != segments_.end()) it->second.live -= len;
  }
  Buffer record;
  Encode(record, kItem, coding, key, item.flags, seq_, item.cas, item.exptime, item.atime, stored,
         static_cast<uint32_t>(item.value.size()));
  // Room: clean the oldest segments while over capacity, but only while
  // the tier holds enough dead bytes for cleaning to make the room (else
  // a full tier would rewrite itself on every sink).
  for (size_t tries = segments_.size();
       tries > 0 && disk_bytes_ + record.size() > options_.capacity_bytes; --tries) {
    uint64_t live = 0;
    for (const auto& [id, seg] : segments_) live += seg.live;
    if (disk_bytes_ - live < record.size() + kSegmentHeader) break;
    QCLOUD_RETURN_IF_ERROR(CompactOldestLocked());
  }
  if (disk_bytes_ + record.size() > options_.capacity_bytes) {
    ++stats_.full;
    return Status(kv::Errc::kColdTierFull, "cold tier full");
  }
  ++seq_;
  max_cas_ = std::max(max_cas_, item.cas);
  QCLOUD_ASSIGN_OR_RETURN(uint64_t location, AppendLocked(record.readable()));
  StubInsert({FixHash(hash), location, static_cast<uint32_t>(record.size())});
  segments_[LocSeg(location)].live += record.size();
  ++stats_.sunk;
  return Status::Ok();
}

Status ColdTier::Erase(std::string_view key, uint64_t hash, uint64_t location) {
  std::lock_guard lock(mu_);
  const uint32_t len = StubErase(FixHash(hash), location);
  if (len == 0) return Status::Ok();  // already gone
  auto it = segments_.find(LocSeg(location));
  if (it != segments_.end()) it->second.live -= len;
  Buffer record;
  Encode(record, kTombstone, 0, key, 0, seq_++, 0, 0, 0, {}, 0);
  return AppendLocked(record.readable()).status();
}

Status ColdTier::DropAll() {
  std::lock_guard lock(mu_);
  buffer_.Clear();
  for (auto& [id, seg] : segments_) {
    seg.file.reset();
    QCLOUD_RETURN_IF_ERROR(options_.env->RemoveFile(SegmentPath(id)));
  }
  const uint64_t next = active_ + 1;
  segments_.clear();
  std::fill(stubs_.begin(), stubs_.end(), Stub{});
  stub_count_ = 0;
  disk_bytes_ = 0;
  return OpenActive(next);
}

Status ColdTier::Sync() {
  std::lock_guard lock(mu_);
  QCLOUD_RETURN_IF_ERROR(FlushBufferLocked());
  return segments_[active_].file->Sync();
}

Result<bool> ColdTier::MaybeCompact(double min_garbage) {
  std::lock_guard lock(mu_);
  if (segments_.size() < 2) return false;
  uint64_t live = 0;
  for (const auto& [id, seg] : segments_) live += seg.live;
  const double garbage =
      disk_bytes_ == 0 ? 0.0 : static_cast<double>(disk_bytes_ - live) / static_cast<double>(disk_bytes_);
  if (garbage < min_garbage && disk_bytes_ <= options_.capacity_bytes) return false;
  QCLOUD_RETURN_IF_ERROR(CompactOldestLocked());
  return true;
}

Status ColdTier::CompactOldestLocked() {
  auto it = segments_.begin();
  if (it->first == active_) return Status::Ok();
  const uint64_t id = it->first;
  std::shared_ptr<File> file = it->second.file;
  const uint64_t size = it->second.size;
  std::string data(static_cast<size_t>(size), '\0');
  QCLOUD_ASSIGN_OR_RETURN(size_t got, file->ReadAt(0, MutableByteView(reinterpret_cast<std::byte*>(data.data()), data.size())));
  data.resize(got);
  size_t off = kSegmentHeader;
  while (off < data.size()) {
    auto rec = Parse(ByteView(data.data() + off, data.size() - off));
    if (!rec) break;
    if (rec->type == kItem) {
      const uint64_t hash = FixHash(Xxh3_64(ByteView(rec->key)));
      const uint64_t from = Loc(id, off);
      if (StubAt(hash, from)) {
        // Live: move it forward unchanged (same sequence number).
        QCLOUD_ASSIGN_OR_RETURN(uint64_t to, AppendLocked(ByteView(data.data() + off, rec->size)));
        StubReplace(hash, from, to);
        segments_[LocSeg(to)].live += rec->size;
      }
    }
    off += rec->size;
  }
  segments_.erase(id);
  file.reset();
  disk_bytes_ -= size;
  ++stats_.compactions;
  return options_.env->RemoveFile(SegmentPath(id));
}

Result<bool> ColdTier::ScanLive(uint64_t* segment, uint64_t* offset, size_t max_bytes,
                                ScanFn visit, void* ctx) {
  std::shared_ptr<File> file;
  std::string data;
  uint64_t id = 0;
  uint64_t from = 0;
  {
    std::lock_guard lock(mu_);
    auto it = segments_.lower_bound(*segment);
    if (it == segments_.end()) return true;
    if (it->first != *segment) {
      *segment = it->first;
      *offset = kSegmentHeader;
    }
    *offset = std::max<uint64_t>(*offset, kSegmentHeader);
    id = it->first;
    from = *offset;
    const uint64_t on_disk = id == active_ ? flushed_ : it->second.size;
    if (from >= on_disk && id == active_) {
      // The active segment's tail is still in the write buffer.
      ByteView b = buffer_.readable();
      const size_t at = static_cast<size_t>(from - flushed_);
      if (at < b.size()) {
        size_t n = std::min(b.size() - at, std::max<size_t>(max_bytes, 4096));
        if (b.size() - at >= 8) {  // at least the first record whole
          n = std::max(n, std::min(b.size() - at, size_t{DecodeFixed32(b.data() + at + 4)} + 8));
        }
        data.assign(b.chars() + at, n);
      }
    } else if (from < on_disk) {
      file = it->second.file;
      data.resize(static_cast<size_t>(std::min<uint64_t>(on_disk - from, std::max<size_t>(max_bytes, 4096))));
    }
    if (file == nullptr && data.empty()) {  // this segment is done
      *segment = id + 1;
      *offset = kSegmentHeader;
      return segments_.upper_bound(id) == segments_.end();
    }
  }
  auto view = [](std::string& s, size_t at) {
    return MutableByteView(reinterpret_cast<std::byte*>(s.data()) + at, s.size() - at);
  };
  if (file != nullptr) {
    QCLOUD_ASSIGN_OR_RETURN(size_t got, file->ReadAt(from, view(data, 0)));
    data.resize(got);
    // A record longer than what was read: read it whole.
    if (data.size() >= 8) {
      const size_t len = DecodeFixed32(reinterpret_cast<const std::byte*>(data.data()) + 4) + size_t{8};
      if (len > data.size() && len <= kMaxRecord) {
        const size_t had = data.size();
        data.resize(len);
        QCLOUD_ASSIGN_OR_RETURN(size_t more, file->ReadAt(from + had, view(data, had)));
        data.resize(had + more);
      }
    }
  }
  // Whole records at the front of `data`; the scan goes on after the last.
  struct Seen {
    uint64_t hash;
    uint64_t location;
    size_t at;
  };
  std::vector<Seen> items;
  size_t off = 0;
  while (off < data.size()) {
    auto rec = Parse(ByteView(data.data() + off, data.size() - off));
    if (!rec) break;
    if (rec->type == kItem) items.push_back({FixHash(Xxh3_64(ByteView(rec->key))), Loc(id, from + off), off});
    off += rec->size;
  }
  {
    // Only live records (a stub points at them) are items.
    std::lock_guard lock(mu_);
    std::erase_if(items, [&](const Seen& s) { return !StubAt(s.hash, s.location); });
  }
  for (const Seen& s : items) {
    auto rec = Parse(ByteView(data.data() + s.at, data.size() - s.at));
    ColdItem meta;
    meta.flags = rec->flags;
    meta.cas = rec->cas;
    meta.exptime = rec->exptime;
    meta.atime = rec->atime;
    meta.location = s.location;
    visit(ctx, rec->key, meta, rec->raw_len);
  }
  if (off == 0) {
    // Nothing whole here (a torn tail, or the end): the next segment.
    *segment = id + 1;
    *offset = kSegmentHeader;
  } else {
    *offset = from + off;
  }
  std::lock_guard lock(mu_);
  return segments_.lower_bound(*segment) == segments_.end();
}

ColdTierStats ColdTier::Stats() const {
  std::lock_guard lock(mu_);
  ColdTierStats s = stats_;
  s.items = stub_count_;
  s.segments = segments_.size();
  s.disk_bytes = disk_bytes_;
  for (const auto& [id, seg] : segments_) s.live_bytes += seg.live;
  s.stub_bytes = stubs_.size() * sizeof(Stub);
  return s;
}

// --- stub table -------------------------------------------------------------

void ColdTier::StubGrow() {
  std::vector<Stub> old(stubs_.size() * 2);
  old.swap(stubs_);
  stub_count_ = 0;
  for (const Stub& s : old) {
    if (s.hash != 0) StubInsert(s);
  }
}

void ColdTier::StubInsert(const Stub& stub) {
  if ((stub_count_ + 1) * 4 > stubs_.size() * 3) StubGrow();
  const size_t mask = stubs_.size() - 1;
  size_t i = stub.hash & mask;
  while (stubs_[i].hash != 0) i = (i + 1) & mask;
  stubs_[i] = stub;
  ++stub_count_;
}

std::vector<uint64_t> ColdTier::StubFind(uint64_t hash) const {
  std::vector<uint64_t> out;
  if (stub_count_ == 0) return out;
  const size_t mask = stubs_.size() - 1;
  for (size_t i = hash & mask; stubs_[i].hash != 0; i = (i + 1) & mask) {
    if (stubs_[i].hash == hash) out.push_back(stubs_[i].location);
  }
  return out;
}

bool ColdTier::StubAt(uint64_t hash, uint64_t location) const {
  if (stub_count_ == 0) return false;
  const size_t mask = stubs_.size() - 1;
  for (size_t i = hash & mask; stubs_[i].hash != 0; i = (i + 1) & mask) {
    if (stubs_[i].hash == hash && stubs_[i].location == location) return true;
  }
  return false;
}

const ColdTier::Stub* ColdTier::StubOnly(uint64_t hash) const {
  if (stub_count_ == 0) return nullptr;
  const Stub* found = nullptr;
  const size_t mask = stubs_.size() - 1;
  for (size_t i = hash & mask; stubs_[i].hash != 0; i = (i + 1) & mask) {
    if (stubs_[i].hash != hash) continue;
    if (found != nullptr) return nullptr;  // a collision: Find() tells them apart
    found = &stubs_[i];
  }
  return found;
}

bool ColdTier::StubReplace(uint64_t hash, uint64_t from, uint64_t to) {
  const size_t mask = stubs_.size() - 1;
  for (size_t i = hash & mask; stubs_[i].hash != 0; i = (i + 1) & mask) {
    if (stubs_[i].hash == hash && stubs_[i].location == from) {
      stubs_[i].location = to;
      return true;
    }
  }
  return false;
}

uint32_t ColdTier::StubErase(uint64_t hash, uint64_t location) {
  const size_t mask = stubs_.size() - 1;
  size_t i = hash & mask;
  for (; stubs_[i].hash != 0; i = (i + 1) & mask) {
    if (stubs_[i].hash == hash && stubs_[i].location == location) break;
  }
  if (stubs_[i].hash == 0) return 0;
  const uint32_t len = stubs_[i].length;
  // Backward-shift deletion keeps every probe sequence unbroken.
  size_t hole = i;
  for (size_t j = (i + 1) & mask; stubs_[j].hash != 0; j = (j + 1) & mask) {
    const size_t ideal = stubs_[j].hash & mask;
    const bool movable = hole <= j ? (ideal <= hole || ideal > j) : (ideal <= hole && ideal > j);
    if (movable) {
      stubs_[hole] = stubs_[j];
      hole = j;
    }
  }
  stubs_[hole] = Stub{};
  --stub_count_;
  return len;
}

}  // namespace qcloud::kv
