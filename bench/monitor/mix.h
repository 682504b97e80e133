#pragma once

// The node-exporter-like mix of monitor_loadgen (bench/monitor/loadgen.cc
// describes it: 100 series an instance, which kinds and how they move),
// shared with monitor_codec_bench so that both measure the same values.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "qcloud/monitor/labels.h"

namespace monitor_mix {

using qcloud::monitor::Labels;

constexpr int kSeriesPerInstance = 100;

[[noreturn]] inline void MixDie(const std::string& msg) {
  std::fprintf(stderr, "monitor mix: %s\n", msg.c_str());
  std::exit(1);
}

// splitmix64: small, fast, and the same everywhere.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t Next() {
    uint64_t z = (s_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  uint64_t Below(uint64_t n) { return Next() % n; }
  double Unit() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }

 private:
  uint64_t s_;
};

enum class Kind {
  kCpuTicks,     // counter of ticks / 100
  kPageGauge,    // integer bytes, moves by whole 4 KiB pages
  kConstant,     // never changes
  kByteCounter,  // integer counter, up to 1 MiB a step
  kOpCounter,    // integer counter, up to 1000 a step
  kRareCounter,  // integer counter, rarely moves
  kLoad,         // gauge with two random decimals
  kIntGauge,     // integer gauge wandering around a level
  kBucket,       // histogram bucket (cumulative; filled per instance)
  kHistSum,      // histogram _sum (float)
  kHistCount,    // histogram _count
  kMsSeconds,    // counter of milliseconds / 1000
  kFloatWalk,    // random-walk float, no short decimal
};

inline const char* KindName(Kind k) {
  switch (k) {
    case Kind::kCpuTicks: return "cpu_ticks";
    case Kind::kPageGauge: return "page_gauge";
    case Kind::kConstant: return "constant";
    case Kind::kByteCounter: return "byte_counter";
    case Kind::kOpCounter: return "op_counter";
    case Kind::kRareCounter: return "rare_counter";
    case Kind::kLoad: return "load";
    case Kind::kIntGauge: return "int_gauge";
    case Kind::kBucket: return "bucket";
    case Kind::kHistSum: return "hist_sum";
    case Kind::kHistCount: return "hist_count";
    case Kind::kMsSeconds: return "ms_seconds";
    case Kind::kFloatWalk: return "float_walk";
  }
  return "?";
}

struct Template {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  Kind kind;
  double start;
  uint64_t scale;  // per-kind step size parameter
};

constexpr double kBuckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
constexpr int kNumBuckets = 12;  // the 11 above and +Inf

inline std::vector<Template> InstanceTemplates() {
  std::vector<Template> t;
  const char* modes[] = {"idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"};
  const uint64_t mode_ticks[] = {5000, 40, 2, 5, 30, 1, 400, 800};  // max ticks a step
  for (int cpu = 0; cpu < 4; ++cpu) {
    for (int m = 0; m < 8; ++m) {
      t.push_back({"node_cpu_seconds_total",
                   {{"cpu", std::to_string(cpu)}, {"mode", modes[m]}},
                   Kind::kCpuTicks,
                   0,
                   mode_ticks[m]});
    }
  }
  const char* mem[] = {"MemTotal", "MemFree",  "MemAvailable", "Buffers",  "Cached",
                       "Active",   "Inactive", "Dirty",        "SwapFree", "Slab"};
  for (int i = 0; i < 10; ++i) {
    t.push_back({std::string("node_memory_") + mem[i] + "_bytes",
                 {},
                 i == 0 ? Kind::kConstant : Kind::kPageGauge,
                 i == 0 ? 16.0 * (1 << 30) : 4096.0 * (100000 + 50000 * i),
                 64});
  }
  for (const char* dev : {"eth0", "eth1"}) {
    t.push_back(
        {"node_network_receive_bytes_total", {{"device", dev}}, Kind::kByteCounter, 0, 1 << 20});
    t.push_back(
        {"node_network_transmit_bytes_total", {{"device", dev}}, Kind::kByteCounter, 0, 1 << 19});
    t.push_back(
        {"node_network_receive_packets_total", {{"device", dev}}, Kind::kOpCounter, 0, 1000});
    t.push_back(
        {"node_network_transmit_packets_total", {{"device", dev}}, Kind::kOpCounter, 0, 800});
    t.push_back({"node_network_receive_errs_total", {{"device", dev}}, Kind::kRareCounter, 0, 1});
  }
  t.push_back({"node_load1", {}, Kind::kLoad, 0, 400});
  t.push_back({"node_load5", {}, Kind::kLoad, 0, 300});
  t.push_back({"node_load15", {}, Kind::kLoad, 0, 200});
  t.push_back({"node_filefd_allocated", {}, Kind::kIntGauge, 2048, 16});
  for (int b = 0; b < kNumBuckets; ++b) {
    std::ostringstream le;
    if (b < kNumBuckets - 1)
      le << kBuckets[b];
    else
      le << "+Inf";
    t.push_back({"http_request_duration_seconds_bucket",
                 {{"handler", "/api"}, {"le", le.str()}},
                 Kind::kBucket,
                 0,
                 static_cast<uint64_t>(b)});
  }
  t.push_back({"http_request_duration_seconds_sum", {{"handler", "/api"}}, Kind::kHistSum, 0, 0});
  t.push_back(
      {"http_request_duration_seconds_count", {{"handler", "/api"}}, Kind::kHistCount, 0, 0});
  for (const char* dev : {"sda", "sdb"}) {
    t.push_back({"node_disk_read_bytes_total", {{"device", dev}}, Kind::kByteCounter, 0, 1 << 18});
    t.push_back(
        {"node_disk_written_bytes_total", {{"device", dev}}, Kind::kByteCounter, 0, 1 << 20});
    t.push_back({"node_disk_reads_completed_total", {{"device", dev}}, Kind::kOpCounter, 0, 100});
    t.push_back({"node_disk_writes_completed_total", {{"device", dev}}, Kind::kOpCounter, 0, 300});
    t.push_back({"node_disk_io_time_seconds_total", {{"device", dev}}, Kind::kMsSeconds, 0, 2000});
  }
  for (int s = 1; s <= 10; ++s) {
    t.push_back({"node_hwmon_temp_celsius",
                 {{"chip", "platform_coretemp_0"}, {"sensor", "temp" + std::to_string(s)}},
                 Kind::kFloatWalk,
                 40.0 + s,
                 0});
  }
  const char* mounts[] = {"/", "/home", "/var", "/boot", "/srv"};
  for (int i = 0; i < 5; ++i) {
    t.push_back({"node_filesystem_size_bytes",
                 {{"mountpoint", mounts[i]}},
                 Kind::kConstant,
                 4096.0 * (1 << 22) * (i + 1),
                 0});
  }
  for (int i = 0; i < 5; ++i) {
    t.push_back({"node_filesystem_avail_bytes",
                 {{"mountpoint", mounts[i]}},
                 Kind::kPageGauge,
                 4096.0 * (1 << 21) * (i + 1),
                 16});
  }
  if (t.size() != kSeriesPerInstance)
    MixDie("internal: instance template has " + std::to_string(t.size()) + " series");
  return t;
}

// One node_exporter: its series' labels, current values and random stream.
class Instance {
 public:
  Instance(int index, int series, uint64_t seed, const std::vector<Template>& templates)
      : templates_(&templates), rng_(seed * 0x100000001b3ULL + static_cast<uint64_t>(index) + 1) {
    char host[32];
    std::snprintf(host, sizeof host, "host-%04d:9100", index);
    for (int j = 0; j < series; ++j) {
      const Template& tp = templates[static_cast<size_t>(j)];
      std::vector<qcloud::monitor::Label> pairs = {
          {"__name__", tp.name}, {"instance", host}, {"job", "node"}};
      for (const auto& [k, v] : tp.labels) pairs.push_back({k, v});
      auto l = Labels::FromPairs(std::move(pairs));
      if (!l.ok()) MixDie("bad labels: " + l.status().ToString());
      labels_.push_back(std::move(l).value());
      values_.push_back(tp.start);
      ticks_.push_back(0);
    }
  }

  const Labels& labels(size_t j) const { return labels_[j]; }
  size_t size() const { return labels_.size(); }
  double value(size_t j) const { return values_[j]; }

  // The values of the next step (the first call gives the first samples).
  void Advance() {
    ObserveRequests();
    for (size_t j = 0; j < values_.size(); ++j) {
      const Template& tp = (*templates_)[j];
      double& v = values_[j];
      switch (tp.kind) {
        case Kind::kCpuTicks:
          ticks_[j] += static_cast<int64_t>(rng_.Below(tp.scale + 1));
          v = static_cast<double>(ticks_[j]) / 100;
          break;
        case Kind::kPageGauge:
          if (rng_.Below(2) == 0)
            v += 4096.0 * (static_cast<double>(rng_.Below(2 * tp.scale + 1)) - tp.scale);
          break;
        case Kind::kConstant:
          break;
        case Kind::kByteCounter:
        case Kind::kOpCounter:
          v += static_cast<double>(rng_.Below(tp.scale + 1));
          break;
        case Kind::kRareCounter:
          if (rng_.Below(50) == 0) v += 1;
          break;
        case Kind::kLoad:
          v = static_cast<double>(rng_.Below(tp.scale)) / 100;
          break;
        case Kind::kIntGauge:
          v = tp.start + static_cast<double>(rng_.Below(2 * tp.scale + 1)) -
              static_cast<double>(tp.scale);
          break;
        case Kind::kBucket:
          v = static_cast<double>(buckets_[tp.scale]);
          break;
        case Kind::kHistSum:
          v = hist_sum_;
          break;
        case Kind::kHistCount:
          v = static_cast<double>(buckets_[kNumBuckets - 1]);
          break;
        case Kind::kMsSeconds:
          ticks_[j] += static_cast<int64_t>(rng_.Below(tp.scale + 1));
          v = static_cast<double>(ticks_[j]) / 1000;
          break;
        case Kind::kFloatWalk:
          v += (static_cast<double>(rng_.Below(2001)) - 1000) / 7919.0;
          break;
      }
    }
  }

 private:
  // Requests served since the last step: the histogram's counts and sum.
  void ObserveRequests() {
    const uint64_t n = rng_.Below(50);
    for (uint64_t i = 0; i < n; ++i) {
      const double d = 0.002 * std::exp(7 * rng_.Unit());  // 2 ms .. 2.2 s, log-uniform
      hist_sum_ += d;
      for (int b = 0; b < kNumBuckets; ++b) {
        if (b == kNumBuckets - 1 || d <= kBuckets[b]) buckets_[b] += 1;
      }
    }
  }

  const std::vector<Template>* templates_;
  Rng rng_;
  std::vector<Labels> labels_;
  std::vector<double> values_;
  std::vector<int64_t> ticks_;
  uint64_t buckets_[kNumBuckets] = {};
  double hist_sum_ = 0;
};

}  // namespace monitor_mix
