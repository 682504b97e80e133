#include "flat_map.h"

#include <doctest/doctest.h>

#include <random>
#include <unordered_map>

using qcloud::net::internal::FlatMap;

TEST_CASE("net flat map agrees with unordered_map under random operations") {
  std::mt19937_64 rng(2014);
  FlatMap<uint64_t> m;
  std::unordered_map<uint64_t, uint64_t> ref;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 20000; ++i) {
      uint64_t key = rng() % 512;  // small key space: many collisions and erasures
      switch (rng() % 3) {
        case 0:
          m[key] = i;
          ref[key] = i;
          break;
        case 1:
          CHECK(m.erase(key) == (ref.erase(key) == 1));
          break;
        default: {
          const uint64_t* v = m.find(key);
          auto it = ref.find(key);
          REQUIRE((v != nullptr) == (it != ref.end()));
          if (v) CHECK(*v == it->second);
        }
      }
    }
    CHECK(m.size() == ref.size());
    size_t seen = 0;
    m.ForEach([&](uint64_t k, uint64_t v) {
      ++seen;
      CHECK(ref.at(k) == v);
    });
    CHECK(seen == ref.size());
    m.clear();
    ref.clear();
    CHECK(m.empty());
    CHECK(m.find(1) == nullptr);
  }
}
