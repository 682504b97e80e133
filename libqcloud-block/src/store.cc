// The volume store engine: layers of extent maps over one data file, and
// the metadata database that makes them durable (block/meta.h).
//
// Locking, outermost first:
//   flush_mu_   one flush or one volume/snapshot operation at a time;
//   gate_       shared by I/O and flushes, exclusive for volume/snapshot
//               operations (they change layers and the volume table, which
//               I/O reads without further locks);
//   a volume's extent stripe (stripes[idx % kStripes]): shared by reads,
//               exclusive by writes, trims and zeroes of that extent;
//   a volume's map_mu: its top layer's map and dirty set (short holds,
//               never across I/O);
//   alloc_mu_   the physical extent allocator.
// Frozen layers (every layer but a volume's top) change only under gate_
// held exclusively, so I/O reads them with no lock.

#include "qcloud/block/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <bit>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "block/device.h"
#include "block/meta.h"
#include "block/tier.h"
#include "qcloud/core/check.h"

namespace qcloud::block {

namespace {

using detail::ExtentRec;
using detail::LayerRec;
using detail::MetaDb;

constexpr size_t kStripes = 64;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool ValidName(std::string_view n) {
  if (n.empty() || n.size() > kMaxNameLength || n[0] == '.') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

struct Extent : ExtentRec {
  bool Has(unsigned b) const noexcept { return (bits[b >> 6] >> (b & 63)) & 1; }
  void Set(unsigned b) noexcept { bits[b >> 6] |= uint64_t{1} << (b & 63); }
  void Clear(unsigned b) noexcept { bits[b >> 6] &= ~(uint64_t{1} << (b & 63)); }
  bool Full() const noexcept {
    return std::all_of(bits.begin(), bits.end(), [](uint64_t w) { return w == ~uint64_t{0}; });
  }
  bool Empty() const noexcept {
    return std::all_of(bits.begin(), bits.end(), [](uint64_t w) { return w == 0; });
  }
};

struct Layer {
  uint64_t id = 0;
  Layer* parent = nullptr;
  uint64_t limit = UINT64_MAX;  // reads at or past this byte offset do not descend
  std::unordered_map<uint64_t, Extent> map;
  std::unordered_set<uint64_t> dirty;  // top layers: extents changed since the last commit
  int children = 0;                    // layers whose parent this is
  int names = 0;                       // volumes (as top) and snapshots naming it
  LayerRec Rec() const { return {.id = id, .parent = parent ? parent->id : 0, .limit = limit}; }
};

struct VolumeState {
  std::string name;
  std::atomic<uint64_t> size{0};
  Layer* top = nullptr;  // changes only under gate_ exclusive
  int64_t created_ns = 0;
  std::string origin;
  std::atomic<bool> deleted{false};
  std::mutex map_mu;
  std::array<std::shared_mutex, kStripes> stripes;
  // Write merging: the run of adjacent small writes not yet written out
  // (acknowledged already). merge_mu is taken before a stripe.
  std::mutex merge_mu;
  uint64_t merge_idx = 0;   // its extent
  uint32_t merge_off = 0;   // its offset in the extent
  std::vector<std::byte> merge_buf;  // empty = no run
  // merge_buf is not empty: lets reads and trims skip merge_mu when there
  // is no run (the common case). Written under merge_mu.
  std::atomic<bool> merge_pending{false};
  // Read-ahead: where the next sequential read would start, how many in a
  // row were, and how far ahead has been asked for.
  std::atomic<uint64_t> next_read{UINT64_MAX};
  std::atomic<uint32_t> streak{0};
  std::atomic<uint64_t> ahead_until{0};
};

struct SnapshotState {
  uint64_t size = 0;
  Layer* layer = nullptr;
  int64_t created_ns = 0;
};

struct Counters {
  std::atomic<uint64_t> reads{0}, writes{0}, flushes{0}, trims{0}, zeroes{0};
  std::atomic<uint64_t> read_bytes{0}, write_bytes{0}, data_writes{0}, merged_reads{0}, merged_writes{0};
  std::atomic<uint64_t> readaheads{0}, readahead_bytes{0};
  std::atomic<uint64_t> commits{0}, enospc{0};
};

void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) { c.fetch_add(n, std::memory_order_relaxed); }

// Splits [offset, offset + length) at extent boundaries: fn(idx, off, n,
// done) for each piece (extent idx, n bytes from off, `done` bytes before
// it), in order; stops at fn's first error.
template <typename F>
Status ForEachExtent(uint64_t offset, uint64_t length, F&& fn) {
  uint64_t done = 0;
  while (done < length) {
    const uint64_t at = offset + done;
    const uint64_t idx = at / kExtentSize;
    const auto off = static_cast<uint32_t>(at % kExtentSize);
    const auto n = static_cast<uint32_t>(std::min<uint64_t>(length - done, kExtentSize - off));
    QCLOUD_RETURN_IF_ERROR(fn(idx, off, n, done));
    done += n;
  }
  return Status::Ok();
}

// Zero-copy reads (Volume::PlanRead): the physical extents plans refer to,
// and those freed while referred to, waiting for the last reference.
struct Pins {
  std::mutex mu;
  std::unordered_map<uint32_t, uint32_t> count;
  std::unordered_set<uint32_t> deferred;  // freed while pinned
  std::vector<uint32_t> released;         // deferred, unpinned since: to recycle
  std::atomic<bool> any_released{false};

  void Unpin(const std::vector<uint32_t>& phys) {
    std::lock_guard lock(mu);
    for (uint32_t p : phys) {
      auto it = count.find(p);
      if (it == count.end() || --it->second > 0) continue;
      count.erase(it);
      if (deferred.erase(p) > 0) {
        released.push_back(p);
        any_released.store(true, std::memory_order_release);
      }
    }
  }
};

// The data file reads go to, mapped read-only, so that a zero-copy read
// of cached pages is sent from memory (one copy, by the kernel, into the
// socket) rather than spliced (a hand-off to io_uring's worker per reply,
// and data the client then reads from memory it has not seen). The
// mapping reserves address space for the largest data file; pages past
// the file's end are never touched: only ranges mincore(2) finds cached
// are sent from it.
class DataMap {
 public:
  static constexpr uint64_t kReserve = uint64_t{1} << 40;

  static std::shared_ptr<DataMap> Map(std::shared_ptr<File> file) {
    void* p = ::mmap(nullptr, kReserve, PROT_READ, MAP_SHARED | MAP_NORESERVE, file->native_handle(), 0);
    if (p == MAP_FAILED) return nullptr;
    auto m = std::make_shared<DataMap>();
    m->file_ = std::move(file);
    m->base_ = static_cast<std::byte*>(p);
    return m;
  }
  ~DataMap() {
    if (base_ != nullptr) ::munmap(base_, kReserve);
  }
  const File* file() const noexcept { return file_.get(); }

  // The bytes of [offset, offset + length) when every page of it is in the
  // page cache, else null.
  const std::byte* Cached(uint64_t offset, uint64_t length) const {
    if (offset >= kReserve || length > kReserve - offset || length == 0) return nullptr;
    static const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
    const uint64_t from = offset / page * page;
    const uint64_t to = (offset + length + page - 1) / page * page;
    std::array<unsigned char, 256> vec{};
    for (uint64_t at = from; at < to;) {
      const uint64_t n = std::min<uint64_t>(to - at, vec.size() * page);
      if (::mincore(base_ + at, n, vec.data()) != 0) return nullptr;
      for (uint64_t i = 0; i < n / page; ++i) {
        if ((vec[i] & 1) == 0) return nullptr;
      }
      at += n;
    }
    return base_ + offset;
  }

  // Before [offset, offset + length) is punched out and reused: drops this
  // mapping's references to its pages (no plan refers to them), so that
  // Mirror::Uncached() can drop the pages; the 2 MiB-aligned range around
  // it, as there (a large folio may straddle extents). A neighbouring
  // extent in that range may have a reply queued from this mapping: its
  // bytes stay right (the mapping faults them back in), but the send that
  // faults reads the disk on the loop's thread. Recycling is rare (trims,
  // deletes), so that stall is accepted rather than tracked.
  void Forget(uint64_t offset, uint64_t length) const {
    const uint64_t from = offset / detail::kLargestFolio * detail::kLargestFolio;
    const uint64_t to = std::min(kReserve, (offset + length + detail::kLargestFolio - 1) /
                                               detail::kLargestFolio * detail::kLargestFolio);
    if (from < to) (void)::madvise(base_ + from, to - from, MADV_DONTNEED);
  }

 private:
  std::shared_ptr<File> file_;
  std::byte* base_ = nullptr;
};

// A plan's hold: its file stays open (and mapped), its extents pinned.
struct PlanHold {
  std::shared_ptr<Pins> pins;
  std::shared_ptr<File> file;
  std::shared_ptr<DataMap> map;
  std::vector<uint32_t> phys;
  ~PlanHold() {
    if (pins) pins->Unpin(phys);
  }
};

class StoreImpl;

class VolumeHandle final : public Volume {
 public:
  VolumeHandle(StoreImpl* store, std::shared_ptr<VolumeState> v) : store_(store), v_(std::move(v)) {}
  const std::string& name() const noexcept override { return v_->name; }
  uint64_t size() const noexcept override { return v_->size.load(std::memory_order_relaxed); }
  Status Read(uint64_t offset, MutableByteView dst) override;
  Status Write(uint64_t offset, ByteView src, bool fua) override;
  Status Flush() override;
  Status Trim(uint64_t offset, uint64_t length, bool fua) override;
  Status WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole) override;
  Status Map(uint64_t offset, uint64_t length, std::vector<Run>& runs, size_t max_runs) override;
  Status Prefetch(uint64_t offset, uint64_t length) override;
  Result<bool> PlanRead(uint64_t offset, uint64_t length, ReadPlan& plan) override;

 private:
  StoreImpl* store_;
  std::shared_ptr<VolumeState> v_;
};

class StoreImpl final : public Store {
 public:
  static Result<std::unique_ptr<Store>> Open(const StoreOptions& options);
  ~StoreImpl() override {
    if (lock_fd_ >= 0) ::close(lock_fd_);
  }

  Status CreateVolume(std::string_view name, uint64_t size) override;
  Status ResizeVolume(std::string_view name, uint64_t size) override;
  Status DeleteVolume(std::string_view name) override;
  std::vector<VolumeInfo> ListVolumes() override;
  Result<VolumeInfo> GetVolume(std::string_view name) override;
  Result<std::shared_ptr<Volume>> OpenVolume(std::string_view name) override;
  Status CreateSnapshot(std::string_view volume, std::string_view snapshot) override;
  Status DeleteSnapshot(std::string_view volume, std::string_view snapshot) override;
  Status Rollback(std::string_view volume, std::string_view snapshot) override;
  Status Clone(std::string_view volume, std::string_view snapshot, std::string_view target) override;
  std::vector<SnapshotInfo> ListSnapshots(std::string_view volume) override;
  Status Flush() override;
  Status Maintain() override {
    {
      // Runs do not wait for the next write or flush longer than this.
      std::shared_lock gate(gate_);
      QCLOUD_RETURN_IF_ERROR(WriteOutAll());
    }
    if (tier_) tier_->Demote();
    if (zero_copy_) Recycle({});  // extents whose pages were still cached
    return mirror_->Maintain();
  }
  Status Close() override {
    Status st = Flush();
    std::unique_lock gate(gate_);  // the I/O in flight first
    Status marked = mirror_->Close();
    closed_ = true;
    return st.ok() ? marked : st;
  }
  std::vector<CopyInfo> copies() override;
  StoreStats stats() override;

  // I/O, from VolumeHandle.
  Status Read(VolumeState& v, uint64_t offset, MutableByteView dst);
  Status Write(VolumeState& v, uint64_t offset, ByteView src, bool fua);
  Status Zero(VolumeState& v, uint64_t offset, uint64_t length, bool fua, bool no_hole, bool trim);
  Status Map(VolumeState& v, uint64_t offset, uint64_t length, std::vector<Volume::Run>& runs, size_t max_runs);
  Result<bool> PlanRead(VolumeState& v, uint64_t offset, uint64_t length, Volume::ReadPlan& plan);
  Status Prefetch(VolumeState& v, uint64_t offset, uint64_t length) {
    std::shared_lock gate(gate_);
    QCLOUD_RETURN_IF_ERROR(CheckIo(v, offset, length));
    Advise(v, offset, offset + length);
    return Status::Ok();
  }

 private:

  Status CheckIo(const VolumeState& v, uint64_t offset, uint64_t length) const;
  static uint64_t DataOffset(uint32_t phys, unsigned block) {
    return uint64_t{phys} * kExtentSize + uint64_t{block} * kBlockSize;
  }
  // The physical extent holding block b of logical extent idx for a reader
  // of `layer` whose own entry is `own` (null: none); 0 = reads as zeros.
  static uint32_t Source(const Layer* layer, const Extent* own, uint64_t idx, unsigned b);
  // Reads block b of extent idx as seen from below `layer` (its parents),
  // for an unaligned write into a block the layer does not hold yet.
  Status ReadBelow(const Layer* layer, uint64_t idx, unsigned b, std::byte* dst);
  Status ReadRun(uint32_t phys, uint64_t file_offset, MutableByteView dst);
  bool AnyBelow(const Layer* layer, uint64_t idx, unsigned b0, unsigned b1) const;

  Status ReadExtent(VolumeState& v, uint64_t idx, uint32_t off, MutableByteView dst);
  // Calls fn(phys, from, to) for each run of blocks of [off, end) in extent
  // idx that v reads from one physical extent (0: zeros), in order; stops
  // at fn's first error. The caller holds the extent's stripe.
  template <typename F>
  Status ForEachRun(VolumeState& v, uint64_t idx, uint32_t off, uint32_t end, F&& fn);
  // Writes out v's merge run if it overlaps [offset, offset + length).
  Status WriteOutOverlapping(VolumeState& v, uint64_t offset, uint64_t length);
  // Notes a read of [offset, end) and reads ahead for a sequential reader.
  void ReadAhead(VolumeState& v, uint64_t offset, uint64_t end);
  // Asks the copies to read the physical extents behind [from, to) ahead.
  void Advise(VolumeState& v, uint64_t from, uint64_t to);

  Status WriteExtent(VolumeState& v, uint64_t idx, uint32_t off, ByteView src);
  Status ZeroExtent(VolumeState& v, uint64_t idx, uint32_t off, uint32_t len, bool no_hole);
  // Write merging. Merge() takes the write into the volume's run when it
  // continues it (or starts one); false: the caller writes it itself,
  // after WriteOutLocked() of the run. merge_mu held for both.
  Result<bool> MergeLocked(VolumeState& v, uint64_t offset, ByteView src);
  Status WriteOutLocked(VolumeState& v);
  Status WriteOut(VolumeState& v) {
    // A reader that misses a run started concurrently is ordered before
    // that write anyway; a completed write's run is seen (same thread, or
    // the acknowledgement came after the store).
    if (!v.merge_pending.load(std::memory_order_acquire)) return Status::Ok();
    std::lock_guard lock(v.merge_mu);
    return WriteOutLocked(v);
  }
  Status WriteOutAll();
  // Gives `v`'s top layer an entry for idx (allocating its physical extent);
  // map_mu held. kResourceExhausted when there is none left.
  Result<Extent*> EnsureEntryLocked(VolumeState& v, uint64_t idx);

  Result<uint32_t> Allocate();
  // The physical extents in use (or freed and not yet committed): what a
  // replica rebuilt from scratch must get.
  std::vector<uint32_t> InUse();
  // After the commit that freed them: the extents go back to the free
  // list (their space to the file system), or, with zero-copy reads, once
  // no plan refers to them and no page of them is cached (see PlanRead).
  void ReleaseNow(const std::vector<uint32_t>& phys);
  // Punches out and frees what can be now; keeps the rest for later.
  void Recycle(std::vector<uint32_t> phys);
  // Extents freed while a read plan referred to them and unpinned since go
  // back to the free list before a write may need one. Called before any
  // map lock is taken: recycling punches holes in every copy (a round trip
  // to each NBD one), which must not hold up other writers of the volume.
  void RecycleReleased() {
    if (pins_->any_released.load(std::memory_order_acquire)) Recycle({});
  }

  Status FlushLocked();  // flush_mu_ held, gate_ held (either way)
  Layer* NewLayer(Layer* parent);
  // Drops layers nothing names or reads, merges a frozen layer read by one
  // child into it; records the changes in `txn` and the freed extents.
  Status Collect(uint64_t layer_id, MetaDb::Txn& txn, std::vector<uint32_t>& freed, bool& copied);
  Status MergeInto(Layer* l, Layer* child, MetaDb::Txn& txn, std::vector<uint32_t>& freed,
                   bool& copied);
  // Commits an operation's transaction; on failure the store refuses
  // further changes (its memory no longer matches the disk).
  Status CommitAdmin(MetaDb::Txn& txn, const std::vector<uint32_t>& freed, bool copied);
  detail::VolumeRec VolumeRecOf(const VolumeState& v) const {
    return {.name = v.name, .size = v.size.load(), .layer = v.top->id, .created_ns = v.created_ns,
            .origin = v.origin};
  }
  Status Broken() const;

  StoreOptions options_;
  int lock_fd_ = -1;  // <data_dir>/LOCK, flock'd while the store is open
  std::unique_ptr<Env> own_env_;
  Env* env_ = nullptr;
  std::unique_ptr<detail::Mirror> mirror_;  // extents.dat and its replicas
  std::unique_ptr<detail::Tier> tier_;      // the SSD tier above them, if any
  // The data path: through the tier when there is one.
  Status DevRead(uint64_t offset, MutableByteView dst) {
    return tier_ ? tier_->Read(offset, dst) : mirror_->Read(offset, dst);
  }
  Status DevWrite(uint64_t offset, ByteView src) {
    return tier_ ? tier_->Write(offset, src) : mirror_->Write(offset, src);
  }
  Status DevZero(uint64_t offset, uint64_t length, bool release) {
    return tier_ ? tier_->Zero(offset, length, release) : mirror_->Zero(offset, length, release);
  }
  std::unique_ptr<MetaDb> db_;

  std::mutex flush_mu_;
  std::shared_mutex gate_;
  std::map<std::string, std::shared_ptr<VolumeState>, std::less<>> volumes_;
  std::map<std::pair<std::string, std::string>, SnapshotState> snapshots_;
  std::unordered_map<uint64_t, std::unique_ptr<Layer>> layers_;
  uint64_t next_layer_ = 1;
  Status broken_;
  std::atomic<bool> closed_{false};  // Close() returned: no more changes

  // Zero-copy reads: on when the kernel can tell cached pages and punch
  // holes in every local copy, and there is no SSD tier (its slots are
  // reused all the time).
  bool zero_copy_ = false;
  std::shared_ptr<Pins> pins_ = std::make_shared<Pins>();
  // The read copy's file mapped (DataMap), made on the first zero-copy
  // read and again when reads go to another copy.
  std::shared_ptr<DataMap> MapOf(const std::shared_ptr<File>& file) {
    std::lock_guard lock(map_mu_);
    if (map_failed_ == file.get()) return nullptr;  // not tried again for the same file
    if (map_ == nullptr || map_->file() != file.get()) {
      map_ = DataMap::Map(file);
      if (map_ == nullptr) map_failed_ = file.get();
    }
    return map_;
  }
  std::mutex map_mu_;
  std::shared_ptr<DataMap> map_;
  const File* map_failed_ = nullptr;
  std::mutex recycle_mu_;
  std::vector<uint32_t> unsettled_;  // freed and unpinned, pages still cached: retried

  std::mutex alloc_mu_;
  std::vector<uint32_t> free_;
  std::vector<uint32_t> pending_free_;
  uint32_t high_water_ = 1;  // lowest never-used physical extent
  uint64_t allocated_ = 0;   // in use or pending free
  uint64_t capacity_ = 0;    // extents; 0 = unlimited

  Counters counters_;
};

// ---- open and recovery ----

Result<std::unique_ptr<Store>> StoreImpl::Open(const StoreOptions& options) {
  if (options.data_dir.empty()) return InvalidArgument("block store: data_dir is required");
  std::unique_ptr<StoreImpl> s(new StoreImpl());
  s->options_ = options;
  s->env_ = options.env;
  if (s->env_ == nullptr) {
    QCLOUD_ASSIGN_OR_RETURN(s->own_env_, OpenPosixEnv());
    s->env_ = s->own_env_.get();
  }
  QCLOUD_RETURN_IF_ERROR(s->env_->CreateDirs(options.data_dir));
  // One process at a time: the maps live in the opener's memory.
  const std::string lock_path = JoinPath(options.data_dir, "LOCK");
  s->lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (s->lock_fd_ < 0) return Status::FromErrno(errno, "open " + lock_path);
  if (::flock(s->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return Status(Errc::kUnavailable, options.data_dir + ": the block store is open in another process");
    }
    return Status::FromErrno(errno, "flock " + lock_path);
  }
  QCLOUD_ASSIGN_OR_RETURN(s->db_, MetaDb::Open(JoinPath(options.data_dir, "meta"), options.max_map_bytes));
  QCLOUD_ASSIGN_OR_RETURN(detail::Loaded loaded, s->db_->Load());

  s->next_layer_ = loaded.next_layer;
  for (const LayerRec& r : loaded.layers) {
    auto l = std::make_unique<Layer>();
    l->id = r.id;
    l->limit = r.limit;
    s->next_layer_ = std::max(s->next_layer_, r.id + 1);
    s->layers_.emplace(r.id, std::move(l));
  }
  for (const LayerRec& r : loaded.layers) {
    if (r.parent == 0) continue;
    auto it = s->layers_.find(r.parent);
    if (it == s->layers_.end()) return Corruption(fmt::format("layer {} has no parent {}", r.id, r.parent));
    s->layers_[r.id]->parent = it->second.get();
    it->second->children++;
  }
  auto layer_of = [&](uint64_t id) -> Layer* {
    auto it = s->layers_.find(id);
    return it == s->layers_.end() ? nullptr : it->second.get();
  };
  std::vector<bool> used;
  for (auto& [key, rec] : loaded.extents) {
    Layer* l = layer_of(key.first);
    if (l == nullptr) return Corruption(fmt::format("extent of missing layer {}", key.first));
    Extent e;
    static_cast<ExtentRec&>(e) = rec;
    l->map.emplace(key.second, e);
    if (rec.phys >= used.size()) used.resize(size_t{rec.phys} + 1, false);
    if (used[rec.phys]) return Corruption(fmt::format("physical extent {} mapped twice", rec.phys));
    used[rec.phys] = true;
  }
  for (auto& r : loaded.volumes) {
    Layer* l = layer_of(r.layer);
    if (l == nullptr) return Corruption(fmt::format("volume {} has no layer {}", r.name, r.layer));
    auto v = std::make_shared<VolumeState>();
    v->name = r.name;
    v->size = r.size;
    v->top = l;
    v->created_ns = r.created_ns;
    v->origin = r.origin;
    l->names++;
    s->volumes_.emplace(r.name, std::move(v));
  }
  for (auto& r : loaded.snapshots) {
    Layer* l = layer_of(r.layer);
    if (l == nullptr) return Corruption(fmt::format("snapshot {}@{} has no layer", r.volume, r.name));
    l->names++;
    s->snapshots_[{r.volume, r.name}] = {.size = r.size, .layer = l, .created_ns = r.created_ns};
  }
  s->high_water_ = static_cast<uint32_t>(std::max<size_t>(used.size(), 1));
  for (uint32_t p = 1; p < s->high_water_; ++p) {
    if (used[p]) {
      s->allocated_++;
    } else {
      s->free_.push_back(p);
    }
  }
  std::reverse(s->free_.begin(), s->free_.end());  // lowest first
  s->capacity_ = options.capacity_bytes / kExtentSize;

  // The copies of the extents: the data directory's, then the replicas.
  std::vector<std::unique_ptr<detail::Copy>> copies;
  copies.push_back(detail::NewLocalCopy(*s->env_, options.data_dir));
  // The replicas named now, or else the ones the store last had: a tool
  // that opens a stopped store must not leave its copies behind.
  std::vector<std::string> replicas = options.replicas;
  unsigned write_quorum = options.write_quorum;
  if (replicas.empty()) {
    replicas = s->db_->replicas();
    if (write_quorum == 0) write_quorum = s->db_->write_quorum();
  } else if (replicas != s->db_->replicas() || write_quorum != s->db_->write_quorum()) {
    QCLOUD_RETURN_IF_ERROR(s->db_->PutReplicas(replicas, write_quorum));
  }
  for (const std::string& spec : replicas) {
    QCLOUD_ASSIGN_OR_RETURN(auto c, detail::NewCopy(*s->env_, spec));
    copies.push_back(std::move(c));
  }
  const auto n = static_cast<unsigned>(copies.size());
  if (n > 5) return InvalidArgument(fmt::format("{} copies: at most 5 (4 replicas)", n));
  const unsigned quorum = write_quorum != 0 ? write_quorum : n / 2 + 1;
  if (quorum > n) return InvalidArgument(fmt::format("write quorum {} of {} copies", quorum, n));
  // With copies that can disagree, the write-intent map bounds the resync
  // after a crash to what was being written.
  std::unique_ptr<detail::IntentMap> intent;
  if (n > 1) {
    QCLOUD_ASSIGN_OR_RETURN(intent, detail::IntentMap::Open(*s->env_, JoinPath(options.data_dir, "intent.map"),
                                                            s->db_->uuid()));
  }
  StoreImpl* raw = s.get();
  s->mirror_ = std::make_unique<detail::Mirror>(std::move(copies), quorum, s->db_->uuid(),
                                                [raw] { return raw->InUse(); }, std::move(intent));
  QCLOUD_RETURN_IF_ERROR(s->mirror_->Start(loaded.extents.empty()));
  if (!options.ssd_dir.empty()) {
    QCLOUD_ASSIGN_OR_RETURN(s->tier_, detail::Tier::Open(*s->env_, options.ssd_dir, options.ssd_bytes, *s->mirror_));
  }
  s->zero_copy_ = s->tier_ == nullptr && s->mirror_->CanTellCached();
  // An NBD replica bounds the space: the data directory has none of its own.
  if (s->capacity_ == 0 && s->mirror_->capacity() >= 2 * kExtentSize) {
    s->capacity_ = s->mirror_->capacity() / kExtentSize - 1;
  }
  return std::unique_ptr<Store>(std::move(s));
}

Status StoreImpl::Broken() const {
  if (closed_.load(std::memory_order_relaxed)) {
    return Status(Errc::kUnavailable, "block store is closed");
  }
  if (broken_.ok()) return broken_;
  return Status(Errc::kIoError, "block store failed a commit; reopen it: " + broken_.message());
}

// ---- allocation ----

Result<uint32_t> StoreImpl::Allocate() {
  std::lock_guard lock(alloc_mu_);
  if (capacity_ != 0 && allocated_ >= capacity_) {
    Bump(counters_.enospc);
    return Status(Errc::kResourceExhausted, "block store: no free extent (capacity reached)");
  }
  uint32_t p;
  if (!free_.empty()) {
    p = free_.back();
    free_.pop_back();
  } else {
    if (high_water_ == UINT32_MAX) return Status(Errc::kResourceExhausted, "block store: extent numbers exhausted");
    p = high_water_++;
  }
  allocated_++;
  return p;
}

std::vector<uint32_t> StoreImpl::InUse() {
  std::lock_guard lock(alloc_mu_);
  std::vector<bool> free(high_water_, false);
  for (uint32_t p : free_) free[p] = true;
  std::vector<uint32_t> out;
  for (uint32_t p = 1; p < high_water_; ++p) {
    if (!free[p]) out.push_back(p);
  }
  return out;
}

void StoreImpl::ReleaseNow(const std::vector<uint32_t>& phys) {
  if (!zero_copy_) {
    Recycle(phys);
    return;
  }
  std::vector<uint32_t> now;
  {
    std::lock_guard lock(pins_->mu);
    for (uint32_t p : phys) {
      if (pins_->count.contains(p)) {
        pins_->deferred.insert(p);
      } else {
        now.push_back(p);
      }
    }
  }
  Recycle(std::move(now));
}

void StoreImpl::Recycle(std::vector<uint32_t> phys) {
  std::lock_guard recycle(recycle_mu_);
  if (zero_copy_) {
    {
      std::lock_guard lock(pins_->mu);
      phys.insert(phys.end(), pins_->released.begin(), pins_->released.end());
      pins_->released.clear();
      pins_->any_released.store(false, std::memory_order_relaxed);
    }
    phys.insert(phys.end(), unsettled_.begin(), unsettled_.end());
    unsettled_.clear();
  }
  std::vector<uint32_t> ready;
  for (uint32_t p : phys) {
    // A page still cached may be one a reply in a socket refers to: a punch
    // could zero it in place (part of a large folio), a reuse rewrite it.
    if (zero_copy_) {
      std::shared_ptr<DataMap> map;
      {
        std::lock_guard lock(map_mu_);
        map = map_;
      }
      if (map != nullptr) map->Forget(DataOffset(p, 0), kExtentSize);
    }
    if (zero_copy_ && !mirror_->Uncached(DataOffset(p, 0), kExtentSize)) {
      unsettled_.push_back(p);
      continue;
    }
    // Give the space back to the file system; the number becomes reusable.
    (void)DevZero(DataOffset(p, 0), kExtentSize, true);
    ready.push_back(p);
  }
  std::lock_guard lock(alloc_mu_);
  for (uint32_t p : ready) free_.push_back(p);
  allocated_ -= ready.size();
}

// ---- reads ----

uint32_t StoreImpl::Source(const Layer* layer, const Extent* own, uint64_t idx, unsigned b) {
  if (own != nullptr && own->Has(b)) return own->phys;
  const uint64_t at = idx * kExtentSize + uint64_t{b} * kBlockSize;
  for (;;) {
    if (at >= layer->limit || layer->parent == nullptr) return 0;
    layer = layer->parent;
    auto it = layer->map.find(idx);
    if (it != layer->map.end() && it->second.Has(b)) return it->second.phys;
  }
}

bool StoreImpl::AnyBelow(const Layer* layer, uint64_t idx, unsigned b0, unsigned b1) const {
  for (unsigned b = b0; b < b1; ++b) {
    if (Source(layer, nullptr, idx, b) != 0) return true;
  }
  return false;
}

Status StoreImpl::ReadRun(uint32_t phys, uint64_t file_offset, MutableByteView dst) {
  if (phys == 0) {
    std::memset(dst.data(), 0, dst.size());
    return Status::Ok();
  }
  return DevRead(file_offset, dst);
}

Status StoreImpl::ReadBelow(const Layer* layer, uint64_t idx, unsigned b, std::byte* dst) {
  const uint32_t phys = Source(layer, nullptr, idx, b);
  return ReadRun(phys, DataOffset(phys, b), MutableByteView(dst, kBlockSize));
}

template <typename F>
Status StoreImpl::ForEachRun(VolumeState& v, uint64_t idx, uint32_t off, uint32_t end, F&& fn) {
  Extent own;
  bool have = false;
  {
    std::lock_guard lock(v.map_mu);
    auto it = v.top->map.find(idx);
    if (it != v.top->map.end()) {
      own = it->second;
      have = true;
    }
  }
  if (have && own.Full()) return fn(own.phys, off, end);
  uint32_t pos = off;
  while (pos < end) {
    const unsigned b = pos / kBlockSize;
    const uint32_t src = Source(v.top, have ? &own : nullptr, idx, b);
    unsigned nb = b + 1;
    while (nb * kBlockSize < end && Source(v.top, have ? &own : nullptr, idx, nb) == src) ++nb;
    const uint32_t run_end = std::min(end, nb * kBlockSize);
    QCLOUD_RETURN_IF_ERROR(fn(src, pos, run_end));
    pos = run_end;
  }
  return Status::Ok();
}

Status StoreImpl::ReadExtent(VolumeState& v, uint64_t idx, uint32_t off, MutableByteView dst) {
  std::shared_lock stripe(v.stripes[idx % kStripes]);
  // Runs of blocks that come from the same physical extent (or are zeros)
  // are read with one call.
  return ForEachRun(v, idx, off, off + static_cast<uint32_t>(dst.size()),
                    [&](uint32_t src, uint32_t pos, uint32_t run_end) {
                      MutableByteView part(dst.data() + (pos - off), run_end - pos);
                      return ReadRun(src, DataOffset(src, 0) + pos, part);
                    });
}

Status StoreImpl::WriteOutOverlapping(VolumeState& v, uint64_t offset, uint64_t length) {
  if (!v.merge_pending.load(std::memory_order_acquire)) return Status::Ok();
  std::lock_guard merge(v.merge_mu);
  const uint64_t run = v.merge_idx * kExtentSize + v.merge_off;
  if (!v.merge_buf.empty() && offset < run + v.merge_buf.size() && run < offset + length) {
    return WriteOutLocked(v);
  }
  return Status::Ok();
}

Status StoreImpl::CheckIo(const VolumeState& v, uint64_t offset, uint64_t length) const {
  if (v.deleted.load(std::memory_order_relaxed)) return NotFound("volume " + v.name + " was deleted");
  const uint64_t size = v.size.load(std::memory_order_relaxed);
  if (offset > size || length > size - offset) {
    return Status(Errc::kOutOfRange,
                  fmt::format("{}: [{}, +{}) is past the end ({} bytes)", v.name, offset, length, size));
  }
  return Status::Ok();
}

Status StoreImpl::Read(VolumeState& v, uint64_t offset, MutableByteView dst) {
  std::shared_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(CheckIo(v, offset, dst.size()));
  QCLOUD_RETURN_IF_ERROR(WriteOutOverlapping(v, offset, dst.size()));
  Bump(counters_.reads);
  Bump(counters_.read_bytes, dst.size());
  ReadAhead(v, offset, offset + dst.size());
  return ForEachExtent(offset, dst.size(), [&](uint64_t idx, uint32_t off, uint32_t n, uint64_t done) {
    return ReadExtent(v, idx, off, MutableByteView(dst.data() + done, n));
  });
}

Result<bool> StoreImpl::PlanRead(VolumeState& v, uint64_t offset, uint64_t length, Volume::ReadPlan& plan) {
  if (!zero_copy_) return false;
  std::shared_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(CheckIo(v, offset, length));
  std::shared_ptr<File> file = mirror_->ReadFile();
  if (file == nullptr) return false;
  const int fd = file->native_handle();
  QCLOUD_RETURN_IF_ERROR(WriteOutOverlapping(v, offset, length));
  Bump(counters_.reads);
  Bump(counters_.read_bytes, length);
  ReadAhead(v, offset, offset + length);
  auto hold = std::make_shared<PlanHold>();
  hold->map = MapOf(file);
  hold->file = std::move(file);
  plan.pieces.clear();
  auto add = [&](uint32_t phys, uint64_t at, uint64_t n) {
    const int piece_fd = phys == 0 ? -1 : fd;
    const uint64_t file_at = phys == 0 ? 0 : at;
    if (!plan.pieces.empty()) {
      Volume::FilePiece& last = plan.pieces.back();
      if (last.fd == piece_fd && (piece_fd < 0 || last.offset + last.length == file_at)) {
        last.length += n;
        return;
      }
    }
    plan.pieces.push_back({.fd = piece_fd, .offset = file_at, .length = n});
  };
  (void)ForEachExtent(offset, length, [&](uint64_t idx, uint32_t off, uint32_t n, uint64_t) {
    // Under the extent's stripe: a trim that frees an extent seen here
    // comes after the pin below, and defers its reuse.
    std::shared_lock stripe(v.stripes[idx % kStripes]);
    const size_t first_new = hold->phys.size();
    (void)ForEachRun(v, idx, off, off + n, [&](uint32_t src, uint32_t pos, uint32_t run_end) {
      add(src, DataOffset(src, 0) + pos, run_end - pos);
      if (src != 0 && std::find(hold->phys.begin() + static_cast<ptrdiff_t>(first_new), hold->phys.end(),
                                src) == hold->phys.end()) {
        hold->phys.push_back(src);
      }
      return Status::Ok();
    });
    if (hold->phys.size() > first_new) {
      std::lock_guard lock(pins_->mu);
      for (size_t i = first_new; i < hold->phys.size(); ++i) pins_->count[hold->phys[i]]++;
    }
    return Status::Ok();
  });
  hold->pins = pins_;  // from here on the destructor unpins
  if (hold->map != nullptr) {
    for (Volume::FilePiece& p : plan.pieces) {
      if (p.fd >= 0) p.mem = hold->map->Cached(p.offset, p.length);
    }
  }
  plan.hold = std::move(hold);
  return true;
}

void StoreImpl::ReadAhead(VolumeState& v, uint64_t offset, uint64_t end) {
  const bool sequential = v.next_read.exchange(end, std::memory_order_relaxed) == offset;
  const uint32_t streak = sequential ? v.streak.fetch_add(1, std::memory_order_relaxed) + 1 : 0;
  if (!sequential) v.streak.store(0, std::memory_order_relaxed);
  if (streak < 2) return;
  const uint64_t window = std::clamp<uint64_t>((end - offset) * 8, 256 * 1024, 4 * kExtentSize);
  const uint64_t ahead = v.ahead_until.load(std::memory_order_relaxed);
  if (ahead >= end + window / 2 && ahead <= end + window) return;  // still far enough ahead
  uint64_t from = std::max(ahead, end);
  if (from > end + window) from = end;  // the reader jumped: start over
  const uint64_t to = std::min(end + window, v.size.load(std::memory_order_relaxed));
  if (from >= to) return;
  v.ahead_until.store(to, std::memory_order_relaxed);
  Bump(counters_.readaheads);
  Bump(counters_.readahead_bytes, to - from);
  Advise(v, from, to);
}

void StoreImpl::Advise(VolumeState& v, uint64_t from, uint64_t to) {
  // Where each extent of the window lives: the highest layer holding any
  // of it (an approximation: a hint needs no more).
  for (uint64_t at = from; at < to;) {
    const uint64_t idx = at / kExtentSize;
    const uint64_t stop = std::min(to, (idx + 1) * kExtentSize);
    uint32_t phys = 0;
    {
      std::lock_guard lock(v.map_mu);
      for (const Layer* l = v.top; l != nullptr && phys == 0; l = l->parent) {
        auto it = l->map.find(idx);
        if (it != l->map.end()) phys = it->second.phys;
      }
    }
    if (phys != 0) mirror_->Advise(DataOffset(phys, 0) + at % kExtentSize, stop - at);
    at = stop;
  }
}

Status StoreImpl::Map(VolumeState& v, uint64_t offset, uint64_t length, std::vector<Volume::Run>& runs,
                      size_t max_runs) {
  std::shared_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(CheckIo(v, offset, length));
  QCLOUD_RETURN_IF_ERROR(WriteOut(v));  // a run not written out is data too
  const uint64_t end = offset + length;
  auto add = [&](uint64_t n, bool allocated) {
    if (!runs.empty() && runs.back().allocated == allocated) {
      runs.back().length += n;
    } else {
      runs.push_back({.length = n, .allocated = allocated});
    }
  };
  const size_t first_run = runs.size();
  for (uint64_t pos = offset; pos < end;) {
    const uint64_t idx = pos / kExtentSize;
    const uint64_t stop = std::min(end, (idx + 1) * kExtentSize);
    std::shared_lock stripe(v.stripes[idx % kStripes]);
    Extent own;
    bool have = false;
    {
      std::lock_guard lock(v.map_mu);
      auto it = v.top->map.find(idx);
      if (it != v.top->map.end()) {
        own = it->second;
        have = true;
      }
    }
    bool below = false;  // any frozen layer with this extent
    for (const Layer* l = v.top; l->parent != nullptr && !below; l = l->parent) {
      below = l->parent->map.contains(idx);
    }
    if (!have && !below) {
      add(stop - pos, false);
    } else if (have && own.Full()) {
      add(stop - pos, true);
    } else {
      for (uint64_t at = pos; at < stop;) {
        const auto b = static_cast<unsigned>((at % kExtentSize) / kBlockSize);
        const uint64_t bend = std::min(stop, idx * kExtentSize + uint64_t{b + 1} * kBlockSize);
        add(bend - at, Source(v.top, have ? &own : nullptr, idx, b) != 0);
        at = bend;
      }
    }
    pos = stop;
    if (runs.size() - first_run >= max_runs + 1) break;
  }
  if (runs.size() - first_run > max_runs) runs.resize(first_run + max_runs);
  return Status::Ok();
}

// ---- writes ----

Result<Extent*> StoreImpl::EnsureEntryLocked(VolumeState& v, uint64_t idx) {
  auto it = v.top->map.find(idx);
  if (it != v.top->map.end()) return &it->second;
  QCLOUD_ASSIGN_OR_RETURN(uint32_t phys, Allocate());
  Extent e;
  e.phys = phys;
  v.top->dirty.insert(idx);
  return &v.top->map.emplace(idx, e).first->second;
}

Status StoreImpl::WriteExtent(VolumeState& v, uint64_t idx, uint32_t off, ByteView src) {
  std::unique_lock stripe(v.stripes[idx % kStripes]);
  Extent own;
  {
    std::lock_guard lock(v.map_mu);
    QCLOUD_ASSIGN_OR_RETURN(Extent * e, EnsureEntryLocked(v, idx));
    own = *e;
  }
  const uint32_t end = off + static_cast<uint32_t>(src.size());
  const unsigned b0 = off / kBlockSize, b1 = (end - 1) / kBlockSize;  // inclusive
  // Whole blocks go out as one write; a partial block the layer does not
  // hold yet is merged with what the layers below have there first.
  std::array<std::byte, kBlockSize> merge;
  uint32_t pos = off;
  for (unsigned b = b0; b <= b1;) {
    const uint32_t bstart = b * kBlockSize, bend = bstart + kBlockSize;
    const uint32_t from = std::max(pos, bstart), to = std::min(end, bend);
    const bool partial = from != bstart || to != bend;
    if (partial && !own.Has(b)) {
      QCLOUD_RETURN_IF_ERROR(ReadBelow(v.top, idx, b, merge.data()));
      Bump(counters_.merged_reads);
      std::memcpy(merge.data() + (from - bstart), src.data() + (from - off), to - from);
      QCLOUD_RETURN_IF_ERROR(DevWrite(DataOffset(own.phys, b), ByteView(merge.data(), kBlockSize)));
      Bump(counters_.data_writes);
      pos = to;
      ++b;
      continue;
    }
    // A run of whole blocks (and in-place partial ones) up to the next
    // partial block the layer lacks.
    unsigned nb = b + 1;
    while (nb <= b1) {
      const uint32_t ns = nb * kBlockSize;
      const bool npartial = std::min(end, ns + kBlockSize) != ns + kBlockSize;
      if (npartial && !own.Has(nb)) break;
      ++nb;
    }
    const uint32_t run_end = std::min(end, nb * kBlockSize);
    QCLOUD_RETURN_IF_ERROR(DevWrite(DataOffset(own.phys, 0) + from,
                                          ByteView(src.data() + (from - off), run_end - from)));
    Bump(counters_.data_writes);
    pos = run_end;
    b = nb;
  }
  std::lock_guard lock(v.map_mu);
  auto it = v.top->map.find(idx);
  QCLOUD_CHECK(it != v.top->map.end());  // entries go only under this extent's stripe
  bool changed = false;
  for (unsigned b = b0; b <= b1; ++b) {
    if (!it->second.Has(b)) {
      it->second.Set(b);
      changed = true;
    }
  }
  if (changed) v.top->dirty.insert(idx);
  return Status::Ok();
}

Status StoreImpl::WriteOutLocked(VolumeState& v) {
  if (v.merge_buf.empty()) return Status::Ok();
  std::vector<std::byte> run;
  run.swap(v.merge_buf);
  v.merge_pending.store(false, std::memory_order_release);
  Status st = WriteExtent(v, v.merge_idx, v.merge_off, ByteView(run.data(), run.size()));
  run.clear();
  v.merge_buf.swap(run);  // keep the capacity
  return st;
}

Status StoreImpl::WriteOutAll() {
  Status first;
  for (auto& [name, v] : volumes_) {
    Status st = WriteOut(*v);
    if (first.ok()) first = st;
  }
  return first;
}

Result<bool> StoreImpl::MergeLocked(VolumeState& v, uint64_t offset, ByteView src) {
  constexpr size_t kSmall = 64 * 1024;
  const uint64_t idx = offset / kExtentSize;
  const auto off = static_cast<uint32_t>(offset % kExtentSize);
  const bool small = options_.merge_bytes != 0 && src.size() <= kSmall && offset % kBlockSize == 0 &&
                     src.size() % kBlockSize == 0 && off + src.size() <= kExtentSize;
  if (!small) return false;
  if (!v.merge_buf.empty() && idx == v.merge_idx && off == v.merge_off + v.merge_buf.size() &&
      v.merge_buf.size() + src.size() <= options_.merge_bytes) {
    v.merge_buf.insert(v.merge_buf.end(), src.data(), src.data() + src.size());
    Bump(counters_.merged_writes);
    if (v.merge_buf.size() == options_.merge_bytes || off + src.size() == kExtentSize) {
      QCLOUD_RETURN_IF_ERROR(WriteOutLocked(v));
    }
    return true;
  }
  QCLOUD_RETURN_IF_ERROR(WriteOutLocked(v));
  {
    // The run's extent exists before it is acknowledged: running out of
    // space refuses this write, never a later write-out.
    std::lock_guard lock(v.map_mu);
    QCLOUD_ASSIGN_OR_RETURN(Extent * e, EnsureEntryLocked(v, idx));
    (void)e;
  }
  v.merge_idx = idx;
  v.merge_off = off;
  v.merge_buf.assign(src.data(), src.data() + src.size());
  v.merge_pending.store(true, std::memory_order_release);
  return true;
}

Status StoreImpl::Write(VolumeState& v, uint64_t offset, ByteView src, bool fua) {
  {
    std::shared_lock gate(gate_);
    QCLOUD_RETURN_IF_ERROR(Broken());
    QCLOUD_RETURN_IF_ERROR(CheckIo(v, offset, src.size()));
    if (src.empty()) return Status::Ok();
    RecycleReleased();
    Bump(counters_.writes);
    Bump(counters_.write_bytes, src.size());
    std::unique_lock merge(v.merge_mu);
    QCLOUD_ASSIGN_OR_RETURN(const bool merged, MergeLocked(v, offset, src));
    if (merged) {
      merge.unlock();
    } else {
      // In order: the run first, then this write.
      QCLOUD_RETURN_IF_ERROR(WriteOutLocked(v));
      merge.unlock();
      // Every extent the write needs first, so that running out of space
      // refuses the write before any of it lands.
      {
        const uint64_t first = offset / kExtentSize, last = (offset + src.size() - 1) / kExtentSize;
        std::vector<uint64_t> fresh;
        std::lock_guard lock(v.map_mu);
        for (uint64_t idx = first; idx <= last; ++idx) {
          if (v.top->map.contains(idx)) continue;
          auto e = EnsureEntryLocked(v, idx);
          if (!e.ok()) {
            std::lock_guard alock(alloc_mu_);
            for (uint64_t f : fresh) {
              // Never committed with data: safe to reuse after the next commit.
              pending_free_.push_back(v.top->map[f].phys);
              v.top->map.erase(f);
            }
            return e.status();
          }
          fresh.push_back(idx);
        }
      }
      QCLOUD_RETURN_IF_ERROR(
          ForEachExtent(offset, src.size(), [&](uint64_t idx, uint32_t off, uint32_t n, uint64_t done) {
            return WriteExtent(v, idx, off, ByteView(src.data() + done, n));
          }));
    }
  }
  return fua ? Flush() : Status::Ok();
}

Status StoreImpl::ZeroExtent(VolumeState& v, uint64_t idx, uint32_t off, uint32_t len, bool no_hole) {
  // Bytes of partial blocks are written as zeros.
  static const std::array<std::byte, kBlockSize> kZeros{};
  const uint32_t end = off + len;
  const uint32_t a = (off + kBlockSize - 1) / kBlockSize * kBlockSize;  // first whole block
  const uint32_t z = end / kBlockSize * kBlockSize;                      // end of whole blocks
  if (a >= z) {
    // No whole block: at most two partial pieces.
    for (uint32_t pos = off; pos < end;) {
      const uint32_t stop = std::min(end, (pos / kBlockSize + 1) * kBlockSize);
      QCLOUD_RETURN_IF_ERROR(WriteExtent(v, idx, pos, ByteView(kZeros.data(), stop - pos)));
      pos = stop;
    }
    return Status::Ok();
  }
  if (off < a) QCLOUD_RETURN_IF_ERROR(WriteExtent(v, idx, off, ByteView(kZeros.data(), a - off)));
  if (z < end) QCLOUD_RETURN_IF_ERROR(WriteExtent(v, idx, z, ByteView(kZeros.data(), end - z)));
  const unsigned b0 = a / kBlockSize, b1 = z / kBlockSize;  // [b0, b1)
  std::unique_lock stripe(v.stripes[idx % kStripes]);
  uint32_t phys = 0;
  {
    std::lock_guard lock(v.map_mu);
    const bool below = AnyBelow(v.top, idx, b0, b1);
    auto it = v.top->map.find(idx);
    if (it == v.top->map.end()) {
      if (!below) return Status::Ok();  // reads as zeros already
    } else if (!below && b0 == 0 && b1 == kBlocksPerExtent && !no_hole) {
      // The whole extent, nothing under it: give the extent back.
      {
        std::lock_guard alock(alloc_mu_);
        pending_free_.push_back(it->second.phys);
      }
      v.top->map.erase(it);
      v.top->dirty.insert(idx);
      return Status::Ok();
    }
    QCLOUD_ASSIGN_OR_RETURN(Extent * e, EnsureEntryLocked(v, idx));
    phys = e->phys;
  }
  QCLOUD_RETURN_IF_ERROR(
      DevZero(DataOffset(phys, b0), uint64_t{b1 - b0} * kBlockSize, !no_hole));
  Bump(counters_.data_writes);
  std::lock_guard lock(v.map_mu);
  auto it = v.top->map.find(idx);
  QCLOUD_CHECK(it != v.top->map.end());
  for (unsigned b = b0; b < b1; ++b) it->second.Set(b);
  v.top->dirty.insert(idx);
  return Status::Ok();
}

Status StoreImpl::Zero(VolumeState& v, uint64_t offset, uint64_t length, bool fua, bool no_hole,
                       bool trim) {
  {
    std::shared_lock gate(gate_);
    QCLOUD_RETURN_IF_ERROR(Broken());
    QCLOUD_RETURN_IF_ERROR(CheckIo(v, offset, length));
    QCLOUD_RETURN_IF_ERROR(WriteOut(v));
    RecycleReleased();
    Bump(trim ? counters_.trims : counters_.zeroes);
    QCLOUD_RETURN_IF_ERROR(ForEachExtent(offset, length, [&](uint64_t idx, uint32_t off, uint32_t n, uint64_t) {
      return ZeroExtent(v, idx, off, n, no_hole);
    }));
  }
  return fua ? Flush() : Status::Ok();
}

// ---- flush ----

Status StoreImpl::Flush() {
  std::lock_guard flush(flush_mu_);
  std::shared_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(Broken());
  return FlushLocked();
}

Status StoreImpl::FlushLocked() {
  Bump(counters_.flushes);
  QCLOUD_RETURN_IF_ERROR(WriteOutAll());
  std::vector<uint32_t> pending;
  {
    std::lock_guard lock(alloc_mu_);
    pending.swap(pending_free_);
  }
  // What changed, as it is now: every write it reflects has completed, so
  // the data sync below covers it.
  struct Change {
    VolumeState* v;
    uint64_t layer, idx;
    bool present;
    ExtentRec rec;
  };
  std::vector<Change> changes;
  for (auto& [name, v] : volumes_) {
    std::lock_guard lock(v->map_mu);
    for (uint64_t idx : v->top->dirty) {
      auto it = v->top->map.find(idx);
      changes.push_back({v.get(), v->top->id, idx, it != v->top->map.end(),
                         it != v->top->map.end() ? static_cast<ExtentRec>(it->second) : ExtentRec{}});
    }
    v->top->dirty.clear();
  }
  auto undo = [&] {
    for (const Change& c : changes) {
      std::lock_guard lock(c.v->map_mu);
      if (c.v->top->id == c.layer) c.v->top->dirty.insert(c.idx);
    }
    std::lock_guard lock(alloc_mu_);
    pending_free_.insert(pending_free_.end(), pending.begin(), pending.end());
  };
  Status st = mirror_->Sync();
  if (st.ok() && (!changes.empty() || !pending.empty())) {
    auto txn = db_->Begin();
    st = txn.status();
    if (st.ok()) {
      for (const Change& c : changes) {
        st = c.present ? txn->PutExtent(c.layer, c.idx, c.rec) : txn->DeleteExtent(c.layer, c.idx);
        if (!st.ok()) break;
      }
      if (st.ok()) st = txn->Commit();
      if (st.ok()) Bump(counters_.commits);
    }
  }
  if (!st.ok()) {
    undo();
    return st;
  }
  ReleaseNow(pending);
  return Status::Ok();
}

// ---- volume and snapshot operations ----

Layer* StoreImpl::NewLayer(Layer* parent) {
  auto l = std::make_unique<Layer>();
  l->id = next_layer_++;
  l->parent = parent;
  if (parent != nullptr) parent->children++;
  Layer* raw = l.get();
  layers_.emplace(raw->id, std::move(l));
  return raw;
}

Status StoreImpl::CommitAdmin(MetaDb::Txn& txn, const std::vector<uint32_t>& freed, bool copied) {
  Status st = copied ? mirror_->Sync() : Status::Ok();
  if (st.ok()) st = txn.PutNextLayer(next_layer_);
  if (st.ok()) st = txn.Commit();
  if (!st.ok()) {
    broken_ = st;
    return Broken();
  }
  Bump(counters_.commits);
  ReleaseNow(freed);
  return Status::Ok();
}

Status StoreImpl::MergeInto(Layer* l, Layer* child, MetaDb::Txn& txn, std::vector<uint32_t>& freed,
                            bool& copied) {
  std::array<std::byte, kBlockSize> buf;
  for (auto& [idx, le] : l->map) {
    Extent visible = le;  // what the child could read of l's blocks
    for (unsigned b = 0; b < kBlocksPerExtent; ++b) {
      if (idx * kExtentSize + uint64_t{b} * kBlockSize >= child->limit) visible.Clear(b);
    }
    auto it = child->map.find(idx);
    if (it == child->map.end()) {
      if (visible.Empty()) {
        freed.push_back(le.phys);
        continue;
      }
      child->map.emplace(idx, visible);
      QCLOUD_RETURN_IF_ERROR(txn.PutExtent(child->id, idx, visible));
      continue;
    }
    Extent& ce = it->second;
    for (unsigned b = 0; b < kBlocksPerExtent; ++b) {
      if (!visible.Has(b) || ce.Has(b)) continue;
      QCLOUD_RETURN_IF_ERROR(ReadRun(le.phys, DataOffset(le.phys, b), MutableByteView(buf.data(), buf.size())));
      QCLOUD_RETURN_IF_ERROR(DevWrite(DataOffset(ce.phys, b), ByteView(buf.data(), buf.size())));
      Bump(counters_.data_writes);
      ce.Set(b);
      copied = true;
    }
    QCLOUD_RETURN_IF_ERROR(txn.PutExtent(child->id, idx, ce));
    freed.push_back(le.phys);
  }
  child->parent = l->parent;
  child->limit = std::min(child->limit, l->limit);
  QCLOUD_RETURN_IF_ERROR(txn.PutLayer(child->Rec()));
  QCLOUD_RETURN_IF_ERROR(txn.DeleteLayer(l->id));
  layers_.erase(l->id);
  return Status::Ok();
}

Status StoreImpl::Collect(uint64_t layer_id, MetaDb::Txn& txn, std::vector<uint32_t>& freed,
                          bool& copied) {
  for (;;) {
    auto it = layers_.find(layer_id);
    if (it == layers_.end()) return Status::Ok();
    Layer* l = it->second.get();
    if (l->names > 0) return Status::Ok();
    if (l->children == 0) {
      for (auto& [idx, e] : l->map) freed.push_back(e.phys);
      QCLOUD_RETURN_IF_ERROR(txn.DeleteLayer(l->id));
      Layer* p = l->parent;
      layers_.erase(it);
      if (p == nullptr) return Status::Ok();
      p->children--;
      layer_id = p->id;
      continue;
    }
    if (l->children == 1) {
      Layer* child = nullptr;
      for (auto& [id, c] : layers_) {
        if (c->parent == l) child = c.get();
      }
      QCLOUD_CHECK(child != nullptr);
      return MergeInto(l, child, txn, freed, copied);
    }
    return Status::Ok();  // read by several layers: kept, unnamed
  }
}

Status StoreImpl::CreateVolume(std::string_view name, uint64_t size) {
  if (!ValidName(name)) return InvalidArgument(fmt::format("invalid volume name '{}'", name));
  if (size == 0 || size > kMaxVolumeSize) return InvalidArgument(fmt::format("invalid volume size {}", size));
  size = (size + kBlockSize - 1) / kBlockSize * kBlockSize;
  std::lock_guard flush(flush_mu_);
  std::unique_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(Broken());
  if (volumes_.contains(name)) return Status(Errc::kAlreadyExists, fmt::format("volume {} exists", name));
  QCLOUD_ASSIGN_OR_RETURN(MetaDb::Txn txn, db_->Begin());
  auto v = std::make_shared<VolumeState>();
  v->name = std::string(name);
  v->size = size;
  v->created_ns = NowNs();
  v->top = NewLayer(nullptr);
  v->top->names = 1;
  QCLOUD_RETURN_IF_ERROR(txn.PutLayer(v->top->Rec()));
  QCLOUD_RETURN_IF_ERROR(txn.PutVolume(VolumeRecOf(*v)));
  volumes_.emplace(v->name, v);
  return CommitAdmin(txn, {}, false);
}

Status StoreImpl::ResizeVolume(std::string_view name, uint64_t size) {
  if (size == 0 || size > kMaxVolumeSize) return InvalidArgument(fmt::format("invalid volume size {}", size));
  size = (size + kBlockSize - 1) / kBlockSize * kBlockSize;
  std::lock_guard flush(flush_mu_);
  std::unique_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(Broken());
  auto it = volumes_.find(name);
  if (it == volumes_.end()) return NotFound(fmt::format("no volume {}", name));
  VolumeState& v = *it->second;
  QCLOUD_RETURN_IF_ERROR(FlushLocked());
  QCLOUD_ASSIGN_OR_RETURN(MetaDb::Txn txn, db_->Begin());
  std::vector<uint32_t> freed;
  if (size < v.size) {
    // Nothing past the new end stays readable: the layer drops its own
    // blocks there and stops reading its parents' (a later grow reads zeros).
    Layer* top = v.top;
    top->limit = std::min(top->limit, size);
    for (auto e = top->map.begin(); e != top->map.end();) {
      const uint64_t start = e->first * kExtentSize;
      if (start >= size) {
        freed.push_back(e->second.phys);
        QCLOUD_RETURN_IF_ERROR(txn.DeleteExtent(top->id, e->first));
        e = top->map.erase(e);
        continue;
      }
      if (start + kExtentSize > size) {
        const auto first = static_cast<unsigned>((size - start) / kBlockSize);
        for (unsigned b = first; b < kBlocksPerExtent; ++b) e->second.Clear(b);
        (void)DevZero(DataOffset(e->second.phys, first),
                               uint64_t{kBlocksPerExtent - first} * kBlockSize, true);
        QCLOUD_RETURN_IF_ERROR(txn.PutExtent(top->id, e->first, e->second));
      }
      ++e;
    }
    QCLOUD_RETURN_IF_ERROR(txn.PutLayer(top->Rec()));
  }
  v.size = size;
  QCLOUD_RETURN_IF_ERROR(txn.PutVolume(VolumeRecOf(v)));
  return CommitAdmin(txn, freed, false);
}

Status StoreImpl::DeleteVolume(std::string_view name) {
  std::lock_guard flush(flush_mu_);
  std::unique_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(Broken());
  auto it = volumes_.find(name);
  if (it == volumes_.end()) return NotFound(fmt::format("no volume {}", name));
  std::shared_ptr<VolumeState> v = it->second;
  {
    std::lock_guard merge(v->merge_mu);  // its unwritten run goes with it
    v->merge_buf.clear();
    v->merge_pending.store(false, std::memory_order_release);
  }
  QCLOUD_ASSIGN_OR_RETURN(MetaDb::Txn txn, db_->Begin());
  std::vector<uint64_t> drop{v->top->id};
  v->top->names--;
  v->top->dirty.clear();
  for (auto s = snapshots_.begin(); s != snapshots_.end();) {
    if (s->first.first != name) {
      ++s;
      continue;
    }
    QCLOUD_RETURN_IF_ERROR(txn.DeleteSnapshot(s->first.first, s->first.second));
    s->second.layer->names--;
    drop.push_back(s->second.layer->id);
    s = snapshots_.erase(s);
  }
  QCLOUD_RETURN_IF_ERROR(txn.DeleteVolume(name));
  v->deleted = true;
  volumes_.erase(it);
  std::vector<uint32_t> freed;
  bool copied = false;
  for (uint64_t id : drop) QCLOUD_RETURN_IF_ERROR(Collect(id, txn, freed, copied));
  return CommitAdmin(txn, freed, copied);
}

std::vector<VolumeInfo> StoreImpl::ListVolumes() {
  std::shared_lock gate(gate_);
  std::vector<VolumeInfo> out;
  for (auto& [name, v] : volumes_) {
    uint64_t extents;
    {
      std::lock_guard lock(v->map_mu);
      extents = v->top->map.size();
    }
    out.push_back({.name = name,
                   .size = v->size.load(),
                   .allocated_bytes = extents * kExtentSize,
                   .origin = v->origin,
                   .created = std::chrono::system_clock::time_point(
                       std::chrono::duration_cast<std::chrono::system_clock::duration>(
                           std::chrono::nanoseconds(v->created_ns)))});
  }
  return out;
}

Result<VolumeInfo> StoreImpl::GetVolume(std::string_view name) {
  for (auto& v : ListVolumes()) {
    if (v.name == name) return v;
  }
  return NotFound(fmt::format("no volume {}", name));
}

Result<std::shared_ptr<Volume>> StoreImpl::OpenVolume(std::string_view name) {
  std::shared_lock gate(gate_);
  auto it = volumes_.find(name);
  if (it == volumes_.end()) return NotFound(fmt::format("no volume {}", name));
  return std::shared_ptr<Volume>(std::make_shared<VolumeHandle>(this, it->second));
}

Status StoreImpl::CreateSnapshot(std::string_view volume, std::string_view snapshot) {
  if (!ValidName(snapshot)) return InvalidArgument(fmt::format("invalid snapshot name '{}'", snapshot));
  std::lock_guard flush(flush_mu_);
  std::unique_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(Broken());
  auto it = volumes_.find(volume);
  if (it == volumes_.end()) return NotFound(fmt::format("no volume {}", volume));
  std::pair<std::string, std::string> key{std::string(volume), std::string(snapshot)};
  if (snapshots_.contains(key)) {
    return Status(Errc::kAlreadyExists, fmt::format("snapshot {}@{} exists", volume, snapshot));
  }
  QCLOUD_RETURN_IF_ERROR(FlushLocked());
  VolumeState& v = *it->second;
  QCLOUD_ASSIGN_OR_RETURN(MetaDb::Txn txn, db_->Begin());
  // The volume's layer freezes under the snapshot's name; the volume
  // writes into a new empty layer on top of it from now on.
  Layer* frozen = v.top;
  Layer* top = NewLayer(frozen);
  top->names = 1;
  // frozen->names: the volume's reference becomes the snapshot's.
  const SnapshotState snap{.size = v.size.load(), .layer = frozen, .created_ns = NowNs()};
  QCLOUD_RETURN_IF_ERROR(txn.PutLayer(top->Rec()));
  QCLOUD_RETURN_IF_ERROR(txn.PutSnapshot(
      {.volume = key.first, .name = key.second, .size = snap.size, .layer = frozen->id, .created_ns = snap.created_ns}));
  {
    std::lock_guard lock(v.map_mu);
    v.top = top;
  }
  QCLOUD_RETURN_IF_ERROR(txn.PutVolume(VolumeRecOf(v)));
  snapshots_.emplace(std::move(key), snap);
  return CommitAdmin(txn, {}, false);
}

Status StoreImpl::DeleteSnapshot(std::string_view volume, std::string_view snapshot) {
  std::lock_guard flush(flush_mu_);
  std::unique_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(Broken());
  auto it = snapshots_.find({std::string(volume), std::string(snapshot)});
  if (it == snapshots_.end()) return NotFound(fmt::format("no snapshot {}@{}", volume, snapshot));
  // A merge writes the child's whole map: its unflushed state goes with it,
  // so flush first and the merge's own sync covers the copies.
  QCLOUD_RETURN_IF_ERROR(FlushLocked());
  QCLOUD_ASSIGN_OR_RETURN(MetaDb::Txn txn, db_->Begin());
  Layer* l = it->second.layer;
  l->names--;
  QCLOUD_RETURN_IF_ERROR(txn.DeleteSnapshot(volume, snapshot));
  snapshots_.erase(it);
  std::vector<uint32_t> freed;
  bool copied = false;
  QCLOUD_RETURN_IF_ERROR(Collect(l->id, txn, freed, copied));
  return CommitAdmin(txn, freed, copied);
}

Status StoreImpl::Rollback(std::string_view volume, std::string_view snapshot) {
  std::lock_guard flush(flush_mu_);
  std::unique_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(Broken());
  auto vit = volumes_.find(volume);
  if (vit == volumes_.end()) return NotFound(fmt::format("no volume {}", volume));
  auto sit = snapshots_.find({std::string(volume), std::string(snapshot)});
  if (sit == snapshots_.end()) return NotFound(fmt::format("no snapshot {}@{}", volume, snapshot));
  VolumeState& v = *vit->second;
  {
    std::lock_guard merge(v.merge_mu);  // writes since the snapshot are dropped, unwritten ones too
    v.merge_buf.clear();
    v.merge_pending.store(false, std::memory_order_release);
  }
  QCLOUD_ASSIGN_OR_RETURN(MetaDb::Txn txn, db_->Begin());
  Layer* old = v.top;
  Layer* top = NewLayer(sit->second.layer);
  top->names = 1;
  {
    std::lock_guard lock(v.map_mu);
    v.top = top;
  }
  v.size = sit->second.size;
  old->names--;
  old->dirty.clear();
  QCLOUD_RETURN_IF_ERROR(txn.PutLayer(top->Rec()));
  QCLOUD_RETURN_IF_ERROR(txn.PutVolume(VolumeRecOf(v)));
  std::vector<uint32_t> freed;
  bool copied = false;
  QCLOUD_RETURN_IF_ERROR(Collect(old->id, txn, freed, copied));
  // Extents freed by unflushed writes of the dropped layer are in
  // pending_free_ and go back at the next flush.
  return CommitAdmin(txn, freed, copied);
}

Status StoreImpl::Clone(std::string_view volume, std::string_view snapshot, std::string_view target) {
  if (!ValidName(target)) return InvalidArgument(fmt::format("invalid volume name '{}'", target));
  std::lock_guard flush(flush_mu_);
  std::unique_lock gate(gate_);
  QCLOUD_RETURN_IF_ERROR(Broken());
  auto sit = snapshots_.find({std::string(volume), std::string(snapshot)});
  if (sit == snapshots_.end()) return NotFound(fmt::format("no snapshot {}@{}", volume, snapshot));
  if (volumes_.contains(target)) return Status(Errc::kAlreadyExists, fmt::format("volume {} exists", target));
  QCLOUD_ASSIGN_OR_RETURN(MetaDb::Txn txn, db_->Begin());
  auto v = std::make_shared<VolumeState>();
  v->name = std::string(target);
  v->size = sit->second.size;
  v->created_ns = NowNs();
  v->origin = fmt::format("{}@{}", volume, snapshot);
  v->top = NewLayer(sit->second.layer);
  v->top->names = 1;
  QCLOUD_RETURN_IF_ERROR(txn.PutLayer(v->top->Rec()));
  QCLOUD_RETURN_IF_ERROR(txn.PutVolume(VolumeRecOf(*v)));
  volumes_.emplace(v->name, v);
  return CommitAdmin(txn, {}, false);
}

std::vector<SnapshotInfo> StoreImpl::ListSnapshots(std::string_view volume) {
  std::shared_lock gate(gate_);
  std::vector<SnapshotInfo> out;
  for (auto& [key, s] : snapshots_) {
    if (!volume.empty() && key.first != volume) continue;
    out.push_back({.volume = key.first,
                   .name = key.second,
                   .size = s.size,
                   .created = std::chrono::system_clock::time_point(
                       std::chrono::duration_cast<std::chrono::system_clock::duration>(
                           std::chrono::nanoseconds(s.created_ns)))});
  }
  return out;
}

std::vector<CopyInfo> StoreImpl::copies() {
  std::vector<CopyInfo> out;
  for (const detail::CopyState& c : mirror_->states()) {
    using H = detail::CopyState::Health;
    out.push_back({.location = c.name,
                   .health = c.health == H::kWhole ? "whole" : c.health == H::kRebuilding ? "rebuilding" : "failed",
                   .missed_extents = c.missed,
                   .failures = c.failures,
                   .rebuilt_extents = c.rebuilt,
                   .resyncing = c.resyncing,
                   .last_error = c.last_error});
  }
  return out;
}

StoreStats StoreImpl::stats() {
  StoreStats st;
  {
    std::shared_lock gate(gate_);
    st.volumes = volumes_.size();
    st.snapshots = snapshots_.size();
    st.layers = layers_.size();
  }
  {
    std::lock_guard lock(alloc_mu_);
    st.extents_allocated = allocated_;
    st.extents_capacity = capacity_;
    st.extents_pending_free = pending_free_.size();
  }
  auto get = [](const std::atomic<uint64_t>& c) { return c.load(std::memory_order_relaxed); };
  st.reads = get(counters_.reads);
  st.writes = get(counters_.writes);
  st.flushes = get(counters_.flushes);
  st.trims = get(counters_.trims);
  st.zeroes = get(counters_.zeroes);
  st.read_bytes = get(counters_.read_bytes);
  st.write_bytes = get(counters_.write_bytes);
  st.data_writes = get(counters_.data_writes);
  st.merged_reads = get(counters_.merged_reads);
  st.merged_writes = get(counters_.merged_writes);
  st.readaheads = get(counters_.readaheads);
  st.readahead_bytes = get(counters_.readahead_bytes);
  if (tier_) {
    const detail::TierStats t = tier_->stats();
    st.tier_slots = t.slots;
    st.tier_used = t.used;
    st.tier_hits = t.hits;
    st.tier_misses = t.misses;
    st.tier_admissions = t.admissions;
    st.tier_evictions = t.evictions;
    st.tier_bytes_per_slot = t.bytes_per_slot;
  }
  st.commits = get(counters_.commits);
  st.enospc = get(counters_.enospc);
  return st;
}

// ---- the handle ----

Status VolumeHandle::Read(uint64_t offset, MutableByteView dst) { return store_->Read(*v_, offset, dst); }
Status VolumeHandle::Write(uint64_t offset, ByteView src, bool fua) {
  return store_->Write(*v_, offset, src, fua);
}
Status VolumeHandle::Flush() { return store_->Flush(); }
Status VolumeHandle::Trim(uint64_t offset, uint64_t length, bool fua) {
  return store_->Zero(*v_, offset, length, fua, false, true);
}
Status VolumeHandle::WriteZeroes(uint64_t offset, uint64_t length, bool fua, bool no_hole) {
  return store_->Zero(*v_, offset, length, fua, no_hole, false);
}
Status VolumeHandle::Map(uint64_t offset, uint64_t length, std::vector<Run>& runs, size_t max_runs) {
  return store_->Map(*v_, offset, length, runs, max_runs);
}
Status VolumeHandle::Prefetch(uint64_t offset, uint64_t length) { return store_->Prefetch(*v_, offset, length); }
Result<bool> VolumeHandle::PlanRead(uint64_t offset, uint64_t length, ReadPlan& plan) {
  return store_->PlanRead(*v_, offset, length, plan);
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) { return StoreImpl::Open(options); }

Status RegisterMetrics(Store& store, MetricsRegistry& registry) {
  struct Row {
    const char* name;
    const char* help;
    MetricType type;
    uint64_t StoreStats::*field;
  };
  static const Row kRows[] = {
      {"qcloud_block_volumes", "Volumes in the store.", MetricType::kGauge, &StoreStats::volumes},
      {"qcloud_block_snapshots", "Snapshots in the store.", MetricType::kGauge, &StoreStats::snapshots},
      {"qcloud_block_layers", "Layers (volumes' own and frozen ones).", MetricType::kGauge, &StoreStats::layers},
      {"qcloud_block_extents_allocated", "Physical 1 MiB extents in use.", MetricType::kGauge,
       &StoreStats::extents_allocated},
      {"qcloud_block_extents_capacity", "Physical extents allowed (0 = no limit).", MetricType::kGauge,
       &StoreStats::extents_capacity},
      {"qcloud_block_reads_total", "Volume reads.", MetricType::kCounter, &StoreStats::reads},
      {"qcloud_block_writes_total", "Volume writes.", MetricType::kCounter, &StoreStats::writes},
      {"qcloud_block_flushes_total", "Flushes.", MetricType::kCounter, &StoreStats::flushes},
      {"qcloud_block_trims_total", "Trims.", MetricType::kCounter, &StoreStats::trims},
      {"qcloud_block_write_zeroes_total", "Write-zeroes requests.", MetricType::kCounter, &StoreStats::zeroes},
      {"qcloud_block_read_bytes_total", "Bytes read from volumes.", MetricType::kCounter, &StoreStats::read_bytes},
      {"qcloud_block_write_bytes_total", "Bytes written to volumes.", MetricType::kCounter,
       &StoreStats::write_bytes},
      {"qcloud_block_data_writes_total", "Writes to the data copies.", MetricType::kCounter,
       &StoreStats::data_writes},
      {"qcloud_block_commits_total", "Metadata transactions.", MetricType::kCounter, &StoreStats::commits},
      {"qcloud_block_enospc_total", "Writes refused for want of an extent.", MetricType::kCounter,
       &StoreStats::enospc},
      {"qcloud_block_merged_writes_total", "Writes gathered into a merged run.", MetricType::kCounter,
       &StoreStats::merged_writes},
      {"qcloud_block_readaheads_total", "Read-ahead windows started.", MetricType::kCounter,
       &StoreStats::readaheads},
      {"qcloud_block_tier_slots", "Blocks the SSD tier can hold.", MetricType::kGauge, &StoreStats::tier_slots},
      {"qcloud_block_tier_used", "Blocks in the SSD tier.", MetricType::kGauge, &StoreStats::tier_used},
      {"qcloud_block_tier_hits_total", "Block reads served by the SSD tier.", MetricType::kCounter,
       &StoreStats::tier_hits},
      {"qcloud_block_tier_misses_total", "Block reads that went to the capacity tier.", MetricType::kCounter,
       &StoreStats::tier_misses},
      {"qcloud_block_tier_admissions_total", "Blocks written into the SSD tier.", MetricType::kCounter,
       &StoreStats::tier_admissions},
      {"qcloud_block_tier_evictions_total", "Blocks demoted out of the SSD tier.", MetricType::kCounter,
       &StoreStats::tier_evictions},
  };
  for (const Row& r : kRows) {
    const auto field = r.field;
    QCLOUD_RETURN_IF_ERROR(registry.AddCallback(r.name, r.help, r.type, [&store, field] {
      return static_cast<double>(store.stats().*field);
    }));
  }
  auto per_copy = [&store](auto value) {
    return [&store, value] {
      std::vector<MetricsRegistry::Sample> out;
      for (const CopyInfo& c : store.copies()) out.push_back({{c.location}, value(c)});
      return out;
    };
  };
  QCLOUD_RETURN_IF_ERROR(registry.AddCollector(
      "qcloud_block_copy_whole", "1 when the copy of the data is whole, 0 while failed or rebuilding.",
      MetricType::kGauge, {"location"}, per_copy([](const CopyInfo& c) { return c.health == "whole" ? 1.0 : 0.0; })));
  QCLOUD_RETURN_IF_ERROR(registry.AddCollector(
      "qcloud_block_copy_missed_extents", "Extents the copy lacks and will get from a rebuild.",
      MetricType::kGauge, {"location"}, per_copy([](const CopyInfo& c) { return double(c.missed_extents); })));
  QCLOUD_RETURN_IF_ERROR(registry.AddCollector(
      "qcloud_block_copy_rebuilt_extents_total", "Extents copied into the copy by rebuilds and resyncs.",
      MetricType::kCounter, {"location"}, per_copy([](const CopyInfo& c) { return double(c.rebuilt_extents); })));
  QCLOUD_RETURN_IF_ERROR(registry.AddCollector(
      "qcloud_block_copy_resyncing",
      "1 while a whole copy is being made equal to the one reads go to (after a crash of the server).",
      MetricType::kGauge, {"location"}, per_copy([](const CopyInfo& c) { return c.resyncing ? 1.0 : 0.0; })));
  return registry.AddCollector("qcloud_block_copy_failures_total", "Times the copy was found failed.",
                               MetricType::kCounter, {"location"},
                               per_copy([](const CopyInfo& c) { return double(c.failures); }));
}

}  // namespace qcloud::block
