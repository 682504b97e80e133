// libqcloud-object micro benchmarks on the real disk (/var/tmp): 1 KiB
// chunk appends and reads on a CHX store, index lookups, and whole 1 KiB
// object PUT/GET through the ObjectStore (index + CHX + MD5/SHA-256).
//   build/release/bench/object/object_bench --benchmark_min_time=0.5
#include <benchmark/benchmark.h>

#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "qcloud/object/chx_store.h"
#include "qcloud/object/index_store.h"
#include "qcloud/object/object_store.h"

namespace {

using namespace qcloud;
using namespace qcloud::object;

std::string Dir(const char* name) {
  std::string d = std::string("/var/tmp/qcloud-object-bench-") + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

void BM_ChxAppend1K(benchmark::State& state) {
  auto chx = ChxStore::Open({.dir = Dir("append")}).value();
  const std::string data(1024, 'x');
  for (auto _ : state) benchmark::DoNotOptimize(chx->Append(ByteView(data)).value());
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * 1024);
}
BENCHMARK(BM_ChxAppend1K);

void BM_ChxRead1K(benchmark::State& state) {
  auto chx = ChxStore::Open({.dir = Dir("read")}).value();
  const std::string data(1024, 'x');
  std::vector<ChunkId> ids;
  for (int i = 0; i < 100000; ++i) ids.push_back(chx->Append(ByteView(data)).value());
  std::mt19937 rng(1);
  for (auto _ : state) benchmark::DoNotOptimize(chx->Read(ids[rng() % ids.size()]).value());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ChxRead1K);

void BM_IndexGet(benchmark::State& state) {
  auto index = IndexStore::Open({.dir = Dir("index")}).value();
  (void)index->CreateBucket("bench", "bucket");
  std::vector<std::pair<std::string, ObjectMeta>> batch;
  for (int i = 0; i < 100000; ++i) {
    ObjectMeta m{.size = 1024, .etag = std::string(32, 'e'), .chunks = {{.store = 0, .chunk = ChunkId{uint64_t(i + 1)}, .length = 1024}}};
    batch.emplace_back("photos/" + std::to_string(i), m);
  }
  (void)index->PutObjects("bucket", batch);
  std::mt19937 rng(1);
  for (auto _ : state) {
    benchmark::DoNotOptimize(index->GetObject("bucket", "photos/" + std::to_string(rng() % 100000)).value());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_IndexGet);

void BM_ObjectPut1K(benchmark::State& state) {
  const std::string root = Dir("put");
  auto store = ObjectStore::Open({.disks = {root + "/d0"}, .index_dir = root + "/index"}).value();
  (void)store->index().CreateBucket("bench", "bucket");
  std::string data(1024, 'x');
  uint64_t n = 0;
  for (auto _ : state) {
    std::memcpy(data.data(), &n, sizeof n);  // distinct content: no de-duplication
    benchmark::DoNotOptimize(store->Put("bucket", "k" + std::to_string(n++ % 100000), ByteView(data)).value());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ObjectPut1K);

void BM_ObjectGet1K(benchmark::State& state) {
  const std::string root = Dir("get");
  auto store = ObjectStore::Open({.disks = {root + "/d0"}, .index_dir = root + "/index"}).value();
  (void)store->index().CreateBucket("bench", "bucket");
  std::string data(1024, 'x');
  for (uint64_t i = 0; i < 20000; ++i) {
    std::memcpy(data.data(), &i, sizeof i);
    (void)store->Put("bucket", "k" + std::to_string(i), ByteView(data)).value();
  }
  std::mt19937 rng(1);
  for (auto _ : state) benchmark::DoNotOptimize(store->Get("bucket", "k" + std::to_string(rng() % 20000)).value());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ObjectGet1K);

}  // namespace
