// Block store micro benchmarks.
//
//   BM_SnapshotCreate      CreateSnapshot on a 100 GiB thin volume holding
//                          1 GiB of data (1024 extents), then DeleteSnapshot
//                          (merge back, metadata only) outside the timing.
//   BM_TierPolicyZipf      the SSD tier's policy on zipf(0.99) 4 KiB block
//                          numbers over `ratio` x its size: accesses/s, and
//                          the hit ratio beside an exact LRU of the same size
//                          on the same trace (counters hit_ratio, lru_hit_ratio).
//   BM_TierPolicyScanMix   the same with a one-pass scan of 10x the cache
//                          interleaved (one scan access per hot access).
//
//   build/release/bench/block/block_bench --benchmark_filter=Snapshot

#include <benchmark/benchmark.h>

#include <cmath>
#include <filesystem>
#include <list>
#include <random>
#include <unordered_map>
#include <vector>

#include "block/tier.h"
#include "qcloud/block/store.h"

namespace {

using namespace qcloud;
using qcloud::block::detail::CachePolicy;

constexpr uint64_t kMiB = uint64_t{1} << 20;

void BM_SnapshotCreate(benchmark::State& state) {
  std::string dir = (std::filesystem::temp_directory_path() / "qcloud-bench-snap-XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    state.SkipWithError("mkdtemp");
    return;
  }
  {
    auto store = block::Store::Open({.data_dir = dir}).value();
    (void)store->CreateVolume("big", uint64_t{100} << 30);
    auto v = store->OpenVolume("big").value();
    std::vector<std::byte> mib(kMiB, std::byte{0x5a});
    // 1 GiB spread over the 100 GiB: one extent every 100 MiB... and more.
    for (uint64_t i = 0; i < 1024; ++i) (void)v->Write((i * 100 * kMiB) % (uint64_t{100} << 30), ByteView(mib.data(), mib.size()), false);
    (void)store->Flush();
    int n = 0;
    for (auto _ : state) {
      const std::string name = "s" + std::to_string(n++);
      if (!store->CreateSnapshot("big", name).ok()) state.SkipWithError("snapshot");
      state.PauseTiming();
      (void)v->Write(0, ByteView(mib.data(), 4096), false);  // the volume changes between snapshots
      (void)store->DeleteSnapshot("big", name);
      state.ResumeTiming();
    }
    state.counters["extents"] = static_cast<double>(store->stats().extents_allocated);
  }
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_SnapshotCreate)->Unit(benchmark::kMillisecond)->Iterations(20);

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

std::vector<uint32_t> ZipfTrace(uint32_t n, double s, size_t count, uint64_t seed) {
  std::vector<double> cdf(n);
  double sum = 0;
  for (uint32_t i = 0; i < n; ++i) cdf[i] = sum += 1.0 / std::pow(i + 1.0, s);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, sum);
  std::vector<uint32_t> trace(count);
  for (auto& k : trace) {
    k = static_cast<uint32_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin()) * 2654435761u;
  }
  return trace;
}

bool Access(CachePolicy& p, uint32_t key) {
  static const std::unordered_map<uint32_t, int> kNoPins;
  if (p.Hit(key) != CachePolicy::kNone) return true;
  const uint32_t s = p.Admit(key, kNoPins);
  if (s != CachePolicy::kNone) p.Filled(s);
  return false;
}

void RunTrace(benchmark::State& state, const std::vector<uint32_t>& trace, uint32_t slots, size_t warm) {
  // The oracle's hit ratio, once.
  Lru lru(slots);
  uint64_t lru_hits = 0;
  for (size_t i = 0; i < trace.size(); ++i) lru_hits += lru.Access(trace[i]) && i >= warm;
  double hit_ratio = 0;
  for (auto _ : state) {
    CachePolicy policy(slots);
    uint64_t hits = 0;
    for (size_t i = 0; i < trace.size(); ++i) hits += Access(policy, trace[i]) && i >= warm;
    hit_ratio = double(hits) / double(trace.size() - warm);
    benchmark::DoNotOptimize(hits);
  }
  state.SetItemsProcessed(int64_t(state.iterations()) * int64_t(trace.size()));
  state.counters["hit_ratio"] = hit_ratio;
  state.counters["lru_hit_ratio"] = double(lru_hits) / double(trace.size() - warm);
  state.counters["bytes_per_slot"] = CachePolicy(slots).bytes_per_slot();
}

void BM_TierPolicyZipf(benchmark::State& state) {
  const auto slots = static_cast<uint32_t>(state.range(0));
  const auto ratio = static_cast<uint32_t>(state.range(1));
  const auto trace = ZipfTrace(slots * ratio, 0.99, size_t{slots} * 100, 7);
  RunTrace(state, trace, slots, trace.size() / 4);
}
BENCHMARK(BM_TierPolicyZipf)->Args({16384, 10})->Args({16384, 4})->Args({65536, 10})->Unit(benchmark::kMillisecond);

void BM_TierPolicyScanMix(benchmark::State& state) {
  const auto slots = static_cast<uint32_t>(state.range(0));
  const auto hot = ZipfTrace(slots * 10, 0.99, size_t{slots} * 50, 9);
  std::vector<uint32_t> trace;
  uint32_t scan = 0;
  for (uint32_t k : hot) {
    trace.push_back(k);
    trace.push_back(0x80000000u + (scan++ % (slots * 10)));  // a scan over 10x the cache, repeated
  }
  RunTrace(state, trace, slots, trace.size() / 4);
}
BENCHMARK(BM_TierPolicyScanMix)->Arg(16384)->Unit(benchmark::kMillisecond);

}  // namespace
