// The CHX index against a std::unordered_map model, its memory per chunk,
// and the packing of locations.
#include <doctest/doctest.h>

#include <random>
#include <unordered_map>

#include "object/chunk_index.h"

namespace qcloud::object {
namespace {

TEST_CASE("chunk index: random puts, erases and finds agree with a model") {
  ChunkIndex index;
  std::unordered_map<uint64_t, uint64_t> model;
  std::mt19937_64 rng(42);
  int mismatches = 0;
  for (int i = 0; i < 300000; ++i) {
    // Dense sequential-ish ids, as a CHX store makes them, plus strays.
    const uint64_t id = (rng() % 4 == 0) ? (rng() | 1) : (uint64_t{1} << 32 | (rng() % 50000 + 1));
    switch (rng() % 3) {
      case 0: {
        const uint64_t v = rng();
        index.Put(id, v);
        model[id] = v;
        break;
      }
      case 1:
        if (index.Erase(id) != (model.erase(id) == 1)) ++mismatches;
        break;
      default: {
        auto got = index.Find(id);
        auto it = model.find(id);
        if (got.has_value() != (it != model.end()) || (got && *got != it->second)) ++mismatches;
      }
    }
  }
  CHECK(mismatches == 0);
  CHECK(index.size() == model.size());
  for (const auto& [id, v] : model) {
    auto got = index.Find(id);
    REQUIRE(got.has_value());
    CHECK(*got == v);
  }
  CHECK_FALSE(index.Find(0).has_value());
}

TEST_CASE("chunk index: at most 40 bytes of memory per chunk at every size") {
  ChunkIndex index;
  double worst = 0;
  for (uint64_t i = 1; i <= 1000000; ++i) {
    index.Put(uint64_t{7} << 32 | i, i);
    if (i >= 1000) worst = std::max(worst, static_cast<double>(index.memory_bytes()) / index.size());
  }
  MESSAGE("worst bytes per chunk from 1000 to 1000000 chunks: " << worst);
  CHECK(worst <= 40.0);
}

TEST_CASE("chunk location: packs volume, offset and span, rounding the span up") {
  const uint64_t p = ChunkLocation::Pack(65535, ChunkLocation::kMaxOffset, 4097);
  const ChunkLocation l = ChunkLocation::Unpack(p);
  CHECK(l.volume == 65535);
  CHECK(l.offset == ChunkLocation::kMaxOffset);
  CHECK(l.read_span == 8192);
  const ChunkLocation small = ChunkLocation::Unpack(ChunkLocation::Pack(1, 64, 40));
  CHECK(small.volume == 1);
  CHECK(small.offset == 64);
  CHECK(small.read_span == ChunkLocation::kSpanUnit);
}

}  // namespace
}  // namespace qcloud::object
