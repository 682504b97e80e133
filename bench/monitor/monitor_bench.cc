// Monitor micro benchmarks.
//
//   BM_Ingest            Append() of scrapes of a node-exporter-like mix
//                        (see Mix) of `series` series, one sample each per
//                        scrape at a 15 s step: samples/s, and the bytes per
//                        sample of the head's chunks and, after Compact(),
//                        of the blocks (counters head_bytes_per_sample,
//                        block_bytes_per_sample).
//   BM_RemoteWriteIngest remote-write bodies (5,000 samples each, one per
//                        series, as Prometheus sends them) of the same mix
//                        over 10,000 series into a Tsdb: /0 decoded by
//                        DecodeRemoteWrite() and appended by labels; /1
//                        through RemoteWriteIngester, the server's path
//                        minus HTTP (known series by reference).
//   BM_RangeQueryDay     query_range of rate(x[5m]) over one day of one
//                        series (15 s samples), step 60 s.
//   BM_SumBy10k          an instant sum by (job) (rate(...[5m])) over
//                        10,000 series.
//   BM_HeapPerSeries     the live heap (glibc mallinfo2, in use) a Tsdb
//                        and its RemoteWriteIngester hold per series after
//                        a day of the same mix over 10,000 series at 60 s,
//                        cut and merged as the server does (Compact() every
//                        data hour): counter heap_per_series; the RSS
//                        figure of compare.sh adds the allocator's caches.
//   BM_OutageConvergence 1,000 correlated alerts of one outage (HostDown
//                        on 1,000 hosts in 4 clusters, group_by cluster)
//                        through the Dispatcher on a ManualClock: the
//                        notifications sent by group_wait (counter
//                        notifications: want 4, one per group) and the time
//                        to converge them.
//
//   build/release/bench/monitor/monitor_bench --benchmark_filter=Ingest

#include <benchmark/benchmark.h>

#include <malloc.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "qcloud/monitor/notify.h"
#include "qcloud/monitor/promql.h"
#include "qcloud/monitor/remote_write.h"
#include "qcloud/monitor/tsdb.h"

namespace {

using namespace qcloud;
using namespace qcloud::monitor;

constexpr int64_t kStep = 15000;
constexpr int64_t kStart = 1700000000000;

struct TempDir {
  std::string path;
  TempDir() {
    path = (std::filesystem::temp_directory_path() / "qcloud-bench-tsdb-XXXXXX").string();
    if (::mkdtemp(path.data()) == nullptr) path.clear();
  }
  ~TempDir() {
    if (!path.empty()) std::filesystem::remove_all(path);
  }
};

// A deterministic node-exporter-like mix: per 10 series, 4 cpu-seconds
// counters (ticks / 100, rising by random amounts), 3 histogram-bucket
// counters (rising by 0..19), 2 gauges with two random decimals (load), 1
// random-walk float that is no short decimal (a computed ratio).
class Mix {
 public:
  explicit Mix(int series)
      : values_(static_cast<size_t>(series), 0.0), ticks_(static_cast<size_t>(series), 0), rng_(42) {
    for (int i = 0; i < series; ++i) {
      const int kind = i % 10;
      const char* name = kind < 4   ? "node_cpu_seconds_total"
                         : kind < 7 ? "http_request_duration_seconds_bucket"
                         : kind < 9 ? "node_load1"
                                    : "node_temperature_celsius";
      labels_.push_back(*Labels::FromPairs({{"__name__", name},
                                            {"instance", "host-" + std::to_string(i / 100) + ":9100"},
                                            {"job", "node" + std::to_string(i % 7)},
                                            {"id", std::to_string(i)}}));
      values_[static_cast<size_t>(i)] = kind < 7 ? 1000.0 * (i % 13) : 1.5;
    }
  }
  // One scrape at time t: every series' next sample.
  std::vector<SeriesSamples> Scrape(int64_t t) {
    std::vector<SeriesSamples> batch;
    batch.reserve(labels_.size());
    for (size_t i = 0; i < labels_.size(); ++i) {
      const int kind = static_cast<int>(i % 10);
      double& v = values_[i];
      if (kind < 4) {
        // cpu seconds: USER_HZ ticks / 100, as node_exporter reads them (an
        // exact two-decimal value each time, not a sum of fractions).
        ticks_[i] += rng_() % 1500;
        v = static_cast<double>(ticks_[i]) / 100;
      } else if (kind < 7) {
        v += static_cast<double>(rng_() % 20);
      } else if (kind < 9) {
        v = std::round(static_cast<double>(rng_() % 400)) / 100;
      } else {
        v += (static_cast<double>(rng_() % 2001) - 1000) / 7919.0;
      }
      batch.push_back({labels_[i], {{t, v}}});
    }
    return batch;
  }

 private:
  std::vector<Labels> labels_;
  std::vector<double> values_;
  std::vector<uint64_t> ticks_;
  std::mt19937_64 rng_;
};

void BM_Ingest(benchmark::State& state) {
  const int series = static_cast<int>(state.range(0));
  TempDir dir;
  auto db = std::move(Tsdb::Open({.data_dir = dir.path, .block_duration = std::chrono::hours(2)})).value();
  Mix mix(series);
  int64_t t = kStart;
  // Scrapes made ahead of the timing: the benchmark measures the store.
  std::vector<std::vector<SeriesSamples>> scrapes;
  for (int i = 0; i < 64; ++i) scrapes.push_back(mix.Scrape(t + i * kStep));
  size_t k = 0;
  uint64_t samples = 0;
  for (auto _ : state) {
    std::vector<SeriesSamples>& batch = scrapes[k % scrapes.size()];
    for (SeriesSamples& s : batch) s.samples[0].t = t;
    t += kStep;
    ++k;
    auto r = db->Append(batch);
    if (!r.ok()) {
      state.SkipWithError(r.status().ToString().c_str());
      return;
    }
    samples += r->appended;
  }
  state.SetItemsProcessed(static_cast<int64_t>(samples));
  const TsdbStats st = db->stats();
  state.counters["head_bytes_per_sample"] = static_cast<double>(st.chunk_bytes) / static_cast<double>(st.samples);
  // Three more hours at the end, then a cut: bytes per sample in blocks.
  for (int i = 0; i < 3 * 240; ++i, t += kStep) {
    auto batch = mix.Scrape(t);
    (void)db->Append(batch);
  }
  (void)db->Compact();
  const TsdbStats after = db->stats();
  if (after.block_samples > 0) {
    state.counters["block_bytes_per_sample"] =
        static_cast<double>(after.block_bytes) / static_cast<double>(after.block_samples);
  }
}
BENCHMARK(BM_Ingest)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);

void BM_RemoteWriteIngest(benchmark::State& state) {
  constexpr int kSeries = 10000, kSteps = 20, kPerBody = 5000;
  Mix mix(kSeries);
  std::vector<std::string> bodies;
  for (int step = 0; step < kSteps; ++step) {
    auto batch = mix.Scrape(kStart + step * kStep);
    for (size_t at = 0; at < batch.size(); at += kPerBody) {
      const size_t n = std::min<size_t>(kPerBody, batch.size() - at);
      bodies.push_back(EncodeRemoteWrite(std::span(batch).subspan(at, n)));
    }
  }
  int64_t samples = 0;
  for (auto _ : state) {
    state.PauseTiming();
    TempDir dir;
    auto db = std::move(Tsdb::Open({.data_dir = dir.path})).value();
    state.ResumeTiming();
    if (state.range(0) == 0) {
      for (const std::string& body : bodies) {
        auto decoded = DecodeRemoteWrite(ByteView(body));
        auto r = db->Append(*decoded);
        benchmark::DoNotOptimize(r);
      }
    } else {
      RemoteWriteIngester in(*db);
      for (const std::string& body : bodies) {
        auto r = in.Ingest(ByteView(body));
        benchmark::DoNotOptimize(r);
      }
    }
    samples += int64_t{kSeries} * kSteps;
    state.PauseTiming();
    db.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(samples);
}
BENCHMARK(BM_RemoteWriteIngest)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

void BM_RangeQueryDay(benchmark::State& state) {
  TempDir dir;
  auto db = std::move(Tsdb::Open({.data_dir = dir.path})).value();
  Mix mix(1);
  for (int64_t t = kStart; t < kStart + 86400000; t += kStep) {
    auto batch = mix.Scrape(t);
    (void)db->Append(batch);
  }
  QueryEngine engine(*db);
  auto expr = *Expr::Parse("rate(node_cpu_seconds_total[5m])");
  for (auto _ : state) {
    auto r = engine.Range(expr, kStart + 300000, kStart + 86400000, 60000);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_RangeQueryDay)->Unit(benchmark::kMillisecond);

void BM_SumBy10k(benchmark::State& state) {
  TempDir dir;
  auto db = std::move(Tsdb::Open({.data_dir = dir.path})).value();
  Mix mix(10000);
  for (int i = 0; i < 40; ++i) {
    auto batch = mix.Scrape(kStart + i * kStep);
    (void)db->Append(batch);
  }
  QueryEngine engine(*db);
  auto expr = *Expr::Parse("sum by (job) (rate({__name__=~\"node_.*|http_.*\"}[5m]))");
  for (auto _ : state) {
    auto r = engine.Instant(expr, kStart + 39 * kStep);
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK(BM_SumBy10k)->Unit(benchmark::kMillisecond);

void BM_HeapPerSeries(benchmark::State& state) {
  constexpr int kSeries = 10000, kPerBody = 5000;
  constexpr int64_t kMinute = 60000;
  constexpr int kMinutes = 26 * 60;
  for (auto _ : state) {
    TempDir dir;
    Mix mix(kSeries);
    ::malloc_trim(0);
    const size_t before = ::mallinfo2().uordblks;
    size_t after = 0;
    {
      auto db = std::move(Tsdb::Open({.data_dir = dir.path})).value();
      RemoteWriteIngester in(*db);
      for (int m = 0; m < kMinutes; ++m) {
        auto batch = mix.Scrape(kStart + m * kMinute);
        for (size_t at = 0; at < batch.size(); at += kPerBody) {
          const size_t n = std::min<size_t>(kPerBody, batch.size() - at);
          std::string body = EncodeRemoteWrite(std::span(batch).subspan(at, n));
          auto r = in.Ingest(ByteView(body));
          benchmark::DoNotOptimize(r);
        }
        if (m % 60 == 59) (void)db->Compact();
      }
      (void)db->Compact();
      ::malloc_trim(0);
      after = ::mallinfo2().uordblks;
      const TsdbStats st = db->stats();
      state.counters["blocks"] = static_cast<double>(st.blocks);
      state.counters["head_series"] = static_cast<double>(st.series);
    }
    state.counters["heap_per_series"] = static_cast<double>(after - before) / kSeries;
  }
}
BENCHMARK(BM_HeapPerSeries)->Iterations(1)->Unit(benchmark::kMillisecond);

void BM_OutageConvergence(benchmark::State& state) {
  std::vector<Alert> outage;
  for (int i = 0; i < 1000; ++i) {
    Alert a;
    a.rule = "HostDown";
    a.labels = *Labels::FromPairs({{"alertname", "HostDown"},
                                   {"cluster", "c" + std::to_string(i % 4)},
                                   {"instance", "h" + std::to_string(i)}});
    a.state = AlertState::kFiring;
    outage.push_back(std::move(a));
  }
  uint64_t sent = 0, members = 0, late = 0;
  for (auto _ : state) {
    ManualClock clock;
    const MonoTime start = clock.MonotonicNow();
    for (Alert& a : outage) a.fired_at = clock.WallNow();
    Dispatcher d({.group_by = {"alertname", "cluster"}, .group_wait = std::chrono::seconds(30)}, clock,
                 [&](const Notification& n) {
                   ++sent;
                   members += n.alerts.size();
                   if (clock.MonotonicNow() - start > std::chrono::seconds(30)) ++late;
                   return Status::Ok();
                 });
    d.Receive(outage);
    for (int s = 0; s < 30; ++s) {
      clock.Advance(std::chrono::seconds(1));
      d.Tick();
    }
  }
  state.counters["notifications"] = benchmark::Counter(static_cast<double>(sent), benchmark::Counter::kAvgIterations);
  state.counters["alerts_per_notification"] = static_cast<double>(members) / static_cast<double>(std::max<uint64_t>(sent, 1));
  state.counters["after_group_wait"] = static_cast<double>(late);
}
BENCHMARK(BM_OutageConvergence)->Unit(benchmark::kMicrosecond);

}  // namespace
