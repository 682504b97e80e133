// The memory engine. Layout of the block pool and of an item:
//
//   pool: one anonymous mapping, split evenly between the shards; block
//   numbers are 1-based within a shard (0 means "none").
//
//   every block:   [u32 next block of this item, 0 at the end][payload]
//   first block:   [u32 next][u32 hash-chain next][u32 atime][u32 exptime]
//                  [u64 cas][u32 value length][u32 flags][u8 key length]
//                  [u8 control bits][key][value...]   (34-byte header)
//
// Invariants (hold whenever a shard's mutex is free):
//   - every block of a shard is exactly one of: never used (>= fresh), on
//     the free list, or in the chain of exactly one linked item;
//   - an item is linked in exactly one bucket chain, the one its key hashes
//     to; items = number of linked items;
//   - the chain length of an item equals BlocksFor(34 + klen + vlen).
// Times (atime, exptime) are engine seconds: 2 at Open(), like memcached's
// rel_time_t, so "time - 1" never underflows.

#include "qcloud/kv/store.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "kv/cold_tier.h"
#include "qcloud/core/check.h"
#include "qcloud/core/env.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/status.h"

namespace qcloud::kv {

namespace {

constexpr size_t kOffNext = 0;
constexpr size_t kOffHNext = 4;
constexpr size_t kOffATime = 8;
constexpr size_t kOffExp = 12;
constexpr size_t kOffCas = 16;
constexpr size_t kOffVLen = 24;
constexpr size_t kOffFlags = 28;
constexpr size_t kOffKLen = 32;
constexpr size_t kOffCtl = 33;
constexpr size_t kHeader = 34;

// Control bits.
constexpr uint8_t kRef = 1;       // read since the CLOCK hand last passed
constexpr uint8_t kFetched = 2;   // read at least once
constexpr uint8_t kStale = 4;     // invalidated (meta I)
constexpr uint8_t kWinSent = 8;   // a reader was given the recompute token
constexpr uint8_t kBinKey = 16;   // stored with a base64 key

// ItemView::extra_ bits.
constexpr uint8_t kViewWon = 1;
constexpr uint8_t kViewTokenTaken = 2;
constexpr uint8_t kViewFetched = 4;

constexpr uint32_t kRelativeLimit = 60 * 60 * 24 * 30;  // memcached's REALTIME_MAXDELTA

template <typename T>
T Load(const std::byte* p) noexcept {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void Put(std::byte* p, T v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

}  // namespace

struct StoreShard {
  std::mutex mu;
  std::byte* base = nullptr;  // block 1 starts here
  size_t block = 0;           // block size
  uint32_t capacity = 0;      // blocks in this shard
  uint32_t fresh = 1;         // lowest never-used block
  uint32_t free_head = 0;     // freed blocks, linked through their next field
  uint32_t free_count = 0;
  std::vector<uint32_t> buckets;
  uint32_t hand = 0;  // CLOCK: next bucket to sweep
  uint64_t items = 0;
  uint64_t used_blocks = 0;
  uint64_t item_bytes = 0;
  uint64_t total_items = 0;
  uint64_t evictions = 0;
  uint64_t reclaimed = 0;
  uint64_t expired_unfetched = 0;
  uint64_t evicted_unfetched = 0;
  uint64_t expansions = 0;
  uint64_t reactivated = 0;
  uint64_t cold_errors = 0;
  uint32_t scan = 0;  // Maintain(): next bucket to look at for idle items

  std::byte* At(uint32_t b) const noexcept { return base + size_t{b - 1} * block; }
  uint32_t Next(uint32_t b) const noexcept { return Load<uint32_t>(At(b) + kOffNext); }
  uint8_t KLen(uint32_t h) const noexcept { return Load<uint8_t>(At(h) + kOffKLen); }
  uint32_t VLen(uint32_t h) const noexcept { return Load<uint32_t>(At(h) + kOffVLen); }
  uint8_t Ctl(uint32_t h) const noexcept { return Load<uint8_t>(At(h) + kOffCtl); }
  void SetCtl(uint32_t h, uint8_t c) noexcept { Put<uint8_t>(At(h) + kOffCtl, c); }
  uint32_t Available() const noexcept { return free_count + (capacity - (fresh - 1)); }

  uint32_t BlocksFor(size_t total) const noexcept {
    if (total <= block) return 1;
    const size_t rest = total - block;
    return static_cast<uint32_t>(1 + (rest + block - 5) / (block - 4));
  }

  // Copies `n` bytes at logical offset `off` of item `h` (the key starts at
  // offset kHeader) into `dst`, or from `src` when writing.
  template <bool kWrite>
  void Transfer(uint32_t h, size_t off, std::byte* buf, size_t n) const noexcept {
    uint32_t b = h;
    // Skip whole blocks: the first holds block bytes, the others block-4.
    if (off >= block) {
      off -= block;
      b = Next(b);
      while (off >= block - 4) {
        off -= block - 4;
        b = Next(b);
      }
      off += 4;
    }
    while (n > 0) {
      const size_t take = std::min(n, block - off);
      if constexpr (kWrite) {
        std::memcpy(At(b) + off, buf, take);
      } else {
        std::memcpy(buf, At(b) + off, take);
      }
      buf += take;
      n -= take;
      b = Next(b);
      off = 4;
    }
  }

  bool KeyEquals(uint32_t h, std::string_view key) const noexcept {
    if (KLen(h) != key.size()) return false;
    if (kHeader + key.size() <= block) {
      return std::memcmp(At(h) + kHeader, key.data(), key.size()) == 0;
    }
    char tmp[kMaxKeyLength];
    Transfer<false>(h, kHeader, reinterpret_cast<std::byte*>(tmp), key.size());
    return std::memcmp(tmp, key.data(), key.size()) == 0;
  }

  // Location of the link that points at the item with `key` (a bucket slot
  // or the hash-chain field of the previous item); *link == 0 when absent.
  std::byte* FindLink(std::string_view key, uint64_t hash) noexcept {
    std::byte* link = reinterpret_cast<std::byte*>(&buckets[hash & (buckets.size() - 1)]);
    for (uint32_t h = Load<uint32_t>(link); h != 0; h = Load<uint32_t>(link)) {
      if (KeyEquals(h, key)) return link;
      link = At(h) + kOffHNext;
    }
    return link;
  }

  // Takes `n` blocks (the caller made room) and links them into a chain.
  uint32_t AllocateChain(uint32_t n) noexcept {
    QCLOUD_DCHECK(Available() >= n);
    uint32_t head = 0;
    uint32_t prev = 0;
    for (uint32_t i = 0; i < n; ++i) {
      uint32_t b;
      if (free_head != 0) {
        b = free_head;
        free_head = Next(b);
        --free_count;
      } else {
        b = fresh++;
      }
      Put<uint32_t>(At(b) + kOffNext, 0);
      if (prev == 0) {
        head = b;
      } else {
        Put<uint32_t>(At(prev) + kOffNext, b);
      }
      prev = b;
    }
    used_blocks += n;
    return head;
  }

  void FreeChain(uint32_t h) noexcept {
    while (h != 0) {
      const uint32_t next = Next(h);
      Put<uint32_t>(At(h) + kOffNext, free_head);
      free_head = h;
      ++free_count;
      --used_blocks;
      h = next;
    }
  }

  // Unlinks the item `link` points at and frees its blocks.
  void Remove(std::byte* link) noexcept {
    const uint32_t h = Load<uint32_t>(link);
    Put<uint32_t>(link, Load<uint32_t>(At(h) + kOffHNext));
    item_bytes -= kMemcachedItemOverhead + KLen(h) + VLen(h);
    --items;
    FreeChain(h);
  }

  void LinkAtHead(uint32_t h, uint64_t hash) noexcept {
    uint32_t& slot = buckets[hash & (buckets.size() - 1)];
    Put<uint32_t>(At(h) + kOffHNext, slot);
    slot = h;
    ++items;
    ++total_items;
    item_bytes += kMemcachedItemOverhead + KLen(h) + VLen(h);
  }

  void KeyOf(uint32_t h, char* out) const noexcept {
    Transfer<false>(h, kHeader, reinterpret_cast<std::byte*>(out), KLen(h));
  }

  // Doubles the bucket array when the chains average 1.5 items (as memcached).
  void MaybeExpand() {
    if (items * 2 < buckets.size() * 3) return;
    if (buckets.size() >= (size_t{1} << 31)) return;
    std::vector<uint32_t> bigger(buckets.size() * 2, 0);
    const uint64_t mask = bigger.size() - 1;
    char key[kMaxKeyLength];
    for (uint32_t slot : buckets) {
      for (uint32_t h = slot; h != 0;) {
        const uint32_t next = Load<uint32_t>(At(h) + kOffHNext);
        KeyOf(h, key);
        const uint64_t hash = Xxh3_64(ByteView(key, KLen(h)));
        uint32_t& dst = bigger[hash & mask];
        Put<uint32_t>(At(h) + kOffHNext, dst);
        dst = h;
        h = next;
      }
    }
    buckets.swap(bigger);
    hand = 0;
    ++expansions;
  }
};

// ---------------------------------------------------------------------------
// ItemView

std::string_view ItemView::key() const noexcept {
  // Keys longer than the first block are rare (block_size >= 32 holds 30+
  // bytes after the header only from 64 up); the view returns the first
  // block's part plus the rest through the copy API. For simplicity the key
  // is returned from a per-thread copy when it spans blocks.
  const StoreShard& s = *shard_;
  const size_t klen = s.KLen(head_);
  if (kHeader + klen <= s.block) {
    return {reinterpret_cast<const char*>(s.At(head_) + kHeader), klen};
  }
  thread_local char copy[kMaxKeyLength];
  s.KeyOf(head_, copy);
  return {copy, klen};
}
uint32_t ItemView::flags() const noexcept { return Load<uint32_t>(shard_->At(head_) + kOffFlags); }
uint64_t ItemView::cas() const noexcept { return Load<uint64_t>(shard_->At(head_) + kOffCas); }
size_t ItemView::value_size() const noexcept { return shard_->VLen(head_); }
int64_t ItemView::ttl() const noexcept {
  const uint32_t exp = Load<uint32_t>(shard_->At(head_) + kOffExp);
  if (exp == 0) return -1;
  return static_cast<int64_t>(exp) - now_;
}
uint32_t ItemView::idle_seconds() const noexcept {
  const uint32_t at = Load<uint32_t>(shard_->At(head_) + kOffATime);
  return now_ > at ? now_ - at : 0;
}
bool ItemView::fetched_before() const noexcept { return (extra_ & kViewFetched) != 0; }
bool ItemView::stale() const noexcept { return (shard_->Ctl(head_) & kStale) != 0; }
bool ItemView::won() const noexcept { return (extra_ & kViewWon) != 0; }
bool ItemView::win_token_taken() const noexcept { return (extra_ & kViewTokenTaken) != 0; }
bool ItemView::binary_key() const noexcept { return (shard_->Ctl(head_) & kBinKey) != 0; }
void ItemView::CopyValueTo(char* dst) const noexcept {
  shard_->Transfer<false>(head_, kHeader + shard_->KLen(head_), reinterpret_cast<std::byte*>(dst),
                          value_size());
}
void ItemView::AppendValueTo(Buffer& out) const {
  const size_t n = value_size();
  auto dst = out.Prepare(n);
  CopyValueTo(reinterpret_cast<char*>(dst.data()));
  out.Commit(n);
}

// ---------------------------------------------------------------------------
// Store

Store::Store(const StoreOptions& options)
    : options_(options), clock_(options.clock != nullptr ? options.clock : &RealClock()) {}

Store::~Store() {
  cold_.reset();  // writes its buffer out and syncs
  if (pool_ != nullptr) ::munmap(pool_, pool_bytes_);
}

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  if (options.block_size < 40 || options.block_size > 4096 || options.block_size % 8 != 0) {
    return InvalidArgument("block_size must be 40..4096 and a multiple of 8");
  }
  if (options.shards == 0 || !std::has_single_bit(options.shards) || options.shards > 1024) {
    return InvalidArgument("shards must be a power of two in 1..1024");
  }
  if (options.item_size_max < 1024 || options.item_size_max > (size_t{1} << 30)) {
    return InvalidArgument("item_size_max must be 1 KiB..1 GiB");
  }
  if (options.memory_bytes < options.item_size_max * 2) {
    return InvalidArgument("memory_bytes must be at least twice item_size_max");
  }
  const uint64_t max_blocks = uint64_t{UINT32_MAX} - 1;
  std::unique_ptr<Store> store(new Store(options));
  // Fewer shards when the budget is small: each shard must be able to hold
  // two of the largest items (memcached: -I at most half of -m).
  unsigned shards = options.shards;
  while (shards > 1 && options.memory_bytes / shards < options.item_size_max * 2) shards /= 2;
  const uint64_t per_shard = options.memory_bytes / shards / options.block_size;
  if (per_shard > max_blocks) return InvalidArgument("memory_bytes too large for block_size");
  store->pool_bytes_ = static_cast<size_t>(per_shard * shards * options.block_size);
  void* p = ::mmap(nullptr, store->pool_bytes_, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return Status(Errc::kResourceExhausted, "mmap of the block pool failed");
  }
  store->pool_ = p;
  store->shard_count_ = shards;
  store->shard_shift_ = static_cast<unsigned>(64 - std::countr_zero(shards));
  store->shards_ = std::make_unique<StoreShard[]>(shards);
  for (unsigned i = 0; i < shards; ++i) {
    StoreShard& s = store->shards_[i];
    s.base = static_cast<std::byte*>(p) + size_t{i} * per_shard * options.block_size;
    s.block = options.block_size;
    s.capacity = static_cast<uint32_t>(per_shard);
    s.buckets.assign(1024, 0);
  }
  store->start_mono_ = store->clock_->MonotonicNow();
  store->start_wall_ =
      std::chrono::duration_cast<std::chrono::seconds>(store->clock_->WallNow().time_since_epoch())
          .count() -
      2;
  if (!options.ssd_dir.empty()) {
    Env* env = options.env;
    if (env == nullptr) {
      QCLOUD_ASSIGN_OR_RETURN(store->owned_env_, OpenPosixEnv());
      env = store->owned_env_.get();
    }
    ColdTierOptions co;
    co.env = env;
    co.dir = options.ssd_dir;
    co.capacity_bytes = options.ssd_bytes;
    co.segment_bytes = options.segment_bytes;
    co.compress = options.compress_cold;
    QCLOUD_ASSIGN_OR_RETURN(store->cold_, ColdTier::Open(co));
    // CAS values stay unique across restarts: continue above every CAS on disk.
    store->next_cas_.store(store->cold_->max_cas() + 1, std::memory_order_relaxed);
  }
  return store;
}

uint32_t Store::Now() const noexcept {
  const auto d = clock_->MonotonicNow() - start_mono_;
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + 2;
}

uint32_t Store::Uptime() const noexcept { return Now() - 2; }

size_t Store::MaxValueSize(size_t key_size) const noexcept {
  return options_.item_size_max - kMemcachedItemOverhead - key_size;
}

uint32_t Store::ToEngineTime(int64_t exptime, uint32_t now) const noexcept {
  if (exptime == 0) return 0;
  if (exptime < 0) return 1;  // already expired
  if (exptime > kRelativeLimit) {
    if (exptime <= start_wall_) return 1;
    return static_cast<uint32_t>(std::min<int64_t>(exptime - start_wall_, UINT32_MAX - 1));
  }
  return static_cast<uint32_t>(std::min<int64_t>(exptime + now, UINT32_MAX - 1));
}

StoreShard& Store::ShardFor(uint64_t hash) noexcept {
  return shards_[shard_count_ == 1 ? 0 : hash >> shard_shift_];
}

bool Store::Visible(const StoreShard& s, uint32_t h, uint32_t now) const noexcept {
  const std::byte* p = s.At(h);
  const uint32_t exp = Load<uint32_t>(p + kOffExp);
  if (exp != 0 && exp <= now) return false;
  const uint32_t oldest = oldest_live_.load(std::memory_order_relaxed);
  if (oldest != 0 && oldest <= now) {
    if (Load<uint32_t>(p + kOffATime) <= oldest) return false;
    const uint64_t oldest_cas = oldest_cas_.load(std::memory_order_relaxed);
    if (oldest_cas != 0 && Load<uint64_t>(p + kOffCas) < oldest_cas) return false;
  }
  return true;
}

Outcome Store::MakeRoom(StoreShard& s, uint32_t blocks, uint32_t now) {
  if (blocks > s.capacity) return Outcome::kNoMemory;
  // Two full turns of the hand clear every reference bit and then evict, so
  // the sweep ends; reclaiming dead items costs nothing in either mode.
  const size_t max_steps = s.buckets.size() * 2 + 1;
  for (size_t step = 0; s.Available() < blocks && step < max_steps; ++step) {
    const uint32_t bucket = s.hand;
    s.hand = static_cast<uint32_t>((s.hand + 1) & (s.buckets.size() - 1));
    std::byte* link = reinterpret_cast<std::byte*>(&s.buckets[bucket]);
    for (uint32_t h = Load<uint32_t>(link); h != 0; h = Load<uint32_t>(link)) {
      const uint8_t ctl = s.Ctl(h);
      if (!Visible(s, h, now)) {
        if ((ctl & kFetched) == 0) ++s.expired_unfetched;
        ++s.reclaimed;
        s.Remove(link);
        continue;
      }
      if (options_.eviction == Eviction::kClock && s.Available() < blocks) {
        if ((ctl & kRef) != 0) {
          s.SetCtl(h, static_cast<uint8_t>(ctl & ~kRef));
        } else {
          // With a cold tier the item sinks to SSD; it is lost only when
          // the tier is full.
          if (cold_ == nullptr || !Sink(s, h, now)) {
            if ((ctl & kFetched) == 0) ++s.evicted_unfetched;
            ++s.evictions;
          }
          s.Remove(link);
          continue;
        }
      }
      link = s.At(h) + kOffHNext;
    }
    if (options_.eviction == Eviction::kNone && step + 1 >= s.buckets.size()) break;
  }
  return s.Available() >= blocks ? Outcome::kOk : Outcome::kNoMemory;
}

bool Store::Sink(StoreShard& s, uint32_t h, uint32_t now) {
  const std::byte* p = s.At(h);
  char key[kMaxKeyLength];
  const size_t klen = s.KLen(h);
  s.KeyOf(h, key);
  ColdItem item;
  item.value.resize(s.VLen(h));
  s.Transfer<false>(h, kHeader + klen, reinterpret_cast<std::byte*>(item.value.data()),
                    item.value.size());
  item.flags = Load<uint32_t>(p + kOffFlags);
  item.cas = Load<uint64_t>(p + kOffCas);
  const uint32_t exp = Load<uint32_t>(p + kOffExp);
  item.exptime = exp == 0 ? 0 : start_wall_ + exp;
  item.atime = start_wall_ + std::min(Load<uint32_t>(p + kOffATime), now);
  const std::string_view k(key, klen);
  const Status st = cold_->Put(k, Xxh3_64(ByteView(k)), item);
  if (!st.ok() && st.code() != Errc::kResourceExhausted) ++s.cold_errors;
  return st.ok();
}

void Store::DropCold(StoreShard& s, std::string_view key, uint64_t hash) {
  if (cold_ == nullptr || !cold_->MayContain(hash)) return;
  auto found = cold_->Find(key, hash);
  if (!found.ok()) {
    ++s.cold_errors;
  } else if (found->has_value() && !cold_->Erase(key, hash, (*found)->location).ok()) {
    ++s.cold_errors;
  }
}

bool Store::FaultIn(StoreShard& s, std::string_view key, uint64_t hash, uint32_t now) {
  if (cold_ == nullptr || !cold_->MayContain(hash)) return false;
  auto found = cold_->Find(key, hash);
  if (!found.ok()) {
    ++s.cold_errors;
    return false;
  }
  if (!found->has_value()) return false;
  ColdItem& item = **found;
  uint32_t exp = 0;
  if (item.exptime != 0) {
    exp = item.exptime <= start_wall_ ? 1
                                      : static_cast<uint32_t>(std::min<int64_t>(
                                            item.exptime - start_wall_, UINT32_MAX - 1));
  }
  const int64_t at = item.atime - start_wall_;
  const uint32_t atime = at <= 0 ? 0 : static_cast<uint32_t>(std::min<int64_t>(at, now));
  if (exp != 0 && exp <= now) {  // expired while cold
    (void)cold_->Erase(key, hash, item.location);
    return false;
  }
  const uint32_t n = s.BlocksFor(kHeader + key.size() + item.value.size());
  if (MakeRoom(s, n, now) != Outcome::kOk) return false;
  const uint32_t h = s.AllocateChain(n);
  std::byte* p = s.At(h);
  Put<uint32_t>(p + kOffATime, atime);
  Put<uint32_t>(p + kOffExp, exp);
  Put<uint64_t>(p + kOffCas, item.cas);
  Put<uint32_t>(p + kOffVLen, static_cast<uint32_t>(item.value.size()));
  Put<uint32_t>(p + kOffFlags, item.flags);
  Put<uint8_t>(p + kOffKLen, static_cast<uint8_t>(key.size()));
  Put<uint8_t>(p + kOffCtl, kFetched);
  s.Transfer<true>(h, kHeader, reinterpret_cast<std::byte*>(const_cast<char*>(key.data())),
                   key.size());
  s.Transfer<true>(h, kHeader + key.size(), reinterpret_cast<std::byte*>(item.value.data()),
                   item.value.size());
  s.LinkAtHead(h, hash);
  --s.total_items;  // not a new item
  s.MaybeExpand();
  if (!cold_->Erase(key, hash, item.location).ok()) ++s.cold_errors;
  ++s.reactivated;
  return true;
}

Outcome Store::ReadImpl(std::string_view key, const ReadOptions& options, VisitFn visit,
                        void* ctx) {
  if (key.empty() || key.size() > kMaxKeyLength) return Outcome::kBadKey;
  const uint64_t hash = Xxh3_64(ByteView(key));
  StoreShard& s = ShardFor(hash);
  const uint32_t now = Now();
  std::lock_guard lock(s.mu);
  std::byte* link = s.FindLink(key, hash);
  uint32_t h = Load<uint32_t>(link);
  if (h == 0 && FaultIn(s, key, hash, now)) {
    link = s.FindLink(key, hash);
    h = Load<uint32_t>(link);
  }
  if (h != 0 && !Visible(s, h, now)) {
    if ((s.Ctl(h) & kFetched) == 0) ++s.expired_unfetched;
    ++s.reclaimed;
    s.Remove(link);
    h = 0;
  }
  uint8_t extra = 0;
  if (h == 0) {
    if (!options.vivify_exptime) return Outcome::kNotFound;
    // Meta N: create an empty item; this reader wins the recompute token.
    const uint32_t n = s.BlocksFor(kHeader + key.size());
    if (MakeRoom(s, n, now) != Outcome::kOk) return Outcome::kNotFound;
    h = s.AllocateChain(n);
    std::byte* p = s.At(h);
    Put<uint32_t>(p + kOffATime, now);
    Put<uint32_t>(p + kOffExp, ToEngineTime(*options.vivify_exptime, now));
    Put<uint64_t>(p + kOffCas, NextCas());
    Put<uint32_t>(p + kOffVLen, 0);
    Put<uint32_t>(p + kOffFlags, 0);
    Put<uint8_t>(p + kOffKLen, static_cast<uint8_t>(key.size()));
    Put<uint8_t>(p + kOffCtl, kWinSent);
    s.Transfer<true>(h, kHeader, reinterpret_cast<std::byte*>(const_cast<char*>(key.data())),
                     key.size());
    s.LinkAtHead(h, hash);
    s.MaybeExpand();
    extra = kViewWon;
    visit(ctx, ItemView(&s, h, now, extra));
    return Outcome::kOk;
  }
  std::byte* p = s.At(h);
  const uint8_t ctl = s.Ctl(h);
  if ((ctl & kFetched) != 0) extra |= kViewFetched;
  uint8_t new_ctl = ctl;
  // Recompute tokens (meta W/Z): a stale item or one close to expiry is
  // handed to exactly one reader.
  const uint32_t exp = Load<uint32_t>(p + kOffExp);
  bool wants_token = (ctl & kStale) != 0;
  if (options.recache_below && exp != 0 && exp - now < *options.recache_below) wants_token = true;
  if ((ctl & kWinSent) != 0) {
    extra |= kViewTokenTaken;
  } else if (wants_token) {
    extra |= kViewWon;
    new_ctl |= kWinSent;
  }
  if (options.touch_exptime) Put<uint32_t>(p + kOffExp, ToEngineTime(*options.touch_exptime, now));
  visit(ctx, ItemView(&s, h, now, extra));
  if (options.update_access) {
    new_ctl |= kRef | kFetched;
    Put<uint32_t>(p + kOffATime, now);
  }
  if (new_ctl != ctl) s.SetCtl(h, new_ctl);
  return Outcome::kOk;
}

bool Store::Get(std::string_view key, std::string* value, uint32_t* flags, uint64_t* cas) {
  return Read(key, {}, [&](const ItemView& item) {
           if (value != nullptr) {
             value->resize(item.value_size());
             item.CopyValueTo(value->data());
           }
           if (flags != nullptr) *flags = item.flags();
           if (cas != nullptr) *cas = item.cas();
         }) == Outcome::kOk;
}

WriteResult Store::Write(StoreMode mode, std::string_view key, ByteView value,
                         const WriteOptions& options) {
  if (key.empty() || key.size() > kMaxKeyLength) return {Outcome::kBadKey};
  if (value.size() > MaxValueSize(key.size())) {
    if (mode == StoreMode::kSet) Delete(key);  // memcached drops the stale value
    return {Outcome::kTooLarge};
  }
  const uint64_t hash = Xxh3_64(ByteView(key));
  StoreShard& s = ShardFor(hash);
  const uint32_t now = Now();
  std::lock_guard lock(s.mu);
  std::byte* link = s.FindLink(key, hash);
  uint32_t old = Load<uint32_t>(link);
  if (old == 0 && FaultIn(s, key, hash, now)) {
    link = s.FindLink(key, hash);
    old = Load<uint32_t>(link);
  }
  if (old != 0 && !Visible(s, old, now)) {
    if ((s.Ctl(old) & kFetched) == 0) ++s.expired_unfetched;
    ++s.reclaimed;
    s.Remove(link);
    old = 0;
  }
  uint8_t ctl = options.binary_key ? kBinKey : 0;
  bool mark_stale = false;
  switch (mode) {
    case StoreMode::kSet:
      break;
    case StoreMode::kAdd:
      if (old != 0) {
        // memcached bumps the existing item: it is in use.
        s.SetCtl(old, static_cast<uint8_t>(s.Ctl(old) | kRef));
        return {Outcome::kNotStored};
      }
      break;
    case StoreMode::kReplace:
    case StoreMode::kAppend:
    case StoreMode::kPrepend:
      if (old == 0) return {options.cas != 0 ? Outcome::kNotFound : Outcome::kNotStored};
      break;
  }
  if (options.cas != 0) {
    if (old == 0) return {Outcome::kNotFound};
    const uint64_t cur = Load<uint64_t>(s.At(old) + kOffCas);
    if (cur != options.cas) {
      if (options.invalidate_if_cas_older && options.cas < cur) {
        mark_stale = true;
      } else {
        return {Outcome::kExists};
      }
    }
  }
  uint32_t flags = options.flags;
  uint32_t exp = ToEngineTime(options.exptime, now);
  std::string joined;  // append/prepend: old and new bytes, before the old item may be evicted
  ByteView data = value;
  if (mode == StoreMode::kAppend || mode == StoreMode::kPrepend) {
    const std::byte* op = s.At(old);
    flags = Load<uint32_t>(op + kOffFlags);
    exp = Load<uint32_t>(op + kOffExp);
    ctl = static_cast<uint8_t>(s.Ctl(old) & kBinKey);
    const size_t old_len = s.VLen(old);
    if (old_len + value.size() > MaxValueSize(key.size())) return {Outcome::kNotStored};
    joined.resize(old_len + value.size());
    char* dst = joined.data();
    if (mode == StoreMode::kPrepend) {
      std::memcpy(dst, value.data(), value.size());
      dst += value.size();
    }
    s.Transfer<false>(old, kHeader + key.size(), reinterpret_cast<std::byte*>(dst), old_len);
    if (mode == StoreMode::kAppend) std::memcpy(dst + old_len, value.data(), value.size());
    data = ByteView(joined);
  }
  const uint32_t n = s.BlocksFor(kHeader + key.size() + data.size());
  if (MakeRoom(s, n, now) != Outcome::kOk) {
    if (mode == StoreMode::kSet) {
      link = s.FindLink(key, hash);
      if (Load<uint32_t>(link) != 0) s.Remove(link);
    }
    return {Outcome::kNoMemory};
  }
  // The sweep may have removed the old item (it was cold): find it again.
  // If it sank to the cold tier meanwhile, that copy must not outlive it.
  link = s.FindLink(key, hash);
  if (Load<uint32_t>(link) != 0) {
    s.Remove(link);
  } else if (old != 0) {
    DropCold(s, key, hash);
  }
  const uint32_t h = s.AllocateChain(n);
  std::byte* p = s.At(h);
  const uint64_t cas = NextCas();
  Put<uint32_t>(p + kOffATime, now);
  Put<uint32_t>(p + kOffExp, exp);
  Put<uint64_t>(p + kOffCas, cas);
  Put<uint32_t>(p + kOffVLen, static_cast<uint32_t>(data.size()));
  Put<uint32_t>(p + kOffFlags, flags);
  Put<uint8_t>(p + kOffKLen, static_cast<uint8_t>(key.size()));
  Put<uint8_t>(p + kOffCtl, static_cast<uint8_t>(ctl | (mark_stale ? kStale : 0)));
  s.Transfer<true>(h, kHeader, reinterpret_cast<std::byte*>(const_cast<char*>(key.data())),
                   key.size());
  s.Transfer<true>(h, kHeader + key.size(), const_cast<std::byte*>(data.data()), data.size());
  s.LinkAtHead(h, hash);
  s.MaybeExpand();
  return {Outcome::kOk, cas};
}

Outcome Store::Delete(std::string_view key, const DeleteOptions& options) {
  if (key.empty() || key.size() > kMaxKeyLength) return Outcome::kBadKey;
  const uint64_t hash = Xxh3_64(ByteView(key));
  StoreShard& s = ShardFor(hash);
  const uint32_t now = Now();
  std::lock_guard lock(s.mu);
  std::byte* link = s.FindLink(key, hash);
  uint32_t h = Load<uint32_t>(link);
  if (h == 0 && FaultIn(s, key, hash, now)) {
    link = s.FindLink(key, hash);
    h = Load<uint32_t>(link);
  }
  if (h == 0) return Outcome::kNotFound;
  if (!Visible(s, h, now)) {
    ++s.reclaimed;
    s.Remove(link);
    return Outcome::kNotFound;
  }
  std::byte* p = s.At(h);
  if (options.cas != 0 && Load<uint64_t>(p + kOffCas) != options.cas) return Outcome::kExists;
  if (options.invalidate) {
    Put<uint64_t>(p + kOffCas, NextCas());
    if (options.exptime) Put<uint32_t>(p + kOffExp, ToEngineTime(*options.exptime, now));
    s.SetCtl(h, static_cast<uint8_t>((s.Ctl(h) | kStale) & ~kWinSent));
    return Outcome::kOk;
  }
  s.Remove(link);
  return Outcome::kOk;
}

Outcome Store::Touch(std::string_view key, int64_t exptime) {
  ReadOptions o;
  o.touch_exptime = exptime;
  return Read(key, o, [](const ItemView&) {});
}

namespace {

// memcached's safe_strtoull on an item's value (which memcached stores
// followed by "\r\n"): strtoull, then the number must end at a space/CR or
// the end, and a '-' is refused when the result would look negative.
bool ParseStoredNumber(const char* begin, size_t len, uint64_t* out) {
  std::string tmp(begin, len);
  tmp += "\r\n";
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(tmp.c_str(), &end, 10);
  if (errno == ERANGE || end == tmp.c_str()) return false;
  const unsigned char c = static_cast<unsigned char>(*end);
  if (c == ' ' || (c >= '\t' && c <= '\r') || (c == '\0' && end != tmp.c_str())) {
    if (static_cast<long long>(v) < 0 && std::memchr(tmp.c_str(), '-', end - tmp.c_str())) {
      return false;
    }
    *out = v;
    return true;
  }
  return false;
}

}  // namespace

ArithResult Store::Arith(std::string_view key, const ArithOptions& options) {
  if (key.empty() || key.size() > kMaxKeyLength) return {Outcome::kBadKey};
  const uint64_t hash = Xxh3_64(ByteView(key));
  StoreShard& s = ShardFor(hash);
  const uint32_t now = Now();
  std::unique_lock lock(s.mu);
  std::byte* link = s.FindLink(key, hash);
  uint32_t h = Load<uint32_t>(link);
  if (h == 0 && FaultIn(s, key, hash, now)) {
    link = s.FindLink(key, hash);
    h = Load<uint32_t>(link);
  }
  if (h != 0 && !Visible(s, h, now)) {
    ++s.reclaimed;
    s.Remove(link);
    h = 0;
  }
  char digits[24];
  if (h == 0) {
    if (!options.initial) return {Outcome::kNotFound};
    lock.unlock();
    const int len = std::snprintf(digits, sizeof digits, "%llu",
                                  static_cast<unsigned long long>(*options.initial));
    WriteOptions w;
    w.exptime = options.exptime;
    WriteResult r = Write(StoreMode::kAdd, key, ByteView(digits, static_cast<size_t>(len)), w);
    if (r.outcome == Outcome::kNotStored) return Arith(key, options);  // raced with a writer
    if (r.outcome != Outcome::kOk) return {r.outcome};
    return {Outcome::kOk, *options.initial, r.cas, true};
  }
  std::byte* p = s.At(h);
  const size_t vlen = s.VLen(h);
  // memcached: empty values and chunked (large) items are not numbers.
  if (vlen == 0 || vlen > 512 * 1024) return {Outcome::kNonNumeric};
  if (options.cas != 0 && Load<uint64_t>(p + kOffCas) != options.cas) return {Outcome::kExists};
  std::string value(vlen, '\0');
  s.Transfer<false>(h, kHeader + key.size(), reinterpret_cast<std::byte*>(value.data()), vlen);
  uint64_t v = 0;
  if (!ParseStoredNumber(value.data(), vlen, &v)) return {Outcome::kNonNumeric};
  if (options.increment) {
    v += options.delta;
  } else {
    v = options.delta > v ? 0 : v - options.delta;
  }
  const int len =
      std::snprintf(digits, sizeof digits, "%llu", static_cast<unsigned long long>(v));
  const uint64_t cas = NextCas();
  if (options.in_place && static_cast<size_t>(len) <= vlen) {
    // In place, padded with spaces, keeping the length (memcached does).
    std::string padded(digits, static_cast<size_t>(len));
    padded.resize(vlen, ' ');
    s.Transfer<true>(h, kHeader + key.size(), reinterpret_cast<std::byte*>(padded.data()), vlen);
    Put<uint64_t>(p + kOffCas, cas);
    Put<uint32_t>(p + kOffATime, now);
    s.SetCtl(h, static_cast<uint8_t>(s.Ctl(h) | kRef));
    return {Outcome::kOk, v, cas};
  }
  const uint32_t flags = Load<uint32_t>(p + kOffFlags);
  const uint32_t exp = Load<uint32_t>(p + kOffExp);
  const uint8_t ctl = static_cast<uint8_t>(s.Ctl(h) & kBinKey);
  const uint32_t n = s.BlocksFor(kHeader + key.size() + static_cast<size_t>(len));
  if (MakeRoom(s, n, now) != Outcome::kOk) return {Outcome::kNoMemory};
  link = s.FindLink(key, hash);
  if (Load<uint32_t>(link) != 0) {
    s.Remove(link);
  } else {
    DropCold(s, key, hash);  // the old item sank during MakeRoom
  }
  h = s.AllocateChain(n);
  p = s.At(h);
  Put<uint32_t>(p + kOffATime, now);
  Put<uint32_t>(p + kOffExp, exp);
  Put<uint64_t>(p + kOffCas, cas);
  Put<uint32_t>(p + kOffVLen, static_cast<uint32_t>(len));
  Put<uint32_t>(p + kOffFlags, flags);
  Put<uint8_t>(p + kOffKLen, static_cast<uint8_t>(key.size()));
  Put<uint8_t>(p + kOffCtl, ctl);
  s.Transfer<true>(h, kHeader, reinterpret_cast<std::byte*>(const_cast<char*>(key.data())),
                   key.size());
  s.Transfer<true>(h, kHeader + key.size(), reinterpret_cast<std::byte*>(digits),
                   static_cast<size_t>(len));
  s.LinkAtHead(h, hash);
  s.MaybeExpand();
  return {Outcome::kOk, v, cas};
}

void Store::FlushAll(int64_t delay) {
  const uint32_t now = Now();
  // memcached (with CAS enabled): oldest_live = deadline - 1, and for an
  // immediate flush every CAS issued so far is also too old, which covers
  // items written within the current second.
  const uint32_t deadline = delay > 0 ? ToEngineTime(delay, now) : now;
  oldest_live_.store(deadline - 1, std::memory_order_relaxed);
  if (deadline - 1 <= now) {
    oldest_cas_.store(next_cas_.load(std::memory_order_relaxed), std::memory_order_relaxed);
  }
  if (cold_ != nullptr) {
    // Every cold item was last used before now, so the flush covers all of
    // them: drop the tier now, or at the deadline (Maintain).
    if (deadline - 1 <= now) {
      (void)cold_->DropAll();
    } else {
      cold_flush_pending_.store(true, std::memory_order_relaxed);
    }
  }
}

Status Store::Maintain(size_t buckets) {
  if (cold_ == nullptr) return Status::Ok();
  const uint32_t now = Now();
  const uint32_t oldest = oldest_live_.load(std::memory_order_relaxed);
  if (cold_flush_pending_.load(std::memory_order_relaxed) && oldest != 0 && oldest <= now) {
    cold_flush_pending_.store(false, std::memory_order_relaxed);
    QCLOUD_RETURN_IF_ERROR(cold_->DropAll());
  }
  const uint64_t idle = static_cast<uint64_t>(options_.cold_after.count());
  for (unsigned i = 0; i < shard_count_; ++i) {
    StoreShard& s = shards_[i];
    std::lock_guard lock(s.mu);
    for (size_t step = 0; step < buckets && step < s.buckets.size(); ++step) {
      const uint32_t bucket = s.scan;
      s.scan = static_cast<uint32_t>((s.scan + 1) & (s.buckets.size() - 1));
      std::byte* link = reinterpret_cast<std::byte*>(&s.buckets[bucket]);
      for (uint32_t h = Load<uint32_t>(link); h != 0; h = Load<uint32_t>(link)) {
        if (!Visible(s, h, now)) {
          ++s.reclaimed;
          s.Remove(link);
          continue;
        }
        const uint32_t atime = Load<uint32_t>(s.At(h) + kOffATime);
        if (now >= atime && now - atime >= idle && Sink(s, h, now)) {
          s.Remove(link);
          continue;
        }
        link = s.At(h) + kOffHNext;
      }
    }
  }
  QCLOUD_RETURN_IF_ERROR(cold_->Sync());
  return cold_->MaybeCompact(0.5).status();
}

Status Store::SinkAll() {
  if (cold_ == nullptr) return NotSupported("no cold tier configured");
  const uint32_t now = Now();
  for (unsigned i = 0; i < shard_count_; ++i) {
    StoreShard& s = shards_[i];
    std::lock_guard lock(s.mu);
    for (uint32_t& slot : s.buckets) {
      std::byte* link = reinterpret_cast<std::byte*>(&slot);
      for (uint32_t h = Load<uint32_t>(link); h != 0; h = Load<uint32_t>(link)) {
        if (Visible(s, h, now) && !Sink(s, h, now)) {
          return Status(Errc::kResourceExhausted, "cold tier full");
        }
        s.Remove(link);
      }
    }
  }
  return cold_->Sync();
}

StoreStats Store::Stats() const {
  StoreStats st;
  st.block_size = options_.block_size;
  st.memory_bytes = options_.memory_bytes;
  for (unsigned i = 0; i < shard_count_; ++i) {
    StoreShard& s = shards_[i];
    std::lock_guard lock(s.mu);
    st.total_blocks += s.capacity;
    st.used_blocks += s.used_blocks;
    st.curr_items += s.items;
    st.total_items += s.total_items;
    st.item_bytes += s.item_bytes;
    st.evictions += s.evictions;
    st.reclaimed += s.reclaimed;
    st.expired_unfetched += s.expired_unfetched;
    st.evicted_unfetched += s.evicted_unfetched;
    st.hash_buckets += s.buckets.size();
    st.hash_expansions += s.expansions;
    st.index_bytes += s.buckets.size() * sizeof(uint32_t);
    st.cold_reactivated += s.reactivated;
    st.cold_errors += s.cold_errors;
  }
  if (cold_ != nullptr) {
    const ColdTierStats c = cold_->Stats();
    st.cold_items = c.items;
    st.cold_disk_bytes = c.disk_bytes;
    st.cold_live_bytes = c.live_bytes;
    st.cold_stub_bytes = c.stub_bytes;
    st.cold_segments = c.segments;
    st.cold_sunk = c.sunk;
    st.cold_reads = c.reads;
    st.cold_compactions = c.compactions;
    st.cold_full = c.full;
    st.cold_recovered = c.recovered;
  }
  return st;
}

}  // namespace qcloud::kv
