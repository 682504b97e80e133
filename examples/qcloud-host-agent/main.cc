// qcloud-host-agent: the monitoring agent of a host. Serves the host's CPU,
// memory, load and network counters at /metrics in the Prometheus text
// format, so Prometheus (or qcloud-monitord) can scrape it, and logs a
// one-line summary of the host every --log-interval (10s; 0 = never).
//
//   qcloud-host-agent --listen 127.0.0.1:9464
//   curl -s http://127.0.0.1:9464/metrics

#include <cstdio>
#include <iostream>
#include <mutex>

#include <fmt/format.h>

#include "cli.h"
#include "host_stats.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/lifecycle.h"
#include "qcloud/core/log.h"
#include "qcloud/core/metrics.h"
#include "qcloud/runtime/metrics_http.h"
#include "qcloud/runtime/runtime.h"

using namespace qcloud;
using Sample = MetricsRegistry::Sample;

namespace {

// One /proc read serves all the families of a scrape.
class SnapshotCache {
 public:
  explicit SnapshotCache(std::string root) : root_(std::move(root)) {}
  agent::HostSnapshot Get() {
    std::lock_guard lock(mu_);
    auto now = RealClock().MonotonicNow();
    if (!have_ || now - taken_ > std::chrono::milliseconds(500)) {
      snap_ = agent::ReadHost(root_);
      taken_ = now;
      have_ = true;
    }
    return snap_;
  }

 private:
  std::string root_;
  std::mutex mu_;
  bool have_ = false;
  MonoTime taken_;
  agent::HostSnapshot snap_;
};

Status RegisterHostMetrics(MetricsRegistry& reg, SnapshotCache& cache) {
  QCLOUD_RETURN_IF_ERROR(reg.AddCollector(
      "qcloud_host_cpu_seconds_total", "Seconds each CPU spent in each mode.",
      MetricType::kCounter, {"cpu", "mode"}, [&cache] {
        std::vector<Sample> out;
        for (const auto& c : cache.Get().cpus) {
          for (const auto& [mode, secs] : c.seconds) out.push_back({{c.cpu, mode}, secs});
        }
        return out;
      }));
  QCLOUD_RETURN_IF_ERROR(reg.AddCollector(
      "qcloud_host_memory_bytes", "Memory by kind, from /proc/meminfo.", MetricType::kGauge,
      {"kind"}, [&cache] {
        std::vector<Sample> out;
        for (const auto& [kind, bytes] : cache.Get().memory_bytes) out.push_back({{kind}, bytes});
        return out;
      }));
  QCLOUD_RETURN_IF_ERROR(reg.AddCollector(
      "qcloud_host_load", "Run-queue load average.", MetricType::kGauge, {"window"}, [&cache] {
        auto s = cache.Get();
        return std::vector<Sample>{{{"1m"}, s.load1}, {{"5m"}, s.load5}, {{"15m"}, s.load15}};
      }));
  // rx/tx pairs of one /proc/net/dev column per device.
  auto per_device = [&cache](uint64_t agent::NetDevice::*rx, uint64_t agent::NetDevice::*tx) {
    return [&cache, rx, tx] {
      std::vector<Sample> out;
      for (const auto& d : cache.Get().net) {
        out.push_back({{d.name, "rx"}, static_cast<double>(d.*rx)});
        out.push_back({{d.name, "tx"}, static_cast<double>(d.*tx)});
      }
      return out;
    };
  };
  QCLOUD_RETURN_IF_ERROR(reg.AddCollector(
      "qcloud_host_network_bytes_total", "Bytes through each network device.",
      MetricType::kCounter, {"device", "direction"},
      per_device(&agent::NetDevice::rx_bytes, &agent::NetDevice::tx_bytes)));
  QCLOUD_RETURN_IF_ERROR(reg.AddCollector(
      "qcloud_host_network_packets_total", "Packets through each network device.",
      MetricType::kCounter, {"device", "direction"},
      per_device(&agent::NetDevice::rx_packets, &agent::NetDevice::tx_packets)));
  return Status::Ok();
}

// Logs "cpu N% busy, memory X/Y GiB used, load L" since the last call.
class Summary {
 public:
  explicit Summary(std::string proc_root)
      : proc_root_(std::move(proc_root)), last_(agent::ReadHost(proc_root_)) {}
  Status Log(Logger& log) {
    auto now = agent::ReadHost(proc_root_);
    double total = now.memory_bytes["total"], avail = now.memory_bytes["available"];
    log.Log(LogLevel::kInfo,
            fmt::format("host: cpu {:.1f}% busy over {} cpus, memory {:.2f}/{:.2f} GiB used, "
                        "load {:.2f}",
                        100 * agent::CpuBusyFraction(last_, now), now.cpus.size(),
                        (total - avail) / (1 << 30), total / (1 << 30), now.load1));
    last_ = std::move(now);
    return Status::Ok();
  }

 private:
  std::string proc_root_;
  agent::HostSnapshot last_;
};

}  // namespace

int main(int argc, char** argv) {
  Endpoint listen{.address = "127.0.0.1", .port = 9464};
  std::string proc_root = "/proc";
  unsigned threads = 1;
  std::chrono::milliseconds log_interval{};
  examples::CommandLine cli("qcloud-host-agent",
                            "host metrics for Prometheus and qcloud-monitord");
  cli.AddEndpoint("listen", &listen, "address to serve /metrics on");
  cli.AddNumber("threads", &threads, "server threads", 64u);
  cli.AddDuration("log-interval", &log_interval, "10s",
                  "time between host summaries on stderr (0 = none)");
  cli.AddString("proc", &proc_root, "procfs root to read");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  Logger& log = cli.logger();

  auto life = Lifecycle::Open({.logger = &log});
  if (!life) return cli.Exit(life.error());
  if (Status s = (*life)->HandleSignals(); !s.ok()) return cli.Exit(s);
  auto rt = Runtime::Open({.threads = threads, .logger = &log});
  if (!rt) return cli.Exit(rt.error());
  MetricsRegistry registry;
  SnapshotCache cache(proc_root);
  if (Status s = RegisterHostMetrics(registry, cache); !s.ok()) return cli.Exit(s);
  auto bound = ServeMetrics(**rt, listen, registry);
  if (!bound) return cli.Exit(bound.error());

  Runtime& r = **rt;
  (*life)->Spawn("http", [&r] { return r.Run(); });
  (*life)->OnStop("http", [&r] {
    r.Stop();
    return Status::Ok();
  });
  Summary summary(proc_root);
  if (log_interval.count() > 0) {
    (*life)->Every("summary", log_interval, [&summary, &log] { return summary.Log(log); });
  }
  auto snap = agent::ReadHost(proc_root);
  std::cout << fmt::format("qcloud-host-agent: serving http://{}/metrics ({} cpus, {} network "
                           "devices; Ctrl-C stops)",
                           bound->ToString(), snap.cpus.size(), snap.net.size())
            << std::endl;
  return cli.Exit((*life)->Run());
}
