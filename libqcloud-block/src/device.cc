#include "block/device.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>

#include "qcloud/core/hash.h"

#if QCLOUD_HAVE_LIBNBD
#include <libnbd.h>
#endif

namespace qcloud::block::detail {

namespace {

constexpr std::string_view kMagic = "QCLOUD-BLOCK-DATA v1\n";
constexpr size_t kUuidAt = 32;
constexpr size_t kStateAt = 48;
constexpr size_t kOpenAt = 49;
constexpr uint64_t kExtent = uint64_t{1} << 20;

class LocalCopy final : public Copy {
 public:
  LocalCopy(Env& env, std::string dir)
      : env_(env), dir_(std::move(dir)), path_(JoinPath(dir_, "extents.dat")), name_(dir_) {}

  const std::string& name() const noexcept override { return name_; }

  Status Open() override {
    file_.reset();
    QCLOUD_RETURN_IF_ERROR(env_.CreateDirs(dir_));
    const bool created = !env_.FileExists(path_);
    QCLOUD_ASSIGN_OR_RETURN(file_, env_.OpenFile(path_, OpenMode::kCreate));
    // A new file's name must outlive a power cut too.
    if (created) QCLOUD_RETURN_IF_ERROR(env_.SyncDir(dir_));
    return Status::Ok();
  }

  bool StillThere() override {
    // A directory wiped under an open file: our descriptor still writes to
    // the unlinked inode, so compare it with what the path names now.
    const int fd = file_ ? file_->native_handle() : -1;
    if (fd < 0) return file_ != nullptr;
    struct stat a {}, b {};
    if (::fstat(fd, &a) != 0 || ::stat(path_.c_str(), &b) != 0) return false;
    return a.st_ino == b.st_ino && a.st_dev == b.st_dev;
  }

  Status Read(uint64_t offset, MutableByteView dst) override {
    if (!file_) return Status(Errc::kUnavailable, name_ + ": not open");
    QCLOUD_ASSIGN_OR_RETURN(size_t got, file_->ReadAt(offset, dst));
    if (got < dst.size()) std::memset(dst.data() + got, 0, dst.size() - got);
    return Status::Ok();
  }
  Status Write(uint64_t offset, ByteView src) override {
    if (!file_) return Status(Errc::kUnavailable, name_ + ": not open");
    return file_->WriteAt(offset, src);
  }
  Status Zero(uint64_t offset, uint64_t length, bool release) override {
    if (!file_) return Status(Errc::kUnavailable, name_ + ": not open");
    return file_->ZeroRange(offset, length, release);
  }
  Status Sync() override {
    if (!file_) return Status(Errc::kUnavailable, name_ + ": not open");
    return file_->Sync();
  }
  uint64_t capacity() const noexcept override { return 0; }
  std::shared_ptr<File> file() const override { return file_; }
  void Advise(uint64_t offset, uint64_t length) override {
    const int fd = file_ ? file_->native_handle() : -1;
    if (fd >= 0) (void)::posix_fadvise(fd, static_cast<off_t>(offset), static_cast<off_t>(length), POSIX_FADV_WILLNEED);
  }

 private:
  Env& env_;
  const std::string dir_, path_, name_;
  std::shared_ptr<File> file_;  // shared with zero-copy replies in flight
};

#if QCLOUD_HAVE_LIBNBD
// An NBD export through libnbd. A handle carries one request at a time,
// so the copy keeps a few and lends one to each caller; a handle that
// fails is closed, not lent again.
class NbdCopy final : public Copy {
 public:
  explicit NbdCopy(std::string uri) : uri_(std::move(uri)) {}
  ~NbdCopy() override { CloseAll(); }

  const std::string& name() const noexcept override { return uri_; }

  Status Open() override {
    CloseAll();
    QCLOUD_ASSIGN_OR_RETURN(nbd_handle * h, Connect());
    const int64_t size = nbd_get_size(h);
    if (size < 0) {
      Status st = Error("size");
      nbd_close(h);
      return st;
    }
    capacity_ = static_cast<uint64_t>(size);
    can_zero_ = nbd_can_zero(h) == 1;
    can_trim_ = nbd_can_trim(h) == 1;
    Return(h);
    return Status::Ok();
  }

  bool StillThere() override { return true; }  // a dead server shows as an I/O error

  Status Read(uint64_t offset, MutableByteView dst) override {
    return Run([&](nbd_handle* h) { return nbd_pread(h, dst.data(), dst.size(), offset, 0); }, "read",
               offset, dst.size());
  }
  Status Write(uint64_t offset, ByteView src) override {
    return Run([&](nbd_handle* h) { return nbd_pwrite(h, src.data(), src.size(), offset, 0); }, "write",
               offset, src.size());
  }
  std::function<Status()> StartWrite(uint64_t offset, ByteView src) override {
    if (capacity_ != 0 && (offset > capacity_ || src.size() > capacity_ - offset)) {
      Status st = Write(offset, src);  // the bounds error
      return [st] { return st; };
    }
    auto borrowed = Borrow();
    if (!borrowed.ok()) {
      Status st = borrowed.status();
      return [st] { return st; };
    }
    nbd_handle* h = *borrowed;
    const int64_t cookie = nbd_aio_pwrite(h, src.data(), src.size(), offset, NBD_NULL_COMPLETION, 0);
    if (cookie < 0) {
      Status st = Error(fmt::format("write {}", uri_));
      nbd_close(h);
      return [st] { return st; };
    }
    return [this, h, cookie]() -> Status {
      // Bounded: a server that stops answering fails the copy, it does
      // not hang the writer.
      for (int waited = 0; waited < kWaitSeconds * 10; ++waited) {
        const int done = nbd_aio_command_completed(h, static_cast<uint64_t>(cookie));
        if (done == 1) {
          Return(h);
          return Status::Ok();
        }
        if (done < 0 || nbd_poll(h, 100) < 0) break;
      }
      Status st = Error(fmt::format("write {}", uri_));
      nbd_close(h);
      return st;
    };
  }

  Status Zero(uint64_t offset, uint64_t length, bool release) override {
    if (offset >= capacity_) return Status::Ok();
    length = std::min(length, capacity_ - offset);
    if (can_zero_) {
      const uint32_t flags = release ? 0 : LIBNBD_CMD_FLAG_NO_HOLE;
      return Run([&](nbd_handle* h) { return nbd_zero(h, length, offset, flags); }, "zero", offset, length);
    }
    // Without WRITE_ZEROES: zeros written.
    static const std::array<std::byte, 64 * 1024> kZeros{};
    for (uint64_t done = 0; done < length;) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(length - done, kZeros.size()));
      QCLOUD_RETURN_IF_ERROR(Write(offset + done, ByteView(kZeros.data(), n)));
      done += n;
    }
    return Status::Ok();
  }
  Status Sync() override {
    return Run([&](nbd_handle* h) { return nbd_flush(h, 0); }, "flush", 0, 0);
  }
  uint64_t capacity() const noexcept override { return capacity_; }

 private:
  static Status Error(std::string_view what) {
    const char* msg = nbd_get_error();
    return IoError(fmt::format("nbd {}: {}", what, msg != nullptr ? msg : "unknown error"));
  }

  Result<nbd_handle*> Connect() {
    nbd_handle* h = nbd_create();
    if (h == nullptr) return Error("create");
    if (nbd_connect_uri(h, uri_.c_str()) != 0) {
      Status st = Error("connect " + uri_);
      nbd_close(h);
      return st;
    }
    return h;
  }

  Result<nbd_handle*> Borrow() {
    {
      std::lock_guard lock(mu_);
      if (!idle_.empty()) {
        nbd_handle* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    return Connect();
  }
  void Return(nbd_handle* h) {
    std::lock_guard lock(mu_);
    if (idle_.size() < kMaxIdle) {
      idle_.push_back(h);
      return;
    }
    nbd_close(h);
  }
  void CloseAll() {
    std::lock_guard lock(mu_);
    for (nbd_handle* h : idle_) nbd_close(h);
    idle_.clear();
  }

  template <typename Fn>
  Status Run(Fn&& fn, std::string_view what, uint64_t offset, uint64_t length) {
    if (capacity_ != 0 && (offset > capacity_ || length > capacity_ - offset)) {
      return Status(Errc::kResourceExhausted,
                    fmt::format("{}: [{}, +{}) is past the export's end ({})", uri_, offset, length, capacity_));
    }
    QCLOUD_ASSIGN_OR_RETURN(nbd_handle * h, Borrow());
    if (fn(h) != 0) {
      Status st = Error(fmt::format("{} {}", what, uri_));
      nbd_close(h);
      return st;
    }
    Return(h);
    return Status::Ok();
  }

  static constexpr size_t kMaxIdle = 64;  // enough for every pool thread of a busy server
  static constexpr int kWaitSeconds = 30;
  const std::string uri_;
  std::mutex mu_;
  std::vector<nbd_handle*> idle_;
  uint64_t capacity_ = 0;
  bool can_zero_ = false, can_trim_ = false;
};
#endif

bool AllZero(const std::byte* p, size_t n) {
  static const std::array<std::byte, 4096> kZeros{};
  for (size_t i = 0; i < n; i += kZeros.size()) {
    if (std::memcmp(p + i, kZeros.data(), std::min(n - i, kZeros.size())) != 0) return false;
  }
  return true;
}

}  // namespace

std::unique_ptr<Copy> NewLocalCopy(Env& env, std::string dir) {
  return std::make_unique<LocalCopy>(env, std::move(dir));
}

Result<std::unique_ptr<Copy>> NewNbdCopy(std::string uri) {
#if QCLOUD_HAVE_LIBNBD
  return std::unique_ptr<Copy>(std::make_unique<NbdCopy>(std::move(uri)));
#else
  return NotSupported("NBD replica " + uri + ": this build has no libnbd");
#endif
}

Result<std::unique_ptr<Copy>> NewCopy(Env& env, const std::string& spec) {
  const std::string_view s = spec;
  if (s.starts_with("nbd://") || s.starts_with("nbds://") || s.starts_with("nbd+unix://") ||
      s.starts_with("nbds+unix://")) {
    return NewNbdCopy(spec);
  }
  std::string dir(s.starts_with("dir:") ? s.substr(4) : s);
  if (dir.empty()) return InvalidArgument("empty replica location");
  return NewLocalCopy(env, std::move(dir));
}

// ---- the write-intent map (intent.map; docs/notes/block-format.md) ----

namespace {

constexpr std::string_view kIntentMagic = "QCLOUD-BLOCK-INTENT v1\n";
constexpr size_t kIntentAllAt = 48;      // u8: 1 = every granule dirty
constexpr size_t kIntentGranuleAt = 56;  // u64 LE: extents per bit
constexpr size_t kIntentStaleAt = 64;    // u8 count, then from byte 72 that many u64 LE name hashes
constexpr size_t kIntentStaleList = 72;

uint64_t CopyId(std::string_view name) { return Xxh3_64(ByteView(name)); }

}  // namespace

IntentImage ParseIntentMap(ByteView file, const std::array<std::byte, 16>& uuid) {
  IntentImage img;
  if (file.size() < kIntentHeader || file.size() > kIntentHeader + kIntentMaxBytes ||
      std::memcmp(file.data(), kIntentMagic.data(), kIntentMagic.size()) != 0 ||
      std::memcmp(file.data() + kUuidAt, uuid.data(), uuid.size()) != 0 ||
      DecodeFixed64(file.data() + kIntentGranuleAt) != kIntentGranule ||
      file[kIntentAllAt] != std::byte{0} ||
      std::to_integer<size_t>(file[kIntentStaleAt]) > kMaxStaleCopies) {
    img.all = true;
    return img;
  }
  for (size_t i = 0; i < std::to_integer<size_t>(file[kIntentStaleAt]); ++i) {
    img.stale.push_back(DecodeFixed64(file.data() + kIntentStaleList + 8 * i));
  }
  const size_t n = file.size() - kIntentHeader;
  img.bits.assign((n + 7) / 8, 0);
  for (size_t i = 0; i < n; ++i) {
    img.bits[i / 8] |= uint64_t{std::to_integer<uint8_t>(file[kIntentHeader + i])} << (8 * (i % 8));
  }
  while (!img.bits.empty() && img.bits.back() == 0) img.bits.pop_back();
  return img;
}

Result<std::unique_ptr<IntentMap>> IntentMap::Open(Env& env, const std::string& path,
                                                   const std::array<std::byte, 16>& uuid) {
  IntentImage img;
  auto text = ReadFileToString(env, path, kIntentHeader + kIntentMaxBytes);
  if (text.ok()) {
    img = ParseIntentMap(ByteView(*text), uuid);
  } else if (text.status().code() == Errc::kNotFound || text.status().code() == Errc::kTooLarge) {
    img.all = true;  // none (a store from before the map) or not one we wrote
  } else {
    return text.status();
  }
  QCLOUD_ASSIGN_OR_RETURN(auto file, env.OpenFile(path, OpenMode::kCreate));
  std::unique_ptr<IntentMap> m(new IntentMap(std::move(file), uuid));
  m->all_ = img.all;
  m->bits_ = std::move(img.bits);  // in-flight counts and epochs grow with the writes
  m->stale_ = std::move(img.stale);
  return m;
}

Status IntentMap::Start(bool crashed) {
  std::lock_guard lock(mu_);
  if (!crashed) all_ = false;
  // Nothing in flight yet. The marks stay only after a crash, and not
  // where `all` says more than they do.
  inflight_.clear();
  epoch_.clear();
  if (!crashed || all_) {
    bits_.clear();
    QCLOUD_RETURN_IF_ERROR(file_->Truncate(kIntentHeader));
  }
  QCLOUD_RETURN_IF_ERROR(WriteHeaderLocked());
  return file_->Sync();
}

Status IntentMap::WriteHeaderLocked() {
  std::array<std::byte, kIntentHeader> h{};
  std::memcpy(h.data(), kIntentMagic.data(), kIntentMagic.size());
  std::memcpy(h.data() + kUuidAt, uuid_.data(), uuid_.size());
  h[kIntentAllAt] = std::byte{all_ ? uint8_t{1} : uint8_t{0}};
  EncodeFixed64(h.data() + kIntentGranuleAt, kIntentGranule);
  h[kIntentStaleAt] = std::byte{static_cast<uint8_t>(stale_.size())};
  for (size_t i = 0; i < stale_.size(); ++i) EncodeFixed64(h.data() + kIntentStaleList + 8 * i, stale_[i]);
  return file_->WriteAt(0, ByteView(h.data(), h.size()));
}

Status IntentMap::WriteWordsLocked(size_t from, size_t to) {
  std::vector<std::byte> buf((to - from) * 8);
  for (size_t w = from; w < to; ++w) EncodeFixed64(buf.data() + (w - from) * 8, bits_[w]);
  return file_->WriteAt(kIntentHeader + from * 8, ByteView(buf.data(), buf.size()));
}

void IntentMap::GrowLocked(size_t granules) {
  if (inflight_.size() < granules) inflight_.resize(granules, 0);
  if (epoch_.size() < granules) epoch_.resize(granules, 0);
  if (bits_.size() < (granules + 63) / 64) bits_.resize((granules + 63) / 64, 0);
}

bool IntentMap::Dirty(uint32_t p) {
  std::lock_guard lock(mu_);
  const size_t g = p / kIntentGranule;
  return all_ || (g / 64 < bits_.size() && (bits_[g / 64] >> (g % 64) & 1) != 0);
}

Status IntentMap::Begin(uint32_t first, uint32_t last) {
  const size_t g0 = first / kIntentGranule, g1 = last / kIntentGranule;
  std::lock_guard lock(mu_);
  GrowLocked(g1 + 1);
  const size_t from = g0 / 64, to = g1 / 64 + 1;  // the words it may change
  std::vector<uint64_t> before(bits_.begin() + static_cast<ptrdiff_t>(from), bits_.begin() + static_cast<ptrdiff_t>(to));
  bool changed = false;
  for (size_t g = g0; g <= g1; ++g) {
    uint64_t& w = bits_[g / 64];
    if ((w >> (g % 64) & 1) != 0) continue;
    w |= uint64_t{1} << (g % 64);
    changed = true;
  }
  if (changed) {
    // Durable before any copy sees the write; under the lock, so a second
    // writer of the granule does not go ahead of the mark.
    Status st = WriteWordsLocked(from, to);
    if (st.ok()) st = file_->Sync();
    if (!st.ok()) {
      // Not marked after all: the next writer tries again.
      std::copy(before.begin(), before.end(), bits_.begin() + static_cast<ptrdiff_t>(from));
      return st.WithContext("the write-intent map");
    }
  }
  for (size_t g = g0; g <= g1; ++g) {
    inflight_[g]++;
    epoch_[g] = sync_epoch_;
  }
  return Status::Ok();
}

void IntentMap::End(uint32_t first, uint32_t last) {
  std::lock_guard lock(mu_);
  for (size_t g = first / kIntentGranule; g <= last / kIntentGranule; ++g) inflight_[g]--;
}

uint64_t IntentMap::StartSync() {
  std::lock_guard lock(mu_);
  const uint64_t e = ++sync_epoch_;
  candidates_.clear();
  for (size_t w = 0; w < bits_.size(); ++w) {
    for (uint64_t b = bits_[w]; b != 0; b &= b - 1) {
      const size_t g = w * 64 + static_cast<size_t>(std::countr_zero(b));
      // Idle, and not written in the interval before this one either: a
      // granule in steady use stays marked rather than cost a sync each
      // time. (Marks read after a crash have no counts: never written since.)
      const bool idle = g >= inflight_.size() || (inflight_[g] == 0 && epoch_[g] + 1 < e);
      if (idle) candidates_.push_back(static_cast<uint32_t>(g));
    }
  }
  return e;
}

void IntentMap::EndSync(uint64_t epoch, bool clear) {
  std::lock_guard lock(mu_);
  if (!clear || epoch != sync_epoch_) return;  // a later sync started: it decides
  size_t from = SIZE_MAX, to = 0;
  for (uint32_t g : candidates_) {
    if (g < epoch_.size() && epoch_[g] >= epoch) continue;  // written since the sync started
    bits_[g / 64] &= ~(uint64_t{1} << (g % 64));
    from = std::min<size_t>(from, g / 64);
    to = std::max<size_t>(to, g / 64 + 1);
  }
  candidates_.clear();
  // Not synced: a clear lost in a crash costs a larger resync, nothing else.
  if (from != SIZE_MAX) (void)WriteWordsLocked(from, to);
  if (all_) {
    all_ = false;  // the resync that followed the crash is done and synced
    (void)WriteHeaderLocked();
  }
}

Status IntentMap::MarkStale(std::string_view copy) {
  const uint64_t id = CopyId(copy);
  std::lock_guard lock(mu_);
  if (std::find(stale_.begin(), stale_.end(), id) != stale_.end()) return Status::Ok();
  if (stale_.size() == kMaxStaleCopies) return Status(Errc::kResourceExhausted, "too many stale copies");
  stale_.push_back(id);
  Status st = WriteHeaderLocked();
  if (st.ok()) st = file_->Sync();
  if (!st.ok()) stale_.pop_back();
  return st.WithContext("the write-intent map");
}

bool IntentMap::Stale(std::string_view copy) {
  const uint64_t id = CopyId(copy);
  std::lock_guard lock(mu_);
  return std::find(stale_.begin(), stale_.end(), id) != stale_.end();
}

void IntentMap::ClearStale(std::string_view copy) {
  const uint64_t id = CopyId(copy);
  std::lock_guard lock(mu_);
  if (std::erase(stale_, id) > 0) (void)WriteHeaderLocked();
}

void IntentMap::ForgetStale() {
  std::lock_guard lock(mu_);
  stale_.clear();
}

uint64_t IntentMap::marked() {
  std::lock_guard lock(mu_);
  uint64_t n = 0;
  for (uint64_t w : bits_) n += static_cast<uint64_t>(std::popcount(w));
  return n;
}

struct Mirror::Slot {
  std::unique_ptr<Copy> copy;
  std::atomic<CopyState::Health> health{CopyState::Health::kWhole};
  std::mutex mu;                 // missed, full, the counters, last_error
  std::set<uint32_t> missed;     // extents it did not get while failed
  // Extents written since its last sync (kept only with more than one
  // copy): a copy that fails may have lost them, so they are rebuilt too.
  std::set<uint32_t> unsynced;
  bool full = false;             // rebuild everything, not only `missed`
  bool resync = false;           // whole, but to be made equal after a crash
  uint64_t failures = 0, rebuilt = 0;
  std::string last_error;
};

Mirror::Mirror(std::vector<std::unique_ptr<Copy>> copies, unsigned quorum, std::array<std::byte, 16> uuid,
               std::function<std::vector<uint32_t>()> allocated, std::unique_ptr<IntentMap> intent)
    : quorum_(quorum), uuid_(uuid), allocated_(std::move(allocated)), intent_(std::move(intent)) {
  for (auto& c : copies) {
    auto s = std::make_unique<Slot>();
    s->copy = std::move(c);
    slots_.push_back(std::move(s));
  }
}

Mirror::~Mirror() = default;

Status Mirror::WriteHeader(Copy& c, uint8_t state) {
  std::array<std::byte, kHeaderSize> h{};
  std::memcpy(h.data(), kMagic.data(), kMagic.size());
  std::memcpy(h.data() + kUuidAt, uuid_.data(), uuid_.size());
  h[kStateAt] = static_cast<std::byte>(state);
  h[kOpenAt] = static_cast<std::byte>(open_.load() ? 1 : 0);
  QCLOUD_RETURN_IF_ERROR(c.Write(0, ByteView(h.data(), h.size())));
  return c.Sync();
}

void Mirror::Fail(Slot& s, const Status& why) {
  {
    std::lock_guard lock(s.mu);
    if (s.health.load() != CopyState::Health::kFailed) s.failures++;
    s.health = CopyState::Health::kFailed;
    s.last_error = why.ToString();
    s.missed.merge(s.unsynced);
    s.unsynced.clear();
    // A resync cut short: what it had not reached may differ anywhere.
    if (s.resync) {
      s.resync = false;
      s.full = true;
    }
  }
}

Status Mirror::Start(bool fresh) {
  unsigned whole = 0;
  bool crashed = false;  // a whole copy was left open: the last store using it did not Close()
  std::string why;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    Status st = s.copy->Open();
    std::array<std::byte, kHeaderSize> h{};
    if (st.ok()) st = s.copy->Read(0, MutableByteView(h.data(), h.size()));
    if (!st.ok()) {
      Fail(s, st);
      s.full = true;
      why += fmt::format("; {}: {}", s.copy->name(), st.ToString());
      continue;
    }
    const bool mine = std::memcmp(h.data(), kMagic.data(), kMagic.size()) == 0 &&
                      std::memcmp(h.data() + kUuidAt, uuid_.data(), uuid_.size()) == 0;
    if (!mine && !AllZero(h.data(), h.size())) {
      return Corruption(fmt::format("{}: holds another store's data (its header is not this store's)",
                                    s.copy->name()));
    }
    // Whole by its header, but it failed while a store ran and missed
    // acknowledged writes: rebuilt, never read or resynced from.
    if (!fresh && intent_ != nullptr && intent_->Stale(s.copy->name())) {
      Fail(s, Status(Errc::kUnavailable, "it missed writes while it was failed"));
      s.full = true;
      why += fmt::format("; {}: missed writes, to be rebuilt", s.copy->name());
      continue;
    }
    if (fresh || (mine && h[kStateAt] == static_cast<std::byte>(kCopyWhole))) {
      if (fresh) st = WriteHeader(*s.copy, kCopyWhole);
      if (st.ok()) {
        s.health = CopyState::Health::kWhole;
        ++whole;
        crashed = crashed || (!fresh && h[kOpenAt] != std::byte{0});
        continue;
      }
      Fail(s, st);
      s.full = true;
      continue;
    }
    // An empty copy, or one whose rebuild did not finish.
    Fail(s, Status(Errc::kUnavailable, mine ? "its rebuild did not finish" : "empty: to be rebuilt"));
    s.full = true;
    why += fmt::format("; {}: needs a rebuild", s.copy->name());
  }
  if (whole < quorum_) {
    return Status(Errc::kUnavailable,
                  fmt::format("{} of {} copies are whole, {} needed{}", whole, slots_.size(), quorum_, why));
  }
  if (slots_.size() == 1) return Status::Ok();  // one copy: it cannot disagree with another
  // After a crash the intent map's marks say which extents to resync.
  if (intent_ != nullptr) {
    if (fresh) intent_->ForgetStale();
    QCLOUD_RETURN_IF_ERROR(intent_->Start(crashed));
  }
  // Marked in use before the first write; after a crash, every whole copy
  // but the one reads go to is resynced from it (Maintain()).
  open_ = true;
  bool first = true;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.health.load() != CopyState::Health::kWhole) continue;
    if (Status st = WriteHeader(*s.copy, kCopyWhole); !st.ok()) {
      Fail(s, st);
      continue;
    }
    std::lock_guard lock(s.mu);
    s.resync = crashed && !first;
    first = false;
  }
  return Status::Ok();
}

bool Mirror::ResyncPending(Slot& s) {
  std::lock_guard lock(s.mu);
  return s.resync;
}

Status Mirror::Close() {
  Status first = Sync();
  if (!open_.exchange(false)) return first;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    // A copy still to be resynced keeps its mark: the next Start() resyncs.
    if (s.health.load() != CopyState::Health::kWhole || ResyncPending(s)) continue;
    Status st = WriteHeader(*s.copy, kCopyWhole);
    if (!st.ok() && first.ok()) first = st;
  }
  return first;
}

Status Mirror::Read(uint64_t offset, MutableByteView dst) {
  Status last = Status(Errc::kUnavailable, "no whole copy to read from");
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.health.load(std::memory_order_acquire) != CopyState::Health::kWhole) continue;
    Status st = s.copy->Read(offset, dst);
    if (st.ok()) return st;
    Fail(s, st);
    last = st;
  }
  return last;
}

void Mirror::Advise(uint64_t offset, uint64_t length) {
  for (auto& sp : slots_) {
    if (sp->health.load(std::memory_order_acquire) == CopyState::Health::kWhole) {
      sp->copy->Advise(offset, length);
      return;
    }
  }
}

std::shared_ptr<File> Mirror::ReadFile() {
  for (auto& sp : slots_) {
    if (sp->health.load(std::memory_order_acquire) != CopyState::Health::kWhole) continue;
    std::shared_ptr<File> f = sp->copy->file();
    return f != nullptr && f->native_handle() >= 0 ? f : nullptr;
  }
  return nullptr;
}

namespace {

// cachestat(2) (Linux 6.5); Debian 12's glibc has no wrapper.
struct CacheStatRange {
  uint64_t off, len;
};
struct CacheStat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};
constexpr long kSysCachestat = 451;

// Pages of [offset, offset + length) of fd in the page cache; -1 when the
// kernel cannot tell.
int64_t CachedPages(int fd, uint64_t offset, uint64_t length) {
  CacheStatRange r{offset, length};
  CacheStat cs{};
  if (::syscall(kSysCachestat, fd, &r, &cs, 0) != 0) return -1;
  return static_cast<int64_t>(cs.nr_cache);
}


}  // namespace

bool Mirror::CanTellCached() {
  for (auto& sp : slots_) {
    std::shared_ptr<File> f = sp->copy->file();
    if (f == nullptr) continue;
    const int fd = f->native_handle();
    if (fd < 0 || CachedPages(fd, 0, kHeaderSize) < 0) return false;
    // Punching must drop pages, not write zeros over them: probe far past
    // the end, where a hole changes nothing.
    if (::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off_t{1} << 40, 4096) != 0) return false;
  }
  return true;
}

bool Mirror::Uncached(uint64_t offset, uint64_t length) {
  for (auto& sp : slots_) {
    std::shared_ptr<File> f = sp->copy->file();
    if (f == nullptr) continue;
    const int fd = f->native_handle();
    if (fd < 0) continue;
    int64_t n = CachedPages(fd, offset, length);
    if (n == 0) continue;
    const uint64_t from = offset / kLargestFolio * kLargestFolio;
    const uint64_t to = (offset + length + kLargestFolio - 1) / kLargestFolio * kLargestFolio;
    (void)::posix_fadvise(fd, static_cast<off_t>(from), static_cast<off_t>(to - from), POSIX_FADV_DONTNEED);
    n = CachedPages(fd, offset, length);
    if (n != 0) return false;
  }
  return true;
}

Status Mirror::Mutate(uint64_t offset, uint64_t length,
                      const std::function<std::function<Status()>(Copy&)>& start) {
  std::shared_lock stripe(StripeOf(offset));
  if (slots_.size() == 1) {
    // One copy (the default): no quorum to count, nothing to remember for
    // a rebuild, no job list per write.
    Slot& s = *slots_[0];
    if (s.health.load(std::memory_order_acquire) != CopyState::Health::kWhole) {
      return Status(Errc::kIoError, "the only copy of the data has failed: " + s.copy->name());
    }
    // An error goes to the writer and the copy stays in use: with nothing
    // to rebuild it from, failing it would only fail every later write
    // (a full file system, say, is not a dead copy).
    return start(*s.copy)();
  }
  const auto first = static_cast<uint32_t>(offset / kExtent);
  const auto last = static_cast<uint32_t>((offset + std::max<uint64_t>(length, 1) - 1) / kExtent);
  if (intent_ != nullptr) QCLOUD_RETURN_IF_ERROR(intent_->Begin(first, last));
  struct EndIntent {
    IntentMap* map;
    uint32_t first, last;
    ~EndIntent() {
      if (map != nullptr) map->End(first, last);
    }
  } end_intent{intent_.get(), first, last};
  struct Job {
    Slot* slot;
    size_t index;
    CopyState::Health health;
    std::function<Status()> wait;
  };
  std::vector<Job> jobs;
  jobs.reserve(slots_.size());
  for (size_t i = slots_.size(); i-- > 0;) {
    Slot& s = *slots_[i];
    CopyState::Health h = s.health.load(std::memory_order_acquire);
    if (h == CopyState::Health::kFailed) {
      std::lock_guard lock(s.mu);
      h = s.health.load();
      if (h == CopyState::Health::kFailed) {
        for (uint32_t e = first; e <= last; ++e) s.missed.insert(e);
        continue;
      }
    }
    jobs.push_back({&s, i, h, start(*s.copy)});
  }
  unsigned whole = 0;
  uint32_t took = 0;  // bit i: copy i has the write
  Status err;
  for (Job& j : jobs) {
    Slot& s = *j.slot;
    Status st = j.wait();
    if (!st.ok()) {
      Fail(s, st);
      std::lock_guard lock(s.mu);
      for (uint32_t e = first; e <= last; ++e) s.missed.insert(e);
      if (err.ok()) err = st;
      continue;
    }
    if (slots_.size() > 1) {
      std::lock_guard lock(s.mu);
      for (uint32_t e = first; e <= last; ++e) s.unsynced.insert(e);
    }
    took |= uint32_t{1} << j.index;
    if (j.health == CopyState::Health::kWhole) ++whole;
  }
  if (whole >= quorum_) {
    // Acknowledged without some copies: each is recorded stale first, so
    // that no later open takes it for whole (IntentMap::MarkStale).
    for (size_t i = 0; intent_ != nullptr && i < slots_.size(); ++i) {
      if ((took >> i & 1) != 0) continue;
      if (Status st = intent_->MarkStale(slots_[i]->copy->name()); !st.ok()) {
        return Status(Errc::kIoError, fmt::format("the write reached {} of {} copies, and {} could not be recorded "
                                                  "as missing it: {}", whole, slots_.size(),
                                                  slots_[i]->copy->name(), st.message()));
      }
    }
    return Status::Ok();
  }
  return Status(err.ok() ? Errc::kIoError : err.code(),
                fmt::format("{} of {} copies took the write, {} needed{}", whole, slots_.size(), quorum_,
                            err.ok() ? "" : ": " + err.message()));
}

Status Mirror::Write(uint64_t offset, ByteView src) {
  return Mutate(offset, src.size(), [&](Copy& c) { return c.StartWrite(offset, src); });
}

Status Mirror::Zero(uint64_t offset, uint64_t length, bool release) {
  return Mutate(offset, length, [&](Copy& c) {
    Status st = c.Zero(offset, length, release);
    return std::function<Status()>([st] { return st; });
  });
}

bool Mirror::AllInStep() {
  for (auto& sp : slots_) {
    if (sp->health.load(std::memory_order_acquire) != CopyState::Health::kWhole || ResyncPending(*sp)) return false;
  }
  return true;
}

Status Mirror::Sync() {
  // The intent map clears marks only across a sync of every copy, whole
  // and in step from its start to its end (one that missed writes keeps
  // them marked for its rebuild, and a resync its marks until it is done).
  const bool in_step = intent_ != nullptr && AllInStep();
  const uint64_t epoch = intent_ != nullptr ? intent_->StartSync() : 0;
  unsigned whole = 0;
  Status err;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    const CopyState::Health h = s.health.load(std::memory_order_acquire);
    if (h == CopyState::Health::kFailed) continue;
    std::set<uint32_t> covered;  // written before this sync: durable once it returns
    {
      std::lock_guard lock(s.mu);
      covered.swap(s.unsynced);
    }
    Status st = s.copy->Sync();
    if (!st.ok()) {
      // What it had not made durable may be lost: rebuilt with what it missed.
      {
        std::lock_guard lock(s.mu);
        s.unsynced.merge(covered);
      }
      Fail(s, st);
      if (err.ok()) err = st;
      continue;
    }
    if (h == CopyState::Health::kWhole) ++whole;
  }
  if (intent_ != nullptr) intent_->EndSync(epoch, in_step && err.ok() && whole == slots_.size() && AllInStep());
  if (whole >= quorum_) return Status::Ok();
  return Status(Errc::kIoError, fmt::format("{} of {} copies synced, {} needed{}", whole, slots_.size(),
                                            quorum_, err.ok() ? "" : ": " + err.message()));
}

Status Mirror::CopyExtent(Slot& target, uint32_t p, std::vector<std::byte>& buf) {
  std::unique_lock stripe(StripeOf(uint64_t{p} * kExtent));
  Status st = Status(Errc::kUnavailable, "no whole copy to copy from");
  for (auto& sp : slots_) {
    Slot& src = *sp;
    if (&src == &target || src.health.load() != CopyState::Health::kWhole) continue;
    st = src.copy->Read(uint64_t{p} * kExtent, MutableByteView(buf.data(), buf.size()));
    if (st.ok()) break;
    Fail(src, st);
  }
  if (!st.ok()) return st;
  return AllZero(buf.data(), buf.size())
             ? target.copy->Zero(uint64_t{p} * kExtent, kExtent, true)
             : target.copy->Write(uint64_t{p} * kExtent, ByteView(buf.data(), buf.size()));
}

Status Mirror::Resync(Slot& target) {
  std::vector<std::byte> buf(kExtent);
  for (uint32_t p : allocated_()) {
    // Failed meanwhile: Fail() turned the resync into a full rebuild.
    if (target.health.load() != CopyState::Health::kWhole || !ResyncPending(target)) return Status::Ok();
    if (intent_ != nullptr && !intent_->Dirty(p)) continue;  // no write was in flight there
    Status st = CopyExtent(target, p, buf);
    if (!st.ok()) {
      Fail(target, st);
      return st;
    }
    std::lock_guard lock(target.mu);
    target.rebuilt++;
  }
  std::lock_guard lock(target.mu);
  target.resync = false;
  return Status::Ok();
}

Status Mirror::Rebuild(Slot& target) {
  std::vector<std::byte> buf(kExtent);
  for (;;) {
    std::set<uint32_t> work;
    bool full;
    {
      std::lock_guard lock(target.mu);
      work.swap(target.missed);
      full = target.full;
      target.full = false;
    }
    if (full) {
      for (uint32_t p : allocated_()) work.insert(p);
    }
    if (work.empty()) break;
    for (uint32_t p : work) {
      Status st = CopyExtent(target, p, buf);
      if (!st.ok()) {
        {
          std::lock_guard lock(target.mu);
          // Not done: this extent and the rest of the list again next time.
          for (uint32_t q : work) {
            if (q >= p) target.missed.insert(q);
          }
          target.full = target.full || full;
        }
        Fail(target, st);
        return st;
      }
      std::lock_guard lock(target.mu);
      target.rebuilt++;
    }
  }
  QCLOUD_RETURN_IF_ERROR(WriteHeader(*target.copy, kCopyWhole));
  std::lock_guard lock(target.mu);
  // More to do (written while it failed again), or it failed meanwhile:
  // the next Maintain() goes on.
  if (!target.missed.empty() || target.full || target.health.load() != CopyState::Health::kRebuilding) {
    return Status::Ok();
  }
  target.health = CopyState::Health::kWhole;
  if (intent_ != nullptr) intent_->ClearStale(target.copy->name());
  return Status::Ok();
}

Status Mirror::Maintain() {
  std::lock_guard maintain(maintain_mu_);
  Status first;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (s.health.load() != CopyState::Health::kFailed && !s.copy->StillThere()) {
      Fail(s, Status(Errc::kUnavailable, "its file was removed or replaced"));
      std::lock_guard lock(s.mu);
      s.full = true;
    }
    if (s.health.load() != CopyState::Health::kFailed) continue;
    Status st = s.copy->Open();
    std::array<std::byte, kHeaderSize> h{};
    if (st.ok()) st = s.copy->Read(0, MutableByteView(h.data(), h.size()));
    if (!st.ok()) {
      std::lock_guard lock(s.mu);
      s.last_error = st.ToString();
      if (first.ok()) first = st;
      continue;
    }
    const bool whole_before = std::memcmp(h.data(), kMagic.data(), kMagic.size()) == 0 &&
                              std::memcmp(h.data() + kUuidAt, uuid_.data(), uuid_.size()) == 0 &&
                              h[kStateAt] == static_cast<std::byte>(kCopyWhole);
    {
      std::lock_guard lock(s.mu);
      // A copy that comes back without its header (wiped, replaced) has
      // lost everything, not only what it missed.
      if (!whole_before) s.full = true;
    }
    st = WriteHeader(*s.copy, kCopyRebuilding);
    if (st.ok()) {
      std::lock_guard lock(s.mu);
      s.health = CopyState::Health::kRebuilding;
    }
    if (st.ok()) st = Rebuild(s);
    if (!st.ok()) {
      Fail(s, st);
      if (first.ok()) first = st;
    }
  }
  for (auto& sp : slots_) {
    Slot& s = *sp;
    if (!ResyncPending(s) || s.health.load() != CopyState::Health::kWhole) continue;
    if (Status st = Resync(s); !st.ok() && first.ok()) first = st;
  }
  return first;
}

std::vector<CopyState> Mirror::states() {
  std::vector<CopyState> out;
  for (auto& sp : slots_) {
    Slot& s = *sp;
    std::lock_guard lock(s.mu);
    out.push_back({.name = s.copy->name(),
                   .health = s.health.load(),
                   .missed = s.missed.size(),
                   .failures = s.failures,
                   .rebuilt = s.rebuilt,
                   .resyncing = s.resync,
                   .last_error = s.last_error});
  }
  return out;
}

uint64_t Mirror::capacity() const noexcept {
  uint64_t cap = 0;
  for (auto& sp : slots_) {
    const uint64_t c = sp->copy->capacity();
    if (c != 0) cap = cap == 0 ? c : std::min(cap, c);
  }
  return cap;
}

}  // namespace qcloud::block::detail
