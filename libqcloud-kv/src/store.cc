// The memory engine. Layout of the block pool and of an item:
//
//   pool: one anonymous mapping, split evenly between the shards; block
//   numbers are 1-based within a shard (0 means "none").
//
//   first block:   [u32 hash-chain next][u32 atime][56-bit cas][u8 control]
//                  [u8 key length][u24 value length]         (20 bytes, fixed)
//                  then the optional fields, in this order, each a u32:
//                    next block      if the item has more than one block
//                    exptime         if it expires (kHasExp)
//                    client flags    if they are not 0 (kHasFlags)
//                    value length    if it is >= 0xffffff (the u24 says so)
//                  then [key][value...]
//   other blocks:  [u32 next block, 0 at the end][payload]
//   free blocks:   [u32 next free block]
//
// So a 16-byte key with a 64-byte value and no flags or expiry takes 100
// bytes: one block at the default block size. memcached stores client
// flags only when they are not 0 for the same reason.
//
// Invariants (hold whenever a shard's mutex is free):
//   - every block of a shard is exactly one of: never used (>= fresh), on
//     the free list, or in the chain of exactly one linked item;
//   - an item is linked in exactly one bucket chain, the one its key hashes
//     to; items = number of linked items;
//   - the chain length of an item equals Plan(klen, vlen, ...).blocks, and
//     kChained is set iff it is more than one block.
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
#include "kv/numbers.h"
#include "qcloud/core/check.h"
#include "qcloud/core/env.h"
#include "qcloud/core/hash.h"
#include "qcloud/core/status.h"

namespace qcloud::kv {

namespace {

static_assert(std::endian::native == std::endian::little, "the item header is little-endian");

constexpr size_t kOffHNext = 0;
constexpr size_t kOffATime = 4;
constexpr size_t kOffCas = 8;    // low 7 bytes of a u64 whose top byte is the control byte
constexpr size_t kOffCtl = 15;
constexpr size_t kOffKLen = 16;
constexpr size_t kOffVLen = 17;  // u24
constexpr size_t kFixedHeader = 20;
constexpr uint32_t kLongVLen = 0xffffff;
constexpr uint64_t kCasMask = (uint64_t{1} << 56) - 1;

// Control bits.
constexpr uint8_t kRef = 1;        // read since the CLOCK hand last passed
constexpr uint8_t kFetched = 2;    // read at least once
constexpr uint8_t kStale = 4;      // invalidated (meta I)
constexpr uint8_t kWinSent = 8;    // a reader was given the recompute token
constexpr uint8_t kBinKey = 16;    // stored with a base64 key
constexpr uint8_t kChained = 32;   // more than one block: the next field is present
constexpr uint8_t kHasExp = 64;    // the exptime field is present
constexpr uint8_t kHasFlags = 128; // the flags field is present
constexpr uint8_t kFormat = kChained | kHasExp | kHasFlags;

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

// What an item's header holds besides its key and value.
struct ItemMeta {
  uint32_t atime = 0;
  uint32_t exptime = 0;
  uint32_t flags = 0;
  uint64_t cas = 0;
  uint8_t ctl = 0;  // control bits other than kFormat
};

// Where an item of a given shape goes: its header size and block count.
struct ItemPlan {
  uint8_t format = 0;  // kChained | kHasExp | kHasFlags
  uint32_t header = 0;
  uint32_t blocks = 0;
};

struct StoreShard {
  std::mutex mu;
  std::byte* base = nullptr;  // block 1 starts here
  size_t block = 0;           // block size
  uint32_t capacity = 0;      // blocks in this shard
  uint32_t fresh = 1;         // lowest never-used block
  uint32_t free_head = 0;     // freed blocks, linked through their first word
  uint32_t free_count = 0;
  std::vector<uint32_t> buckets;
  // The bucket array and its mask for Store::Prefetch's first step, which
  // only computes an address to prefetch and so may read them unlocked
  // (a stale value costs a useless prefetch, never a wrong answer).
  std::atomic<const uint32_t*> bucket_hint{nullptr};
  std::atomic<uint64_t> mask_hint{0};
  void PublishBuckets() noexcept {
    bucket_hint.store(buckets.data(), std::memory_order_relaxed);
    mask_hint.store(buckets.size() - 1, std::memory_order_relaxed);
  }
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
  // Reclaiming before allocating (MakeRoom): an item with an expiry time
  // was ever stored here, and where the next look for dead items starts.
  bool may_expire = false;
  uint32_t reclaim_hand = 0;
  // Sweeps that found nothing back off: skip this many allocations before
  // the next one (doubling up to 64, reset by a sweep that reclaims).
  uint32_t reclaim_backoff = 0, reclaim_skip = 0;

  std::byte* At(uint32_t b) const noexcept { return base + size_t{b - 1} * block; }
  uint8_t KLen(uint32_t h) const noexcept { return Load<uint8_t>(At(h) + kOffKLen); }
  uint8_t Ctl(uint32_t h) const noexcept { return Load<uint8_t>(At(h) + kOffCtl); }
  void SetCtl(uint32_t h, uint8_t c) noexcept { Put<uint8_t>(At(h) + kOffCtl, c); }
  uint32_t Available() const noexcept { return free_count + (capacity - (fresh - 1)); }

  uint64_t Cas(uint32_t h) const noexcept { return Load<uint64_t>(At(h) + kOffCas) & kCasMask; }
  void SetCas(uint32_t h, uint64_t cas) noexcept {
    std::memcpy(At(h) + kOffCas, &cas, 7);  // little-endian: the low 7 bytes
  }
  uint32_t ATime(uint32_t h) const noexcept { return Load<uint32_t>(At(h) + kOffATime); }
  void SetATime(uint32_t h, uint32_t t) noexcept { Put<uint32_t>(At(h) + kOffATime, t); }
  uint32_t ShortVLen(uint32_t h) const noexcept {
    uint32_t v = 0;
    std::memcpy(&v, At(h) + kOffVLen, 3);
    return v;
  }

  // Offset of an optional field (kChained, kHasExp or kHasFlags; 0 for the
  // long value length) in an item whose control byte is `ctl`.
  static size_t OptionalOffset(uint8_t ctl, uint8_t field) noexcept {
    size_t off = kFixedHeader;
    if (field == kChained) return off;
    off += (ctl & kChained) != 0 ? 4 : 0;
    if (field == kHasExp) return off;
    off += (ctl & kHasExp) != 0 ? 4 : 0;
    if (field == kHasFlags) return off;
    return off + ((ctl & kHasFlags) != 0 ? 4 : 0);
  }
  uint32_t VLen(uint32_t h) const noexcept {
    const uint32_t v = ShortVLen(h);
    if (v != kLongVLen) return v;
    return Load<uint32_t>(At(h) + OptionalOffset(Ctl(h), 0));
  }
  uint32_t Exp(uint32_t h) const noexcept {
    const uint8_t ctl = Ctl(h);
    if ((ctl & kHasExp) == 0) return 0;
    return Load<uint32_t>(At(h) + OptionalOffset(ctl, kHasExp));
  }
  // Sets the exptime in place; false when the item has no field for it
  // (then it must be rewritten, see Store::Retime).
  bool SetExp(uint32_t h, uint32_t exp) noexcept {
    const uint8_t ctl = Ctl(h);
    if ((ctl & kHasExp) == 0) return exp == 0;
    Put<uint32_t>(At(h) + OptionalOffset(ctl, kHasExp), exp);
    return true;
  }
  uint32_t Flags(uint32_t h) const noexcept {
    const uint8_t ctl = Ctl(h);
    if ((ctl & kHasFlags) == 0) return 0;
    return Load<uint32_t>(At(h) + OptionalOffset(ctl, kHasFlags));
  }
  // Logical offset of the key (the header's size).
  size_t KeyOffset(uint32_t h) const noexcept {
    const uint8_t ctl = Ctl(h);
    return OptionalOffset(ctl, 0) + (ShortVLen(h) == kLongVLen ? 4 : 0);
  }
  ItemMeta Meta(uint32_t h) const noexcept {
    return {ATime(h), Exp(h), Flags(h), Cas(h), static_cast<uint8_t>(Ctl(h) & ~kFormat)};
  }

  ItemPlan Plan(size_t klen, size_t vlen, uint32_t exptime, uint32_t flags) const noexcept {
    ItemPlan p;
    p.format = static_cast<uint8_t>((exptime != 0 ? kHasExp : 0) | (flags != 0 ? kHasFlags : 0));
    p.header = static_cast<uint32_t>(kFixedHeader + (exptime != 0 ? 4 : 0) + (flags != 0 ? 4 : 0) +
                                     (vlen >= kLongVLen ? 4 : 0));
    const size_t total = p.header + klen + vlen;
    if (total <= block) {
      p.blocks = 1;
      return p;
    }
    p.format |= kChained;
    p.header += 4;
    const size_t rest = total + 4 - block;  // continuation blocks carry block - 4 each
    p.blocks = static_cast<uint32_t>(1 + (rest + block - 5) / (block - 4));
    return p;
  }

  // The block after `b` in item `h`'s chain (b == h: the first block).
  uint32_t NextOf(uint32_t h, uint32_t b) const noexcept {
    if (b != h) return Load<uint32_t>(At(b));
    if ((Ctl(h) & kChained) == 0) return 0;
    return Load<uint32_t>(At(h) + kFixedHeader);
  }

  // Copies `n` bytes at logical offset `off` of item `h` (the key starts at
  // KeyOffset(h)) into `dst`, or from `src` when writing.
  template <bool kWrite>
  void Transfer(uint32_t h, size_t off, std::byte* buf, size_t n) const noexcept {
    uint32_t b = h;
    // Skip whole blocks: the first holds block bytes, the others block-4.
    if (off >= block) {
      off -= block;
      b = NextOf(h, h);
      while (off >= block - 4) {
        off -= block - 4;
        b = Load<uint32_t>(At(b));
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
      if (n == 0) break;
      b = NextOf(h, b);
      off = 4;
    }
  }

  bool KeyEquals(uint32_t h, std::string_view key) const noexcept {
    if (KLen(h) != key.size()) return false;
    const size_t off = KeyOffset(h);
    if (off + key.size() <= block) {
      return std::memcmp(At(h) + off, key.data(), key.size()) == 0;
    }
    char tmp[kMaxKeyLength];
    Transfer<false>(h, off, reinterpret_cast<std::byte*>(tmp), key.size());
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

  uint32_t TakeBlock() noexcept {
    if (free_head == 0) return fresh++;
    const uint32_t b = free_head;
    free_head = Load<uint32_t>(At(b));
    --free_count;
    return b;
  }

  // Builds an item (the caller made room for plan.blocks) and links it at
  // the head of its bucket chain.
  uint32_t NewItem(std::string_view key, uint64_t hash, ByteView value, const ItemMeta& m,
                   const ItemPlan& plan) noexcept {
    QCLOUD_DCHECK(Available() >= plan.blocks);
    if (m.exptime != 0) may_expire = true;
    const uint32_t h = TakeBlock();
    std::byte* p = At(h);
    Put<uint32_t>(p + kOffATime, m.atime);
    Put<uint64_t>(p + kOffCas, (m.cas & kCasMask) |
                                   (uint64_t{static_cast<uint8_t>((m.ctl & ~kFormat) | plan.format)}
                                    << 56));
    Put<uint8_t>(p + kOffKLen, static_cast<uint8_t>(key.size()));
    const uint32_t short_vlen = value.size() >= kLongVLen ? kLongVLen : static_cast<uint32_t>(value.size());
    std::memcpy(p + kOffVLen, &short_vlen, 3);
    size_t off = kFixedHeader;
    if ((plan.format & kChained) != 0) {
      // Continuation blocks: each records the next; the last records 0.
      uint32_t prev = 0;
      for (uint32_t i = 1; i < plan.blocks; ++i) {
        const uint32_t b = TakeBlock();
        Put<uint32_t>(At(b), 0);
        Put<uint32_t>(prev == 0 ? p + kFixedHeader : At(prev), b);
        prev = b;
      }
      off += 4;
    }
    if ((plan.format & kHasExp) != 0) {
      Put<uint32_t>(p + off, m.exptime);
      off += 4;
    }
    if ((plan.format & kHasFlags) != 0) {
      Put<uint32_t>(p + off, m.flags);
      off += 4;
    }
    if (short_vlen == kLongVLen) {
      Put<uint32_t>(p + off, static_cast<uint32_t>(value.size()));
      off += 4;
    }
    QCLOUD_DCHECK(off == plan.header);
    used_blocks += plan.blocks;
    Transfer<true>(h, off, reinterpret_cast<std::byte*>(const_cast<char*>(key.data())), key.size());
    Transfer<true>(h, off + key.size(), const_cast<std::byte*>(value.data()), value.size());
    uint32_t& slot = buckets[hash & (buckets.size() - 1)];
    Put<uint32_t>(p + kOffHNext, slot);
    slot = h;
    ++items;
    ++total_items;
    item_bytes += kMemcachedItemOverhead + key.size() + value.size();
    return h;
  }

  void FreeChain(uint32_t h) noexcept {
    uint32_t b = h;
    while (b != 0) {
      const uint32_t next = NextOf(h, b);
      Put<uint32_t>(At(b), free_head);
      free_head = b;
      ++free_count;
      --used_blocks;
      b = next;
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

  void KeyOf(uint32_t h, char* out) const noexcept {
    Transfer<false>(h, KeyOffset(h), reinterpret_cast<std::byte*>(out), KLen(h));
  }
  void ValueOf(uint32_t h, char* out) const noexcept {
    Transfer<false>(h, KeyOffset(h) + KLen(h), reinterpret_cast<std::byte*>(out), VLen(h));
  }

  // Doubles the bucket array when the chains average 2 items. (memcached
  // grows at 1.5; at 2 the index costs 2-4 bytes per item, and a lookup
  // walks 2 items on average: one cache miss more now and then, where a
  // request costs microseconds of syscalls anyway.)
  void MaybeExpand() {
    if (items < buckets.size() * 2) return;
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
    PublishBuckets();
    hand = 0;
    ++expansions;
  }
};

// ---------------------------------------------------------------------------
// ItemView

// The reader's own key: a view is only handed out for an item whose key
// equals it, and the reader's key outlives the callback, where a key that
// spans blocks would otherwise need a copy somewhere.
std::string_view ItemView::key() const noexcept { return key_; }
uint32_t ItemView::flags() const noexcept { return shard_->Flags(head_); }
uint64_t ItemView::cas() const noexcept { return shard_->Cas(head_); }
size_t ItemView::value_size() const noexcept { return shard_->VLen(head_); }
int64_t ItemView::ttl() const noexcept {
  const uint32_t exp = shard_->Exp(head_);
  if (exp == 0) return -1;
  return static_cast<int64_t>(exp) - now_;
}
uint32_t ItemView::idle_seconds() const noexcept {
  const uint32_t at = shard_->ATime(head_);
  return now_ > at ? now_ - at : 0;
}
bool ItemView::fetched_before() const noexcept { return (extra_ & kViewFetched) != 0; }
bool ItemView::stale() const noexcept { return (shard_->Ctl(head_) & kStale) != 0; }
bool ItemView::won() const noexcept { return (extra_ & kViewWon) != 0; }
bool ItemView::win_token_taken() const noexcept { return (extra_ & kViewTokenTaken) != 0; }
bool ItemView::binary_key() const noexcept { return (shard_->Ctl(head_) & kBinKey) != 0; }
void ItemView::CopyValueTo(char* dst) const noexcept {
  shard_->ValueOf(head_, dst);
}
void ItemView::AppendValueTo(Buffer& out) const {
  const size_t n = value_size();
  auto dst = out.Prepare(n);
  CopyValueTo(reinterpret_cast<char*>(dst.data()));
  out.Commit(n);
}

// The engine. Store forwards to it; everything here is private to the library.
class StoreImpl {
 public:
  using VisitFn = void (*)(void*, const ItemView&);
  static Result<std::unique_ptr<StoreImpl>> Open(const StoreOptions& options);
  explicit StoreImpl(const StoreOptions& options);
  ~StoreImpl();

  Outcome ReadImpl(std::string_view key, const ReadOptions& options, VisitFn visit, void* ctx);
  void ScanImpl(ScanCursor* cursor, size_t buckets, VisitFn visit, void* ctx);
  void ScanCold(ColdScanCursor* cursor, size_t max_bytes, void (*visit)(void*, const ColdItemInfo&),
                void* ctx);
  bool Get(std::string_view key, std::string* value, uint32_t* flags, uint64_t* cas);
  WriteResult Write(StoreMode mode, std::string_view key, ByteView value,
                    const WriteOptions& options);
  template <typename F>
  Outcome Read(std::string_view key, const ReadOptions& options, F&& visit) {
    return ReadImpl(
        key, options,
        [](void* f, const ItemView& item) { (*static_cast<std::remove_reference_t<F>*>(f))(item); },
        &visit);
  }
  Outcome Delete(std::string_view key, const DeleteOptions& options = {});
  Outcome Touch(std::string_view key, int64_t exptime);
  ArithResult Arith(std::string_view key, const ArithOptions& options);
  void FlushAll(int64_t delay);
  Status Maintain(size_t buckets);
  Status SinkAll();
  StoreStats Stats() const;
  uint32_t Uptime() const noexcept;
  size_t MaxValueSize(size_t key_size) const noexcept;

  uint32_t Now() const noexcept;
  uint32_t ToEngineTime(int64_t exptime, uint32_t now) const noexcept;
  StoreShard& ShardFor(uint64_t hash) noexcept;
  uint64_t NextCas() noexcept { return next_cas_.fetch_add(1, std::memory_order_relaxed); }
  bool Visible(const StoreShard& s, uint32_t head, uint32_t now) const noexcept;
  Outcome MakeRoom(StoreShard& s, uint32_t blocks, uint32_t now);
  bool Sink(StoreShard& s, uint32_t head, uint32_t now);
  enum class Fault { kAbsent, kIn, kIoError };
  Fault FaultIn(StoreShard& s, std::string_view key, uint64_t hash, uint32_t now);
  // Brings a cold item read from its record into memory (shard lock held).
  Fault Adopt(StoreShard& s, std::string_view key, uint64_t hash, const ColdItem& item,
              uint32_t now);
  Outcome FaultInRecord(std::string_view key, const ColdFetch& fetch, ByteView record);
  // What Lookup returns for a deferred cold read.
  static std::byte* PendingLink() noexcept {
    static std::byte pending[4];
    return pending;
  }
  // The link to `key`'s item (shard lock held): brought back from the cold
  // tier if it sank there, reclaimed if expired or flushed; *link == 0 when
  // there is no live item.
  // nullptr when the key's sunk copy could not be read (I/O or checksum
  // error, counted in cold_errors): the caller answers kIoError, never a miss.
  // With `defer` set, a key whose item is on disk is not read: its record's
  // place goes to *defer and PendingLink() is returned.
  std::byte* Lookup(StoreShard& s, std::string_view key, uint64_t hash, uint32_t now,
                    ColdFetch* defer = nullptr);
  // Sets item *head's exptime, rewriting it when its header has no room for
  // one (*head is then its new first block). kNoMemory when there is no
  // room for the rewrite; kIoError when the item sank meanwhile and its
  // copy on the tier could not be erased.
  Outcome Retime(StoreShard& s, std::string_view key, uint64_t hash, uint32_t* head, uint32_t exp,
                 uint32_t now);
  // Erases the key's sunk copy, if any. False (counted) when the tier failed.
  bool DropCold(StoreShard& s, std::string_view key, uint64_t hash);

  StoreOptions options_;
  Clock* clock_;
  MonoTime start_mono_;
  int64_t start_wall_ = 0;  // UNIX seconds at Open() - 2, memcached's process_started
  void* pool_ = nullptr;
  size_t pool_bytes_ = 0;
  std::unique_ptr<StoreShard[]> shards_;
  unsigned shard_count_ = 0;
  unsigned shard_shift_ = 0;
  std::atomic<uint64_t> next_cas_{1};
  std::atomic<uint32_t> oldest_live_{0};  // flush_all: items last used at or before this are gone
  std::atomic<uint64_t> oldest_cas_{0};   // flush_all: and items with a CAS below this
  std::unique_ptr<Env> owned_env_;
  std::unique_ptr<ColdTier> cold_;
  std::atomic<EvictionObserver*> observer_{nullptr};
  std::atomic<bool> cold_flush_pending_{false};  // a flush_all still has to drop the tier
  std::atomic<uint64_t> cold_drop_errors_{0};     // failed drops of the tier (flush_all)
  std::atomic<uint64_t> cold_scan_errors_{0};     // failed reads of ScanCold
};

// ---------------------------------------------------------------------------
// Store

StoreImpl::StoreImpl(const StoreOptions& options)
    : options_(options), clock_(options.clock != nullptr ? options.clock : &RealClock()) {}

StoreImpl::~StoreImpl() {
  cold_.reset();  // writes its buffer out and syncs
  if (pool_ != nullptr) ::munmap(pool_, pool_bytes_);
}

Result<std::unique_ptr<StoreImpl>> StoreImpl::Open(const StoreOptions& options) {
  if (options.block_size < 40 || options.block_size > 4096 || options.block_size % 4 != 0) {
    return InvalidArgument("block_size must be 40..4096 and a multiple of 4");
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
  std::unique_ptr<StoreImpl> store(new StoreImpl(options));
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
    return Status(qcloud::Errc::kResourceExhausted, "mmap of the block pool failed");
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
    s.PublishBuckets();
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

uint32_t StoreImpl::Now() const noexcept {
  const auto d = clock_->MonotonicNow() - start_mono_;
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::seconds>(d).count()) + 2;
}

uint32_t StoreImpl::Uptime() const noexcept { return Now() - 2; }

size_t StoreImpl::MaxValueSize(size_t key_size) const noexcept {
  return options_.item_size_max - kMemcachedItemOverhead - key_size;
}

uint32_t StoreImpl::ToEngineTime(int64_t exptime, uint32_t now) const noexcept {
  if (exptime == 0) return 0;
  if (exptime < 0) return 1;  // already expired
  if (exptime > kRelativeLimit) {
    if (exptime <= start_wall_) return 1;
    return static_cast<uint32_t>(std::min<int64_t>(exptime - start_wall_, UINT32_MAX - 1));
  }
  return static_cast<uint32_t>(std::min<int64_t>(exptime + now, UINT32_MAX - 1));
}

StoreShard& StoreImpl::ShardFor(uint64_t hash) noexcept {
  return shards_[shard_count_ == 1 ? 0 : hash >> shard_shift_];
}

bool StoreImpl::Visible(const StoreShard& s, uint32_t h, uint32_t now) const noexcept {
  const uint32_t exp = s.Exp(h);
  if (exp != 0 && exp <= now) return false;
  const uint32_t oldest = oldest_live_.load(std::memory_order_relaxed);
  if (oldest != 0 && oldest <= now) {
    if (s.ATime(h) <= oldest) return false;
    const uint64_t oldest_cas = oldest_cas_.load(std::memory_order_relaxed);
    if (oldest_cas != 0 && s.Cas(h) < oldest_cas) return false;
  }
  return true;
}

// Buckets MakeRoom looks at for dead items before it takes never-used
// blocks: with about one item per bucket, dead items settle near a quarter
// of the table.
constexpr size_t kReclaimBuckets = 4;

Outcome StoreImpl::MakeRoom(StoreShard& s, uint32_t blocks, uint32_t now) {
  if (blocks > s.capacity) return Outcome::kNoMemory;
  // Before taking never-used blocks, reuse those of items that expired or
  // were flushed, a few buckets per write: a workload that keeps replacing
  // expiring items then holds its memory flat instead of touching the
  // whole pool first (memcached reclaims from its LRU tails the same way).
  // Stores that never saw an expiry time or a flush skip this.
  if (s.free_count < blocks && (s.may_expire || oldest_live_.load(std::memory_order_relaxed) != 0) &&
      s.reclaim_skip-- == 0) {
    const uint64_t reclaimed_before = s.reclaimed;
    for (size_t step = 0; step < kReclaimBuckets && s.free_count < blocks; ++step) {
      const uint32_t bucket = s.reclaim_hand;
      s.reclaim_hand = static_cast<uint32_t>((s.reclaim_hand + 1) & (s.buckets.size() - 1));
      std::byte* link = reinterpret_cast<std::byte*>(&s.buckets[bucket]);
      for (uint32_t h = Load<uint32_t>(link); h != 0; h = Load<uint32_t>(link)) {
        if (!Visible(s, h, now)) {
          if ((s.Ctl(h) & kFetched) == 0) ++s.expired_unfetched;
          ++s.reclaimed;
          s.Remove(link);
          continue;
        }
        link = s.At(h) + kOffHNext;
      }
    }
    // Nothing dead here lately (a store filling after a flush, or items with
    // long TTLs): look less often, so such writes barely pay for it.
    s.reclaim_backoff = s.reclaimed != reclaimed_before ? 0 : std::min<uint32_t>(64, s.reclaim_backoff * 2 + 1);
    s.reclaim_skip = s.reclaim_backoff;
  }
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
            if (EvictionObserver* o = observer_.load(std::memory_order_acquire)) {
              char key[kMaxKeyLength];
              const size_t klen = s.KLen(h);
              s.Transfer<false>(h, s.KeyOffset(h), reinterpret_cast<std::byte*>(key), klen);
              const uint8_t extra = (ctl & kFetched) != 0 ? kViewFetched : 0;
              o->OnEviction(ItemView(&s, h, now, extra, std::string_view(key, klen)));
            }
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

bool StoreImpl::Sink(StoreShard& s, uint32_t h, uint32_t now) {
  char key[kMaxKeyLength];
  const size_t klen = s.KLen(h);
  s.KeyOf(h, key);
  ColdItem item;
  item.value.resize(s.VLen(h));
  s.ValueOf(h, item.value.data());
  item.flags = s.Flags(h);
  item.cas = s.Cas(h);
  const uint32_t exp = s.Exp(h);
  item.exptime = exp == 0 ? 0 : start_wall_ + exp;
  item.atime = start_wall_ + std::min(s.ATime(h), now);
  const std::string_view k(key, klen);
  const Status st = cold_->Put(k, Xxh3_64(ByteView(k)), item);
  if (!st.ok() && st.code() != kv::Errc::kColdTierFull) ++s.cold_errors;
  return st.ok();
}

bool StoreImpl::DropCold(StoreShard& s, std::string_view key, uint64_t hash) {
  if (cold_ == nullptr || !cold_->MayContain(hash)) return true;
  auto found = cold_->Find(key, hash);
  if (!found.ok() ||
      (found->has_value() && !cold_->Erase(key, hash, (*found)->location).ok())) {
    ++s.cold_errors;
    return false;
  }
  return true;
}

StoreImpl::Fault StoreImpl::FaultIn(StoreShard& s, std::string_view key, uint64_t hash,
                                    uint32_t now) {
  if (cold_ == nullptr || !cold_->MayContain(hash)) return Fault::kAbsent;
  auto found = cold_->Find(key, hash);
  if (!found.ok()) {
    ++s.cold_errors;
    return Fault::kIoError;
  }
  if (!found->has_value()) return Fault::kAbsent;
  return Adopt(s, key, hash, **found, now);
}

StoreImpl::Fault StoreImpl::Adopt(StoreShard& s, std::string_view key, uint64_t hash,
                                  const ColdItem& item, uint32_t now) {
  uint32_t exp = 0;
  if (item.exptime != 0) {
    exp = item.exptime <= start_wall_ ? 1
                                      : static_cast<uint32_t>(std::min<int64_t>(
                                            item.exptime - start_wall_, UINT32_MAX - 1));
  }
  const int64_t at = item.atime - start_wall_;
  const uint32_t atime = at <= 0 ? 0 : static_cast<uint32_t>(std::min<int64_t>(at, now));
  if (exp != 0 && exp <= now) {  // expired while cold
    if (!cold_->Erase(key, hash, item.location).ok()) ++s.cold_errors;
    return Fault::kAbsent;
  }
  const ItemPlan plan = s.Plan(key.size(), item.value.size(), exp, item.flags);
  // No room (nothing evictable, Eviction::kNone): the item stays cold and
  // the reader sees a miss, as for any item a full store cannot hold.
  if (MakeRoom(s, plan.blocks, now) != Outcome::kOk) return Fault::kAbsent;
  s.NewItem(key, hash, ByteView(item.value), {atime, exp, item.flags, item.cas, kFetched}, plan);
  --s.total_items;  // not a new item
  s.MaybeExpand();
  if (!cold_->Erase(key, hash, item.location).ok()) ++s.cold_errors;
  ++s.reactivated;
  return Fault::kIn;
}

Outcome StoreImpl::FaultInRecord(std::string_view key, const ColdFetch& fetch, ByteView record) {
  if (cold_ == nullptr || key.empty() || key.size() > kMaxKeyLength) return Outcome::kNotFound;
  const uint64_t hash = Xxh3_64(ByteView(key));
  StoreShard& s = ShardFor(hash);
  const uint32_t now = Now();
  std::lock_guard lock(s.mu);
  if (Load<uint32_t>(s.FindLink(key, hash)) != 0) return Outcome::kOk;
  auto item = cold_->Decode(key, hash, fetch.location, record);
  // Not counted here: the repeated call reads the record again and counts.
  if (!item.ok()) return Outcome::kIoError;
  if (!item->has_value()) return Outcome::kNotFound;
  return Adopt(s, key, hash, **item, now) == Fault::kIn ? Outcome::kOk : Outcome::kNotFound;
}

std::byte* StoreImpl::Lookup(StoreShard& s, std::string_view key, uint64_t hash, uint32_t now,
                             ColdFetch* defer) {
  std::byte* link = s.FindLink(key, hash);
  uint32_t h = Load<uint32_t>(link);
  if (h == 0 && defer != nullptr && cold_ != nullptr) {
    if (auto at = cold_->Locate(hash)) {
      defer->fd = at->fd;
      defer->offset = at->offset;
      defer->length = at->length;
      defer->location = at->location;
      defer->hold = std::move(at->file);
      return PendingLink();
    }
  }
  if (h == 0) {
    switch (FaultIn(s, key, hash, now)) {
      case Fault::kAbsent:
        break;
      case Fault::kIoError:
        return nullptr;
      case Fault::kIn:
        link = s.FindLink(key, hash);
        h = Load<uint32_t>(link);
        break;
    }
  }
  if (h != 0 && !Visible(s, h, now)) {
    if ((s.Ctl(h) & kFetched) == 0) ++s.expired_unfetched;
    ++s.reclaimed;
    s.Remove(link);  // *link now names the next item in the chain, or 0
    link = s.FindLink(key, hash);
  }
  return link;
}

Outcome StoreImpl::Retime(StoreShard& s, std::string_view key, uint64_t hash, uint32_t* head,
                          uint32_t exp, uint32_t now) {
  uint32_t h = *head;
  if (s.SetExp(h, exp)) return Outcome::kOk;
  // The header has no exptime field: rewrite the item with one.
  ItemMeta m = s.Meta(h);
  m.exptime = exp;
  std::string value(s.VLen(h), '\0');
  s.ValueOf(h, value.data());
  const ItemPlan plan = s.Plan(key.size(), value.size(), exp, m.flags);
  if (MakeRoom(s, plan.blocks, now) != Outcome::kOk) return Outcome::kNoMemory;
  // The sweep may have taken the item (it was cold): its copy is `value`.
  std::byte* link = s.FindLink(key, hash);
  if (Load<uint32_t>(link) != 0) {
    s.Remove(link);
  } else if (!DropCold(s, key, hash)) {
    return Outcome::kIoError;  // the sunk copy could not be erased (counted)
  }
  *head = s.NewItem(key, hash, ByteView(value), m, plan);
  --s.total_items;  // not a new item
  s.MaybeExpand();
  return Outcome::kOk;
}

Outcome StoreImpl::ReadImpl(std::string_view key, const ReadOptions& options, VisitFn visit,
                        void* ctx) {
  if (key.empty() || key.size() > kMaxKeyLength) return Outcome::kBadKey;
  const uint64_t hash = Xxh3_64(ByteView(key));
  StoreShard& s = ShardFor(hash);
  const uint32_t now = Now();
  std::lock_guard lock(s.mu);
  const std::byte* found = Lookup(s, key, hash, now, options.defer_cold);
  if (found == nullptr) return Outcome::kIoError;
  if (found == PendingLink()) return Outcome::kColdPending;
  uint32_t h = Load<uint32_t>(found);
  uint8_t extra = 0;
  if (h == 0) {
    if (!options.vivify_exptime || options.inspect) return Outcome::kNotFound;
    // Meta N: create an empty item; this reader wins the recompute token.
    const uint32_t exp = ToEngineTime(*options.vivify_exptime, now);
    const ItemPlan plan = s.Plan(key.size(), 0, exp, 0);
    if (MakeRoom(s, plan.blocks, now) != Outcome::kOk) return Outcome::kNotFound;
    h = s.NewItem(key, hash, ByteView(), {now, exp, 0, NextCas(), kWinSent}, plan);
    s.MaybeExpand();
    extra = kViewWon;
    visit(ctx, ItemView(&s, h, now, extra, key));
    return Outcome::kOk;
  }
  const uint8_t ctl = s.Ctl(h);
  if ((ctl & kFetched) != 0) extra |= kViewFetched;
  uint8_t new_ctl = ctl;
  // Recompute tokens (meta W/Z): a stale item or one close to expiry is
  // handed to exactly one reader.
  const uint32_t exp = s.Exp(h);
  bool wants_token = (ctl & kStale) != 0 && !options.inspect;
  if (options.recache_below && exp != 0 && exp - now < *options.recache_below && !options.inspect) {
    wants_token = true;
  }
  if ((ctl & kWinSent) != 0) {
    extra |= kViewTokenTaken;
  } else if (wants_token) {
    extra |= kViewWon;
    new_ctl |= kWinSent;
  }
  if (options.touch_exptime && !options.inspect) {
    const Outcome o = Retime(s, key, hash, &h, ToEngineTime(*options.touch_exptime, now), now);
    if (o != Outcome::kOk) return o;
  }
  visit(ctx, ItemView(&s, h, now, extra, key));
  if (options.inspect) return Outcome::kOk;
  if (options.update_access) {
    new_ctl |= kRef | kFetched;
    s.SetATime(h, now);
  }
  s.SetCtl(h, static_cast<uint8_t>((new_ctl & ~kFormat) | (s.Ctl(h) & kFormat)));
  return Outcome::kOk;
}

void StoreImpl::ScanImpl(ScanCursor* cursor, size_t buckets, VisitFn visit, void* ctx) {
  const uint32_t now = Now();
  while (!cursor->done) {
    if (cursor->shard >= shard_count_) {
      cursor->done = true;
      return;
    }
    StoreShard& s = shards_[cursor->shard];
    std::lock_guard lock(s.mu);
    size_t visited = 0;
    while (visited < buckets && cursor->bucket < s.buckets.size()) {
      const uint32_t bucket = cursor->bucket++;
      ++visited;
      for (uint32_t h = s.buckets[bucket]; h != 0; h = Load<uint32_t>(s.At(h) + kOffHNext)) {
        if (!Visible(s, h, now)) continue;
        char key[kMaxKeyLength];
        const size_t klen = s.KLen(h);
        s.Transfer<false>(h, s.KeyOffset(h), reinterpret_cast<std::byte*>(key), klen);
        const uint8_t extra = (s.Ctl(h) & kFetched) != 0 ? kViewFetched : 0;
        visit(ctx, ItemView(&s, h, now, extra, std::string_view(key, klen)));
      }
    }
    if (cursor->bucket >= s.buckets.size()) {
      ++cursor->shard;
      cursor->bucket = 0;
    }
    if (visited >= buckets) return;
  }
}

void StoreImpl::ScanCold(ColdScanCursor* cursor, size_t max_bytes,
                         void (*visit)(void*, const ColdItemInfo&), void* ctx) {
  // A flush_all whose drop of the tier is still pending has hidden it all.
  if (cursor->done || cold_ == nullptr || cold_flush_pending_.load(std::memory_order_relaxed)) {
    cursor->done = true;
    return;
  }
  const int64_t now_unix = start_wall_ + Now();
  struct Ctx {
    void (*visit)(void*, const ColdItemInfo&);
    void* ctx;
    int64_t now;
  } c{visit, ctx, now_unix};
  auto fn = [](void* p, std::string_view key, const ColdItem& item, size_t value_size) {
    const Ctx& x = *static_cast<const Ctx*>(p);
    if (item.exptime != 0 && item.exptime <= x.now) return;  // expired while cold
    ColdItemInfo info;
    info.key = key;
    info.flags = item.flags;
    info.cas = item.cas;
    info.ttl = item.exptime == 0 ? -1 : item.exptime - x.now;
    info.idle_seconds = static_cast<uint32_t>(std::clamp<int64_t>(x.now - item.atime, 0, UINT32_MAX));
    info.value_size = value_size;
    x.visit(x.ctx, info);
  };
  auto done = cold_->ScanLive(&cursor->segment, &cursor->offset, max_bytes, fn, &c);
  if (!done.ok()) {
    cold_scan_errors_.fetch_add(1, std::memory_order_relaxed);
    cursor->done = true;
    return;
  }
  cursor->done = *done;
}

bool StoreImpl::Get(std::string_view key, std::string* value, uint32_t* flags, uint64_t* cas) {
  return Read(key, {}, [&](const ItemView& item) {
           if (value != nullptr) {
             value->resize(item.value_size());
             item.CopyValueTo(value->data());
           }
           if (flags != nullptr) *flags = item.flags();
           if (cas != nullptr) *cas = item.cas();
         }) == Outcome::kOk;
}

WriteResult StoreImpl::Write(StoreMode mode, std::string_view key, ByteView value,
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
  std::byte* link = Lookup(s, key, hash, now, options.defer_cold);
  if (link == nullptr) return {Outcome::kIoError};
  if (link == PendingLink()) return {Outcome::kColdPending};
  const uint32_t old = Load<uint32_t>(link);
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
    const uint64_t cur = s.Cas(old);
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
  if (mark_stale) {
    // memcached: a stale write replaces the value but keeps the invalidated
    // item's TTL and its "recompute token sent" mark (so no second winner).
    exp = s.Exp(old);
    ctl = static_cast<uint8_t>(ctl | (s.Ctl(old) & kWinSent));
  }
  std::string joined;  // append/prepend: old and new bytes, before the old item may be evicted
  ByteView data = value;
  if (mode == StoreMode::kAppend || mode == StoreMode::kPrepend) {
    flags = s.Flags(old);
    exp = s.Exp(old);
    ctl = static_cast<uint8_t>(s.Ctl(old) & kBinKey);
    const size_t old_len = s.VLen(old);
    if (old_len + value.size() > MaxValueSize(key.size())) return {Outcome::kNotStored};
    joined.resize(old_len + value.size());
    char* dst = joined.data();
    if (mode == StoreMode::kPrepend) {
      std::memcpy(dst, value.data(), value.size());
      dst += value.size();
    }
    s.ValueOf(old, dst);
    if (mode == StoreMode::kAppend) std::memcpy(dst + old_len, value.data(), value.size());
    data = ByteView(joined);
  }
  const ItemPlan plan = s.Plan(key.size(), data.size(), exp, flags);
  if (MakeRoom(s, plan.blocks, now) != Outcome::kOk) {
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
  } else if (old != 0 && !DropCold(s, key, hash)) {
    return {Outcome::kIoError};  // its only copy is on the failing tier
  }
  const uint64_t cas = NextCas();
  s.NewItem(key, hash, data,
            {now, exp, flags, cas, static_cast<uint8_t>(ctl | (mark_stale ? kStale : 0))}, plan);
  s.MaybeExpand();
  return {Outcome::kOk, cas};
}

Outcome StoreImpl::Delete(std::string_view key, const DeleteOptions& options) {
  if (key.empty() || key.size() > kMaxKeyLength) return Outcome::kBadKey;
  const uint64_t hash = Xxh3_64(ByteView(key));
  StoreShard& s = ShardFor(hash);
  const uint32_t now = Now();
  std::lock_guard lock(s.mu);
  std::byte* link = Lookup(s, key, hash, now, options.defer_cold);
  if (link == nullptr) return Outcome::kIoError;
  if (link == PendingLink()) return Outcome::kColdPending;
  uint32_t h = Load<uint32_t>(link);
  if (h == 0) return Outcome::kNotFound;
  if (options.cas != 0 && s.Cas(h) != options.cas) return Outcome::kExists;
  if (options.invalidate) {
    if (options.exptime) {
      const Outcome o = Retime(s, key, hash, &h, ToEngineTime(*options.exptime, now), now);
      if (o != Outcome::kOk) return o;
    }
    s.SetCas(h, NextCas());
    s.SetCtl(h, static_cast<uint8_t>((s.Ctl(h) | kStale) & ~kWinSent));
    return Outcome::kOk;
  }
  s.Remove(link);
  return Outcome::kOk;
}

Outcome StoreImpl::Touch(std::string_view key, int64_t exptime) {
  ReadOptions o;
  o.touch_exptime = exptime;
  return Read(key, o, [](const ItemView&) {});
}

ArithResult StoreImpl::Arith(std::string_view key, const ArithOptions& options) {
  if (key.empty() || key.size() > kMaxKeyLength) return {Outcome::kBadKey};
  const uint64_t hash = Xxh3_64(ByteView(key));
  StoreShard& s = ShardFor(hash);
  const uint32_t now = Now();
  std::unique_lock lock(s.mu);
  std::byte* link = Lookup(s, key, hash, now, options.defer_cold);
  if (link == nullptr) return {Outcome::kIoError};
  if (link == PendingLink()) return {Outcome::kColdPending};
  uint32_t h = Load<uint32_t>(link);
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
  const size_t vlen = s.VLen(h);
  // memcached: empty values and chunked (large) items are not numbers.
  if (vlen == 0 || vlen > 512 * 1024) return {Outcome::kNonNumeric};
  if (options.cas != 0 && s.Cas(h) != options.cas) return {Outcome::kExists};
  std::string value(vlen, '\0');
  s.ValueOf(h, value.data());
  uint64_t v = 0;
  if (!SafeStrtoull(std::string_view(value.data(), vlen), &v)) return {Outcome::kNonNumeric};
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
    s.Transfer<true>(h, s.KeyOffset(h) + key.size(), reinterpret_cast<std::byte*>(padded.data()),
                     vlen);
    s.SetCas(h, cas);
    s.SetATime(h, now);
    s.SetCtl(h, static_cast<uint8_t>(s.Ctl(h) | kRef));
    return {Outcome::kOk, v, cas};
  }
  const ItemMeta old = s.Meta(h);
  const ItemPlan plan = s.Plan(key.size(), static_cast<size_t>(len), old.exptime, old.flags);
  if (MakeRoom(s, plan.blocks, now) != Outcome::kOk) return {Outcome::kNoMemory};
  link = s.FindLink(key, hash);
  if (Load<uint32_t>(link) != 0) {
    s.Remove(link);
  } else if (!DropCold(s, key, hash)) {  // the old item sank during MakeRoom
    return {Outcome::kIoError};
  }
  s.NewItem(key, hash, ByteView(digits, static_cast<size_t>(len)),
            {now, old.exptime, old.flags, cas, static_cast<uint8_t>(old.ctl & kBinKey)}, plan);
  s.MaybeExpand();
  return {Outcome::kOk, v, cas};
}

void StoreImpl::FlushAll(int64_t delay) {
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
    // A failed drop only leaks disk space: the flushed items are already
    // invisible (their atime is before oldest_live_). It is counted and
    // retried by Maintain(), which reports the error.
    if (deadline - 1 > now || !cold_->DropAll().ok()) {
      if (deadline - 1 <= now) cold_drop_errors_.fetch_add(1, std::memory_order_relaxed);
      cold_flush_pending_.store(true, std::memory_order_relaxed);
    }
  }
}

Status StoreImpl::Maintain(size_t buckets) {
  if (cold_ == nullptr) return Status::Ok();
  const uint32_t now = Now();
  const uint32_t oldest = oldest_live_.load(std::memory_order_relaxed);
  if (cold_flush_pending_.load(std::memory_order_relaxed) && oldest != 0 && oldest <= now) {
    if (Status st = cold_->DropAll(); !st.ok()) {
      cold_drop_errors_.fetch_add(1, std::memory_order_relaxed);
      return st.WithContext("flush_all of the cold tier (retried)");
    }
    cold_flush_pending_.store(false, std::memory_order_relaxed);
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
        const uint32_t atime = s.ATime(h);
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

Status StoreImpl::SinkAll() {
  if (cold_ == nullptr) return NotSupported("no cold tier configured");
  const uint32_t now = Now();
  for (unsigned i = 0; i < shard_count_; ++i) {
    StoreShard& s = shards_[i];
    std::lock_guard lock(s.mu);
    for (uint32_t& slot : s.buckets) {
      std::byte* link = reinterpret_cast<std::byte*>(&slot);
      for (uint32_t h = Load<uint32_t>(link); h != 0; h = Load<uint32_t>(link)) {
        if (Visible(s, h, now) && !Sink(s, h, now)) {
          return Status(kv::Errc::kColdTierFull, "SinkAll: the cold tier has no room for memory");
        }
        s.Remove(link);
      }
    }
  }
  return cold_->Sync();
}

StoreStats StoreImpl::Stats() const {
  StoreStats st;
  st.block_size = options_.block_size;
  st.memory_bytes = options_.memory_bytes;
  for (unsigned i = 0; i < shard_count_; ++i) {
    StoreShard& s = shards_[i];
    std::lock_guard lock(s.mu);
    st.total_blocks += s.capacity;
    st.used_blocks += s.used_blocks;
    st.touched_blocks += s.fresh - 1;
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
  st.cold_errors += cold_drop_errors_.load(std::memory_order_relaxed);
  st.cold_errors += cold_scan_errors_.load(std::memory_order_relaxed);
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

// ---------------------------------------------------------------------------
// Store: the public face, forwarding to the engine.

Store::Store(std::unique_ptr<StoreImpl> impl) noexcept : impl_(std::move(impl)) {}
Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::Open(const StoreOptions& options) {
  QCLOUD_ASSIGN_OR_RETURN(auto impl, StoreImpl::Open(options));
  return std::unique_ptr<Store>(new Store(std::move(impl)));
}

Outcome Store::ReadImpl(std::string_view key, const ReadOptions& options, VisitFn visit,
                        void* ctx) {
  return impl_->ReadImpl(key, options, visit, ctx);
}
void Store::ScanImpl(ScanCursor* cursor, size_t buckets, VisitFn visit, void* ctx) {
  impl_->ScanImpl(cursor, buckets, visit, ctx);
}
bool Store::Get(std::string_view key, std::string* value, uint32_t* flags, uint64_t* cas) {
  return impl_->Get(key, value, flags, cas);
}
WriteResult Store::Write(StoreMode mode, std::string_view key, ByteView value,
                         const WriteOptions& options) {
  return impl_->Write(mode, key, value, options);
}
Outcome Store::Delete(std::string_view key, const DeleteOptions& options) {
  return impl_->Delete(key, options);
}
Outcome Store::Touch(std::string_view key, int64_t exptime) { return impl_->Touch(key, exptime); }
ArithResult Store::Arith(std::string_view key, const ArithOptions& options) {
  return impl_->Arith(key, options);
}
void Store::ScanColdImpl(ColdScanCursor* cursor, size_t max_bytes, ColdVisitFn visit, void* ctx) {
  impl_->ScanCold(cursor, max_bytes, visit, ctx);
}

void Store::Prefetch(std::span<const std::string_view> keys) noexcept {
  constexpr size_t kMax = 32;
  uint64_t hashes[kMax];
  const size_t n = std::min(keys.size(), kMax);
  // First the index slots, all at once (no lock: only an address)...
  for (size_t i = 0; i < n; ++i) {
    if (keys[i].empty() || keys[i].size() > kMaxKeyLength) {
      hashes[i] = 0;
      continue;
    }
    hashes[i] = Xxh3_64(ByteView(keys[i]));
    const StoreShard& s = impl_->ShardFor(hashes[i]);
    const uint32_t* b = s.bucket_hint.load(std::memory_order_relaxed);
    if (b != nullptr) __builtin_prefetch(b + (hashes[i] & s.mask_hint.load(std::memory_order_relaxed)));
  }
  // ...then, with the slots in cache, the first item of each.
  for (size_t i = 0; i < n; ++i) {
    if (hashes[i] == 0) continue;
    StoreShard& s = impl_->ShardFor(hashes[i]);
    std::lock_guard lock(s.mu);  // the bucket array may be replaced by an expansion
    const uint32_t h = s.buckets[hashes[i] & (s.buckets.size() - 1)];
    if (h != 0) __builtin_prefetch(s.At(h));
  }
}

void Store::SetEvictionObserver(EvictionObserver* observer) noexcept {
  impl_->observer_.store(observer, std::memory_order_release);
}
Outcome Store::FaultIn(std::string_view key, const ColdFetch& fetch, ByteView record) {
  return impl_->FaultInRecord(key, fetch, record);
}
void Store::FlushAll(int64_t delay) { impl_->FlushAll(delay); }
Status Store::Maintain(size_t buckets) { return impl_->Maintain(buckets); }
Status Store::SinkAll() { return impl_->SinkAll(); }
StoreStats Store::Stats() const { return impl_->Stats(); }
const StoreOptions& Store::options() const noexcept { return impl_->options_; }
uint32_t Store::Uptime() const noexcept { return impl_->Uptime(); }
size_t Store::MaxValueSize(size_t key_size) const noexcept { return impl_->MaxValueSize(key_size); }

}  // namespace qcloud::kv
