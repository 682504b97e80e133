// The chunk pool (monitor/chunk_pool.h): bytes kept exactly through growth,
// moves, shrinking and relocation, in every size class and above the
// largest; a repack gives back the pages that freed chunks left behind; and
// threads that grow, free and relocate at once during repacks. The pool is
// the process's: the figures checked are differences, and no other test
// case of this binary runs at the same time.

#include "monitor/chunk_pool.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <vector>

namespace qcloud::monitor::detail {
namespace {

uint8_t ByteAt(uint32_t seed, size_t i) { return static_cast<uint8_t>((seed * 2654435761u) >> 24 ^ i * 31); }

void Fill(PoolBytes& b, uint32_t seed, size_t n) {
  for (size_t i = b.size(); i < n; ++i) b.push_back(ByteAt(seed, i));
}

bool Holds(const PoolBytes& b, uint32_t seed, size_t n) {
  if (b.size() != n) return false;
  for (size_t i = 0; i < n; ++i) {
    if (b.data()[i] != ByteAt(seed, i)) return false;
  }
  return true;
}

TEST_CASE("chunk pool: bytes survive growth moves shrinking and relocation in every size") {
  for (size_t n : {0u, 1u, 15u, 16u, 17u, 100u, 1792u, 1793u, 5000u}) {
    CAPTURE(n);
    PoolBytes b;
    Fill(b, 7, n);
    CHECK(Holds(b, 7, n));
    CHECK(b.capacity() >= n);
    b.ShrinkToFit();
    CHECK(Holds(b, 7, n));
    PoolBytes moved(std::move(b));
    CHECK(Holds(moved, 7, n));
    CHECK(b.size() == 0);
    {
      // Whether the chunk moves depends on the room other slabs of its
      // class have (the repack tests below check that); its bytes stay.
      ChunkPoolRepack repack;
      moved.Relocate();
    }
    CHECK(Holds(moved, 7, n));
    PoolBytes copy(moved.span());
    CHECK(Holds(copy, 7, n));
    b = std::move(copy);
    CHECK(Holds(b, 7, n));
    b.Assign({1, 2, 3});
    CHECK(b.size() == 3);
    CHECK(b.data()[2] == 3);
  }
}

// 20,000 chunks of 200 bytes, those with keep(i) false freed, then a
// repack: afterwards the pool holds about the chunks kept (and their bytes).
// `holes`: at least this many times the kept bytes resident before it.
void RepackLeavesTheKept(bool (*keep)(size_t), size_t kept, double holes) {
  const ChunkPoolStats before = GetChunkPoolStats();
  std::vector<PoolBytes> chunks(20000);
  for (size_t i = 0; i < chunks.size(); ++i) Fill(chunks[i], static_cast<uint32_t>(i), 200);
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (!keep(i)) chunks[i] = PoolBytes();
  }
  const ChunkPoolStats holey = GetChunkPoolStats();
  const size_t live = holey.allocated_bytes - before.allocated_bytes;
  CHECK(live == kept * chunks[0].capacity());  // the size class 200 bytes grew into
  CHECK(static_cast<double>(holey.resident_bytes - before.resident_bytes) > holes * static_cast<double>(live));
  CHECK(ChunkPoolWorthRepacking());
  {
    ChunkPoolRepack repack;
    for (PoolBytes& b : chunks) b.Relocate();
  }
  const ChunkPoolStats packed = GetChunkPoolStats();
  CHECK(packed.allocated_bytes == holey.allocated_bytes);
  // What stays resident: the chunks, their slabs' ends and the 4 empty
  // slabs kept for reuse.
  CHECK(packed.resident_bytes < before.resident_bytes + live + live / 8 + 5 * 16384);
  for (size_t i = 0; i < chunks.size(); ++i) {
    if (keep(i)) REQUIRE(Holds(chunks[i], static_cast<uint32_t>(i), 200));
  }
  chunks.clear();
  CHECK(GetChunkPoolStats().allocated_bytes == before.allocated_bytes);
}

TEST_CASE("chunk pool: a repack gives back the pages of slabs that freed chunks left mostly empty") {
  // Three of every four go: each slab keeps a quarter of its chunks.
  RepackLeavesTheKept([](size_t i) { return i % 4 == 0; }, 5000, 3);
}

TEST_CASE("chunk pool: a repack also empties slabs more than half full when others have room for their chunks") {
  // Two of every five go: each slab keeps three fifths of its chunks.
  RepackLeavesTheKept([](size_t i) { return i % 5 < 3; }, 12000, 1.5);
}

TEST_CASE("chunk pool: threads grow free and relocate while repacks begin and end") {
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  std::vector<int> bad(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &bad] {
      std::mt19937 rng(static_cast<uint32_t>(t));
      std::vector<PoolBytes> mine(300);
      std::vector<size_t> want(mine.size(), 0);
      for (int round = 0; round < 200; ++round) {
        std::optional<ChunkPoolRepack> repack;
        if (round % 3 == t % 3) repack.emplace();
        for (size_t i = 0; i < mine.size(); ++i) {
          const uint32_t seed = static_cast<uint32_t>(t * 100000 + i);
          switch (rng() % 4) {
            case 0:
              mine[i] = PoolBytes();
              want[i] = 0;
              break;
            case 1:
              want[i] = std::min<size_t>(want[i] + rng() % 64, 3000);
              Fill(mine[i], seed, want[i]);
              break;
            case 2:
              mine[i].Relocate();
              break;
            default:
              mine[i].ShrinkToFit();
          }
          if (!Holds(mine[i], seed, want[i])) ++bad[static_cast<size_t>(t)];
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int b : bad) CHECK(b == 0);
}

}  // namespace
}  // namespace qcloud::monitor::detail
