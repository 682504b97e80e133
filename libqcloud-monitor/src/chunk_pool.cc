#include "monitor/chunk_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define QCLOUD_POOL_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define QCLOUD_POOL_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define QCLOUD_POOL_POISON(p, n) ((void)(p), (void)(n))
#define QCLOUD_POOL_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace qcloud::monitor::detail {

namespace {

constexpr size_t kSlabBytes = size_t{16} << 10;
constexpr size_t kRegionBytes = size_t{4} << 20;  // address space taken at a time
constexpr size_t kHeaderBytes = 64;               // a slab's header, before its objects
constexpr size_t kKeepEmptySlabs = 4;             // resident for reuse; the rest madvised away
constexpr uint32_t kClasses[] = {16,  32,  48,  64,  80,  96,  112, 128,  160,  192,  224,  256,
                                 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792};
constexpr size_t kNumClasses = std::size(kClasses);
constexpr uint32_t kLargest = kClasses[kNumClasses - 1];

// The smallest class of at least n bytes (n <= kLargest).
size_t ClassFor(size_t n) {
  size_t c = 0;
  while (kClasses[c] < n) ++c;
  return c;
}

// At the start of every slab (kSlabBytes-aligned): objects of one class.
struct Slab {
  Slab* prev = nullptr;  // in its class's list of slabs with room
  Slab* next = nullptr;
  Slab* all_prev = nullptr;  // in the list of slabs with live objects
  Slab* all_next = nullptr;
  void* free = nullptr;  // freed objects, linked through their first bytes
  uint32_t bump = kHeaderBytes;  // the next never-used object
  uint32_t live = 0;
  uint32_t cls = 0;
  bool listed = false;    // in the list of slabs with room
  bool draining = false;  // a repack empties it: it takes no new objects
};
static_assert(sizeof(Slab) <= kHeaderBytes);

// Objects of a class in one slab.
uint32_t PerSlab(size_t cls) { return static_cast<uint32_t>((kSlabBytes - kHeaderBytes) / kClasses[cls]); }

class Pool {
 public:
  Pool() { empty_.reserve(kKeepEmptySlabs + 1); }

  void* Allocate(size_t cls) {
    std::lock_guard lock(mu_);
    Slab* s = room_[cls];
    if (s == nullptr) {
      s = NewSlab(cls);  // throws bad_alloc
      Link(s);
    }
    void* p;
    if (s->free != nullptr) {
      p = s->free;
      QCLOUD_POOL_UNPOISON(p, kClasses[cls]);  // under ASan, a freed chunk is unreadable
      std::memcpy(&s->free, p, sizeof(void*));
    } else {
      p = reinterpret_cast<char*>(s) + s->bump;
      s->bump += kClasses[cls];
    }
    if (s->live++ == 0) LinkAll(s);
    allocated_ += kClasses[cls];
    if (s->free == nullptr && s->bump + kClasses[cls] > kSlabBytes) Unlink(s);
    return p;
  }

  void Free(void* p, size_t cls) noexcept {
    Slab* s = SlabOf(p);
    std::lock_guard lock(mu_);
    std::memcpy(p, &s->free, sizeof(void*));
    QCLOUD_POOL_POISON(p, kClasses[cls]);
    s->free = p;
    allocated_ -= kClasses[cls];
    if (--s->live == 0) {
      if (s->listed) Unlink(s);
      UnlinkAll(s);
      s->draining = false;
      empty_.push_back(s);  // reserved: at most kKeepEmptySlabs + 1
      if (empty_.size() > kKeepEmptySlabs) {
        // The oldest empty slab's pages go back to the system; its address
        // range is kept for a later slab (zero-filled when touched again).
        Slab* gone = empty_.front();
        empty_.erase(empty_.begin());
        ::madvise(gone, kSlabBytes, MADV_DONTNEED);
        cold_.push_back(gone);  // reserved for every slab mapped
        resident_ -= kSlabBytes;
      }
    } else if (!s->listed && !s->draining) {
      Link(s);
    }
  }

  // Repacking: at the first BeginRepack(), in each class the emptiest slabs
  // whose objects fit in the other slabs' free slots stop taking new objects
  // until the last EndRepack(); Relocate() moves an object out of one. The
  // other slabs stay as they are: a repack copies only what sits in the
  // slabs it empties.
  void BeginRepack() {
    std::lock_guard lock(mu_);
    if (repacks_ > 0) {
      ++repacks_;
      return;
    }
    std::vector<Slab*> slabs;  // may throw: nothing changed yet
    for (Slab* s = all_; s != nullptr; s = s->all_next) slabs.push_back(s);
    std::sort(slabs.begin(), slabs.end(), [](const Slab* a, const Slab* b) {
      return a->cls != b->cls ? a->cls < b->cls : a->live < b->live;
    });
    for (size_t lo = 0; lo < slabs.size();) {
      size_t hi = lo;
      uint64_t room = 0;  // free slots in the class's slabs kept
      while (hi < slabs.size() && slabs[hi]->cls == slabs[lo]->cls) room += PerSlab(slabs[lo]->cls) - slabs[hi++]->live;
      // Drain the emptiest while what they hold fits in the rest's room.
      uint64_t moved = 0;
      for (size_t i = lo; i < hi; ++i) {
        Slab* x = slabs[i];
        const uint64_t free_here = PerSlab(x->cls) - x->live;
        if (moved + x->live > room - free_here) break;
        moved += x->live;
        room -= free_here;
        x->draining = true;
        if (x->listed) Unlink(x);
      }
      lo = hi;
    }
    ++repacks_;
  }
  void EndRepack() {
    std::lock_guard lock(mu_);
    if (--repacks_ > 0) return;
    for (Slab* s = all_; s != nullptr; s = s->all_next) {
      if (!s->draining) continue;
      s->draining = false;
      if (s->free != nullptr || s->bump + kClasses[s->cls] <= kSlabBytes) Link(s);
    }
  }
  void* Relocate(void* p, size_t cls) {
    Slab* s = SlabOf(p);
    {
      std::lock_guard lock(mu_);
      if (!s->draining) return p;
    }
    void* q = Allocate(cls);
    std::memcpy(q, p, kClasses[cls]);
    Free(p, cls);
    return q;
  }

  static Slab* SlabOf(void* p) {
    return reinterpret_cast<Slab*>(reinterpret_cast<uintptr_t>(p) & ~(kSlabBytes - 1));
  }

  ChunkPoolStats Stats() {
    std::lock_guard lock(mu_);
    return {.resident_bytes = resident_, .allocated_bytes = allocated_, .empty_bytes = empty_.size() * kSlabBytes};
  }

 private:
  Slab* NewSlab(size_t cls) {
    void* at = nullptr;
    if (!empty_.empty()) {
      at = empty_.back();
      empty_.pop_back();
    } else {
      if (!cold_.empty()) {
        at = cold_.back();
        cold_.pop_back();
      } else {
        if (next_ == end_) {
          // Mapped with a slab's slack so that slabs start aligned; no huge
          // pages (a 2 MiB page would keep a whole region resident).
          cold_.reserve(mapped_slabs_ + kRegionBytes / kSlabBytes);  // Free() never allocates
          void* m = ::mmap(nullptr, kRegionBytes + kSlabBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0);
          if (m == MAP_FAILED) throw std::bad_alloc();
          ::madvise(m, kRegionBytes + kSlabBytes, MADV_NOHUGEPAGE);
          const uintptr_t lo = (reinterpret_cast<uintptr_t>(m) + kSlabBytes - 1) & ~(kSlabBytes - 1);
          next_ = reinterpret_cast<char*>(lo);
          end_ = next_ + kRegionBytes;
          mapped_slabs_ += kRegionBytes / kSlabBytes;
        }
        at = next_;
        next_ += kSlabBytes;
      }
      resident_ += kSlabBytes;
    }
    QCLOUD_POOL_UNPOISON(at, kSlabBytes);  // its freed chunks were poisoned
    Slab* s = new (at) Slab();
    s->cls = static_cast<uint32_t>(cls);
    return s;
  }

  void Link(Slab* s) {
    s->prev = nullptr;
    s->next = room_[s->cls];
    if (s->next != nullptr) s->next->prev = s;
    room_[s->cls] = s;
    s->listed = true;
  }

  void Unlink(Slab* s) {
    if (s->prev != nullptr) {
      s->prev->next = s->next;
    } else {
      room_[s->cls] = s->next;
    }
    if (s->next != nullptr) s->next->prev = s->prev;
    s->prev = s->next = nullptr;
    s->listed = false;
  }

  void LinkAll(Slab* s) {
    s->all_prev = nullptr;
    s->all_next = all_;
    if (all_ != nullptr) all_->all_prev = s;
    all_ = s;
  }

  void UnlinkAll(Slab* s) {
    if (s->all_prev != nullptr) {
      s->all_prev->all_next = s->all_next;
    } else {
      all_ = s->all_next;
    }
    if (s->all_next != nullptr) s->all_next->all_prev = s->all_prev;
    s->all_prev = s->all_next = nullptr;
  }

  std::mutex mu_;
  Slab* room_[kNumClasses] = {};
  Slab* all_ = nullptr;       // every slab with a live object
  std::vector<Slab*> empty_;  // no live object, resident
  std::vector<Slab*> cold_;   // no live object, pages given back
  char* next_ = nullptr;      // the current region's unused slabs
  char* end_ = nullptr;
  size_t mapped_slabs_ = 0;
  size_t resident_ = 0;
  size_t allocated_ = 0;
  int repacks_ = 0;
};

// Never destroyed: chunks in static objects may outlive any order of exit.
Pool& ThePool() {
  static Pool* pool = new Pool();
  return *pool;
}

uint8_t* AllocateBytes(size_t cap) {
  if (cap > kLargest) return static_cast<uint8_t*>(::operator new(cap));
  return static_cast<uint8_t*>(ThePool().Allocate(ClassFor(cap)));
}

void FreeBytes(uint8_t* p, size_t cap) noexcept {
  if (p == nullptr) return;
  if (cap > kLargest) {
    ::operator delete(p);
  } else {
    ThePool().Free(p, ClassFor(cap));
  }
}

// The capacity to hold n bytes: a class, or n itself above the largest.
size_t CapacityFor(size_t n) { return n > kLargest ? n : kClasses[ClassFor(n)]; }

}  // namespace

void PoolBytes::Relocate() {
  if (p_ == nullptr || cap_ > kLargest) return;
  p_ = static_cast<uint8_t*>(ThePool().Relocate(p_, ClassFor(cap_)));
}

ChunkPoolRepack::ChunkPoolRepack() { ThePool().BeginRepack(); }
ChunkPoolRepack::~ChunkPoolRepack() { ThePool().EndRepack(); }

bool ChunkPoolWorthRepacking() {
  const ChunkPoolStats st = ThePool().Stats();
  // The empty slabs kept are not waste, and every class has a slab part
  // full: a repack cannot do better than that.
  const size_t used = st.allocated_bytes + st.empty_bytes;
  const size_t waste = st.resident_bytes > used ? st.resident_bytes - used : 0;
  return waste > std::max<size_t>(size_t{512} << 10, st.allocated_bytes / 16);
}

PoolBytes::PoolBytes(std::span<const uint8_t> copy) {
  if (copy.empty()) return;
  cap_ = static_cast<uint32_t>(CapacityFor(copy.size()));
  p_ = AllocateBytes(cap_);
  std::memcpy(p_, copy.data(), copy.size());
  size_ = static_cast<uint32_t>(copy.size());
}

PoolBytes& PoolBytes::operator=(PoolBytes&& o) noexcept {
  if (this != &o) {
    Release();
    p_ = o.p_;
    size_ = o.size_;
    cap_ = o.cap_;
    o.p_ = nullptr;
    o.size_ = o.cap_ = 0;
  }
  return *this;
}

void PoolBytes::Release() noexcept {
  FreeBytes(p_, cap_);
  p_ = nullptr;
  size_ = cap_ = 0;
}

void PoolBytes::Grow() {
  // To the next class (classes are at most a quarter apart), above them up
  // by a quarter: a head chunk grows a few bytes at a time for hours, and
  // 10,000s of them grow at once, so the unused tails must stay small.
  const size_t want = cap_ < kLargest ? size_t{cap_} + 1 : size_t{cap_} + cap_ / 4;
  const size_t cap = CapacityFor(want);
  uint8_t* p = AllocateBytes(cap);
  if (size_ > 0) std::memcpy(p, p_, size_);
  FreeBytes(p_, cap_);
  p_ = p;
  cap_ = static_cast<uint32_t>(cap);
}

void PoolBytes::Assign(std::initializer_list<uint8_t> bytes) {
  if (bytes.size() > cap_) {
    const size_t cap = CapacityFor(bytes.size());
    uint8_t* p = AllocateBytes(cap);  // may throw: nothing changed yet
    Release();
    p_ = p;
    cap_ = static_cast<uint32_t>(cap);
  }
  std::copy(bytes.begin(), bytes.end(), p_);
  size_ = static_cast<uint32_t>(bytes.size());
}

void PoolBytes::ShrinkToFit() {
  if (size_ == 0) {
    Release();
    return;
  }
  const size_t cap = CapacityFor(size_);
  if (cap >= cap_) return;
  uint8_t* p = AllocateBytes(cap);
  std::memcpy(p, p_, size_);
  FreeBytes(p_, cap_);
  p_ = p;
  cap_ = static_cast<uint32_t>(cap);
}

ChunkPoolStats GetChunkPoolStats() { return ThePool().Stats(); }

}  // namespace qcloud::monitor::detail
