// qcloud-host-agent: the monitoring agent of a host. Serves the host's CPU,
// memory, load and network counters at /metrics in the Prometheus text
// format, so Prometheus (or qcloud-monitord) can scrape it, and logs a
// one-line summary of the host every --log-interval seconds.
//
//   qcloud-host-agent --listen 127.0.0.1:9464
//   curl -s http://127.0.0.1:9464/metrics

#include <cstdio>
#include <iostream>
#include <mutex>

#include <boost/asio/steady_timer.hpp>
#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "host_stats.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/log.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/metrics_http.h"
#include "qcloud/core/runtime.h"

namespace po = boost::program_options;
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

// Logs "cpu N% busy, memory X/Y GiB used, load L" every interval.
void ScheduleSummary(boost::asio::steady_timer& timer, std::chrono::seconds interval,
                     std::string proc_root, agent::HostSnapshot last, Logger& log) {
  timer.expires_after(interval);
  timer.async_wait([&timer, interval, proc_root, last = std::move(last),
                    &log](boost::system::error_code ec) {
    if (ec) return;
    auto now = agent::ReadHost(proc_root);
    double total = now.memory_bytes["total"], avail = now.memory_bytes["available"];
    log.Log(LogLevel::kInfo,
            fmt::format("host: cpu {:.1f}% busy over {} cpus, memory {:.2f}/{:.2f} GiB used, "
                        "load {:.2f}",
                        100 * agent::CpuBusyFraction(last, now), now.cpus.size(),
                        (total - avail) / (1 << 30), total / (1 << 30), now.load1));
    ScheduleSummary(timer, interval, proc_root, std::move(now), log);
  });
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen, proc_root;
  unsigned threads;
  unsigned log_interval;
  po::options_description desc("qcloud-host-agent: host metrics for Prometheus and qcloud-monitord");
  desc.add_options()("help,h", "show this help")(
      "listen", po::value(&listen)->default_value("127.0.0.1:9464"), "address:port to serve /metrics on")(
      "threads", po::value(&threads)->default_value(1), "server threads")(
      "log-interval", po::value(&log_interval)->default_value(10),
      "seconds between host summaries on stderr (0 = none)")(
      "proc", po::value(&proc_root)->default_value("/proc"), "procfs root to read");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "qcloud-host-agent: " << e.what() << "\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }

  StderrLogger log;
  auto endpoint = ParseEndpoint(listen);
  if (!endpoint) {
    std::cerr << "qcloud-host-agent: " << endpoint.error().ToString() << "\n";
    return 2;
  }
  auto rt = Runtime::Open({.threads = threads, .logger = &log});
  if (!rt) {
    std::cerr << "qcloud-host-agent: " << rt.error().ToString() << "\n";
    return 2;
  }
  MetricsRegistry registry;
  SnapshotCache cache(proc_root);
  if (auto s = RegisterHostMetrics(registry, cache); !s.ok()) {
    std::cerr << "qcloud-host-agent: " << s.ToString() << "\n";
    return 1;
  }
  auto bound = ServeMetrics(**rt, *endpoint, registry);
  if (!bound) {
    std::cerr << "qcloud-host-agent: " << bound.error().ToString() << "\n";
    return 1;
  }
  boost::asio::steady_timer timer((*rt)->context(0));
  if (log_interval > 0) {
    ScheduleSummary(timer, std::chrono::seconds(log_interval), proc_root, agent::ReadHost(proc_root),
                    log);
    (*rt)->OnStop([&timer] { timer.cancel(); });
  }
  auto snap = agent::ReadHost(proc_root);
  std::cout << fmt::format("qcloud-host-agent: serving http://{}:{}/metrics ({} cpus, {} network "
                           "devices; Ctrl-C stops)",
                           bound->address().to_string(), bound->port(), snap.cpus.size(),
                           snap.net.size())
            << std::endl;
  Status s = (*rt)->Run();
  log.Log(LogLevel::kInfo, fmt::format("stopped: {}", s.ToString()));
  return s.ok() ? 0 : 1;
}
