// The SSD tier: its policy against an exact LRU of the same size, its
// scan resistance and memory, and a store with a tier against a model.

#include "block/tier.h"

#include <doctest/doctest.h>

#include <cmath>
#include <list>
#include <random>
#include <unordered_map>
#include <vector>

#include "qcloud/block/store.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud::block {
namespace {

using detail::CachePolicy;
using testing::TempDir;
using Bytes = std::vector<std::byte>;
constexpr uint64_t kMiB = uint64_t{1} << 20;

// Exact LRU, the oracle.
class Lru {
 public:
  explicit Lru(size_t cap) : cap_(cap) {}
  bool Access(uint32_t key) {
    auto it = where_.find(key);
    if (it != where_.end()) {
      order_.splice(order_.begin(), order_, it->second);
      return true;
    }
    order_.push_front(key);
    where_[key] = order_.begin();
    if (order_.size() > cap_) {
      where_.erase(order_.back());
      order_.pop_back();
    }
    return false;
  }

 private:
  size_t cap_;
  std::list<uint32_t> order_;
  std::unordered_map<uint32_t, std::list<uint32_t>::iterator> where_;
};

// One access through the policy as the tier does it: a hit, or a miss
// that may admit (filled at once).
bool Access(CachePolicy& p, uint32_t key) {
  static const std::unordered_map<uint32_t, int> kNoPins;
  if (p.Hit(key) != CachePolicy::kNone) return true;
  const uint32_t s = p.Admit(key, kNoPins);
  if (s != CachePolicy::kNone) p.Filled(s);
  return false;
}

// Zipf(s) over [0, n) by inverting the CDF.
class Zipf {
 public:
  Zipf(uint32_t n, double s, uint64_t seed) : rng_(seed) {
    cdf_.resize(n);
    double sum = 0;
    for (uint32_t i = 0; i < n; ++i) cdf_[i] = sum += 1.0 / std::pow(i + 1.0, s);
    for (auto& c : cdf_) c /= sum;
  }
  uint32_t Next() {
    const double u = std::uniform_real_distribution<double>(0, 1)(rng_);
    return static_cast<uint32_t>(std::lower_bound(cdf_.begin(), cdf_.end(), u) - cdf_.begin());
  }

 private:
  std::mt19937_64 rng_;
  std::vector<double> cdf_;
};

TEST_CASE("tier policy on zipf 0.99 over 10 times its size holds up against an LRU oracle") {
  constexpr uint32_t kSlots = 4096;
  CachePolicy policy(kSlots);
  Lru lru(kSlots);
  Zipf zipf(10 * kSlots, 0.99, 42);
  // Keys are spread so neighbouring ranks do not share hash buckets.
  uint64_t policy_hits = 0, lru_hits = 0, n = 0;
  for (int i = 0; i < 400000; ++i) {
    const uint32_t key = zipf.Next() * 2654435761u;
    const bool p = Access(policy, key), l = lru.Access(key);
    if (i >= 100000) {  // after warm-up
      policy_hits += p;
      lru_hits += l;
      ++n;
    }
  }
  const double ph = double(policy_hits) / n, lh = double(lru_hits) / n;
  MESSAGE("zipf 0.99, 10x: policy hit ratio " << ph << ", LRU " << lh);
  CHECK(ph >= lh * 0.95);
  CHECK(policy.bytes_per_slot() <= 16.0);
}

TEST_CASE("tier policy keeps its hot blocks through a scan of 10 times its size") {
  constexpr uint32_t kSlots = 1024;
  CachePolicy policy(kSlots);
  Lru lru(kSlots);
  // A hot set of half the cache, read a few times.
  for (int round = 0; round < 4; ++round) {
    for (uint32_t k = 0; k < kSlots / 2; ++k) {
      Access(policy, k);
      lru.Access(k);
    }
  }
  // One pass over 10x the cache, each block once.
  for (uint32_t k = 1000000; k < 1000000 + 10 * kSlots; ++k) {
    Access(policy, k);
    lru.Access(k);
  }
  uint32_t policy_hot = 0, lru_hot = 0;
  for (uint32_t k = 0; k < kSlots / 2; ++k) {
    policy_hot += policy.Find(k) != CachePolicy::kNone;
    lru_hot += lru.Access(k);
  }
  MESSAGE("after the scan: policy keeps " << policy_hot << " of " << kSlots / 2 << " hot blocks, LRU " << lru_hot);
  CHECK(policy_hot == kSlots / 2);
  CHECK(lru_hot == 0);
}

TEST_CASE("tier policy never evicts a pinned slot and drops on request") {
  CachePolicy policy(16);
  std::unordered_map<uint32_t, int> pins;
  for (uint32_t k = 0; k < 16; ++k) {
    CHECK(policy.Admit(k, pins) == CachePolicy::kNone);  // first sight: remembered only
    const uint32_t s = policy.Admit(k, pins);
    REQUIRE(s != CachePolicy::kNone);
    policy.Filled(s);
  }
  CHECK(policy.free_slots() == 0);
  const uint32_t pinned = policy.Find(3);
  pins[pinned] = 1;
  CHECK(policy.Demote(16, pins) == 15);
  CHECK(policy.Find(3) == pinned);
  policy.Drop(3);
  CHECK(policy.Find(3) == CachePolicy::kNone);
  CHECK(policy.free_slots() == 16);
}

Bytes Pattern(size_t n, uint32_t seed) {
  Bytes b(n);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<std::byte>(rng());
  return b;
}

TEST_CASE("block store with an SSD tier reads and writes as without one") {
  TempDir dir("qcloud-block"), ssd("qcloud-ssd");
  auto opened = Store::Open({.data_dir = dir.path, .ssd_dir = ssd.path, .ssd_bytes = 512 * 1024});
  REQUIRE_OK(opened);
  auto store = std::move(opened).value();
  REQUIRE_OK(store->CreateVolume("t", 4 * kMiB));
  auto v = store->OpenVolume("t").value();
  Bytes model(4 * kMiB);
  std::mt19937_64 rng(5);
  for (int i = 0; i < 2000; ++i) {
    const uint64_t len = 1 + rng() % 20000;
    const uint64_t off = rng() % (model.size() - len);
    if (rng() % 3 == 0) {
      const Bytes d = Pattern(len, uint32_t(i));
      REQUIRE_OK(v->Write(off, ByteView(d.data(), d.size()), false));
      std::copy(d.begin(), d.end(), model.begin() + off);
    } else if (rng() % 10 == 0) {
      REQUIRE_OK(v->Trim(off, len, false));
      std::fill(model.begin() + off, model.begin() + off + len, std::byte{0});
    } else {
      // Reads favour the first 256 KiB, so some blocks are hot.
      const uint64_t roff = rng() % 2 ? off % (256 * 1024) : off;
      Bytes got(len);
      REQUIRE_OK(v->Read(roff, got));
      REQUIRE(std::equal(got.begin(), got.end(), model.begin() + roff));
    }
    if (i % 500 == 0) REQUIRE_OK(store->Maintain());
  }
  const StoreStats st = store->stats();
  MESSAGE("tier: " << st.tier_hits << " hits, " << st.tier_misses << " misses, " << st.tier_admissions
                   << " admissions, " << st.tier_evictions << " evictions, " << st.tier_used << "/"
                   << st.tier_slots << " slots, " << st.tier_bytes_per_slot << " bytes per slot");
  CHECK(st.tier_slots == 128);
  CHECK(st.tier_hits > 0);
  CHECK(st.tier_admissions > 0);
  CHECK(st.tier_bytes_per_slot <= 16.0);
  Bytes all(model.size());
  REQUIRE_OK(v->Read(0, all));
  CHECK(all == model);
}

}  // namespace
}  // namespace qcloud::block
