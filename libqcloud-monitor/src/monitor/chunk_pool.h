#pragma once

// Memory for chunks' bytes (every ChunkAppender, and the head's closed
// chunks): size classes about a quarter apart, carved from 16 KiB slabs of
// the pool's own mappings, not from malloc's heap.
//
// Why. A head chunk grows a few bytes at a time for hours, and every series
// grows its chunk in step with the others; its old buffer is freed at each
// step, and a cut into a block frees a block's worth of chunks at once. In
// malloc's heap those holes fall between the series' long-lived objects
// (labels, index entries) and stay resident: measured with malloc_info after
// bench/monitor/compare.sh's load, 8.5 MB free against 11 MB in use. Here a
// slab only ever holds chunks of one size class, the series that share a
// class got there at about the same time and leave it together, and a slab
// whose chunks are all freed gives its pages back (madvise) at once.
//
// Thread safety: every function, from any thread (one lock; a chunk grows
// about once per 15 samples appended).

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

namespace qcloud::monitor::detail {

// A growable, movable run of bytes in the pool: a chunk's encoding, in 16
// bytes (a std::vector's 24, and the heap's header besides). At most
// 2^32 - 1 bytes (a chunk holds at most 0x7fff samples: under 1 MiB).
class PoolBytes {
 public:
  PoolBytes() noexcept = default;
  explicit PoolBytes(std::span<const uint8_t> copy);
  PoolBytes(PoolBytes&& o) noexcept : p_(o.p_), size_(o.size_), cap_(o.cap_) {
    o.p_ = nullptr;
    o.size_ = o.cap_ = 0;
  }
  PoolBytes& operator=(PoolBytes&& o) noexcept;
  PoolBytes(const PoolBytes&) = delete;
  PoolBytes& operator=(const PoolBytes&) = delete;
  ~PoolBytes() { Release(); }

  const uint8_t* data() const noexcept { return p_; }
  uint8_t* data() noexcept { return p_; }
  size_t size() const noexcept { return size_; }
  size_t capacity() const noexcept { return cap_; }
  bool empty() const noexcept { return size_ == 0; }
  std::span<const uint8_t> span() const noexcept { return {p_, size_}; }
  uint8_t& back() noexcept { return p_[size_ - 1]; }
  uint8_t& operator[](size_t i) noexcept { return p_[i]; }

  // One more byte: the storage moves to the next size class when full.
  void push_back(uint8_t b) {
    if (size_ == cap_) Grow();
    p_[size_++] = b;
  }
  // Drops the bytes from n on (n <= size(); the storage stays).
  void Truncate(size_t n) noexcept { size_ = static_cast<uint32_t>(n); }
  // Replaces the contents (the storage is kept when it is large enough).
  void Assign(std::initializer_list<uint8_t> bytes);
  // Moves into the smallest class that holds size() (a closed chunk).
  void ShrinkToFit();
  // Moves out of a slab that a repack is emptying (ChunkPoolRepack).
  void Relocate();

 private:
  void Grow();
  void Release() noexcept;
  uint8_t* p_ = nullptr;
  uint32_t size_ = 0;
  uint32_t cap_ = 0;
};

// The pool's pages in use (slabs holding at least one chunk, and the few
// empty ones kept for reuse), and the bytes handed out (by class size).
struct ChunkPoolStats {
  size_t resident_bytes = 0;   // slabs with pages
  size_t allocated_bytes = 0;  // the slots of live objects
  size_t empty_bytes = 0;      // empty slabs kept resident for reuse
};
ChunkPoolStats GetChunkPoolStats();

// Defragmenting, as Redis's active defrag does. Chunks leave their size
// class at different times (a counter's chunk grows slower than a float's),
// so a slab's freed slots are not all taken again, and slabs stay resident
// for a few live chunks. While a ChunkPoolRepack lives, the slabs at most
// half full when it began take no new chunks, and Relocate() moves a chunk
// out of them (a no-op for the others); once every chunk moved, those slabs
// are empty and their pages go back. Nested and concurrent repacks are
// allowed (the first one chooses the slabs). The pool is the process's:
// with several stores, one store's repack moves only its own chunks, and
// the others' keep their sparse slabs until they repack too.
class ChunkPoolRepack {
 public:
  ChunkPoolRepack();
  ~ChunkPoolRepack();
  ChunkPoolRepack(const ChunkPoolRepack&) = delete;
  ChunkPoolRepack& operator=(const ChunkPoolRepack&) = delete;
};
// True when the resident pages exceed what the chunks take by more than a
// sixteenth (and 512 KiB, about what the slabs part full of every class
// take), not counting the empty slabs kept: what a repack could give back.
bool ChunkPoolWorthRepacking();

}  // namespace qcloud::monitor::detail
