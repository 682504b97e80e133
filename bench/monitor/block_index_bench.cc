// What loaded blocks cost in memory, by block format version.
//
//   BM_OpenBlocks/<version>  30 daily blocks (3 chunks a series each, as a
//                            merged 24 h block of 60 s samples holds) of the
//                            same 10,000 series, written in format
//                            <version>, then opened by Tsdb::Open as the
//                            server opens its data directory: the live heap
//                            (glibc mallinfo2) per series for the 30
//                            (heap_per_series: one label set and one set
//                            of postings shared by all, plus what each
//                            block adds) and per series and block
//                            (heap_per_series_block), and the time to open
//                            them. Version 3 decodes every chunk
//                            reference into memory; version 4 maps its
//                            fixed-width table (docs/notes/monitor-format.md).
//
//   build/release/bench/monitor/monitor_block_bench
//
// It writes block files itself, so it links the library's objects and
// sees its private headers (monitor/block.h).

#include <benchmark/benchmark.h>

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include "monitor/block.h"
#include "monitor/block_codec.h"
#include "qcloud/core/env.h"
#include "qcloud/monitor/tsdb.h"

namespace {

using namespace qcloud;
using namespace qcloud::monitor;

constexpr int kSeries = 10000, kBlocks = 30;
constexpr int64_t kDay = 24LL * 3600 * 1000;
constexpr int64_t kStart = 1700006400000 / kDay * kDay;

struct TempDir {
  std::string path;
  TempDir() {
    path = (std::filesystem::temp_directory_path() / "qcloud-bench-blocks-XXXXXX").string();
    if (::mkdtemp(path.data()) == nullptr) path.clear();
  }
  ~TempDir() {
    if (!path.empty()) std::filesystem::remove_all(path);
  }
};

void BM_OpenBlocks(benchmark::State& state) {
  const auto version = static_cast<uint32_t>(state.range(0));
  auto env = std::move(OpenPosixEnv()).value();
  std::vector<monitor::detail::SeriesChunks> series;
  for (int i = 0; i < kSeries; ++i) {
    series.push_back({.labels = *Labels::FromPairs({{"__name__", "node_cpu_seconds_total"},
                                                    {"cpu", std::to_string(i % 8)},
                                                    {"instance", "host-" + std::to_string(i / 8) + ":9100"},
                                                    {"job", "node"},
                                                    {"mode", "user"}}),
                      .chunks = {}});
  }
  std::sort(series.begin(), series.end(), [](const auto& a, const auto& b) { return a.labels < b.labels; });
  for (auto _ : state) {
    TempDir dir;
    const std::string blocks = dir.path + "/blocks";
    for (int b = 0; b < kBlocks; ++b) {
      const int64_t mint = kStart + b * kDay;
      for (auto& s : series) {
        s.chunks.clear();
        for (int c = 0; c < 3; ++c) {
          const int64_t t = mint + c * (kDay / 3);
          const std::vector<Sample> samples{{t, 1.0}, {t + 60000, 2.0}};
          s.chunks.push_back({.mint = t, .maxt = t + 60000, .bytes = monitor::detail::EncodeBlockChunk(samples)});
        }
      }
      if (!monitor::detail::WriteBlock(*env, blocks, mint, mint + kDay, series, 6ULL * kSeries, version).ok()) {
        state.SkipWithError("WriteBlock failed");
        return;
      }
    }
    ::malloc_trim(0);
    const size_t before = ::mallinfo2().uordblks;
    const auto t0 = std::chrono::steady_clock::now();
    auto db = Tsdb::Open({.data_dir = dir.path});
    const auto t1 = std::chrono::steady_clock::now();
    if (!db.ok() || (*db)->stats().blocks != kBlocks) {
      state.SkipWithError("Tsdb::Open did not load the blocks");
      return;
    }
    const size_t after = ::mallinfo2().uordblks;
    state.counters["heap_per_series"] = static_cast<double>(after - before) / kSeries;
    state.counters["heap_per_series_block"] = static_cast<double>(after - before) / (kSeries * kBlocks);
    state.counters["open_ms"] = std::chrono::duration<double, std::milli>(t1 - t0).count();
  }
}
BENCHMARK(BM_OpenBlocks)->Arg(3)->Arg(4)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
