// qcloud-kvd: one CMEM cache node. Serves a qcloud::kv::Store over the
// memcached text, meta and binary protocols, so memcache clients work
// unchanged, and its statistics at /metrics for Prometheus.
//
//   qcloud-kvd --listen 127.0.0.1:11311 --memory 1G --metrics-listen 127.0.0.1:9311
//   printf 'set k 0 0 1\r\nv\r\nget k\r\n' | nc -q1 127.0.0.1 11311
//
// Prints "qcloud-kvd listening on HOST:PORT" once it accepts connections;
// SIGINT/SIGTERM stop it cleanly (replies in flight are sent first). With
// --ssd-dir, cold items live on SSD, and a clean stop saves memory there
// too, so a restart on the same directory serves every item it had.

#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "cli.h"
#include "serve_metrics.h"
#include "qcloud/core/lifecycle.h"
#include "qcloud/core/metrics.h"
#include "qcloud/kv/server.h"
#include "qcloud/kv/store.h"
#include "qcloud/runtime/metrics_http.h"
#include "qcloud/runtime/runtime.h"

using namespace qcloud;

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
// How often the store's background work runs (idle items sink, the cold
// buffer is written out, segments are cleaned).
constexpr auto kMaintainEvery = std::chrono::seconds(1);

struct Flags {
  Endpoint listen{.address = "127.0.0.1", .port = 11311};
  std::string metrics_listen;  // "" = no /metrics
  uint64_t memory = 64 * kMiB;
  unsigned threads = 1;
  uint64_t block_size = 100;
  uint64_t item_size_max = 1 * kMiB;
  uint64_t max_connections = 4096;
  std::string ssd_dir;
  std::chrono::milliseconds cold_after{};
  uint64_t ssd = 16384 * kMiB;
  bool compress_cold = false;
  bool no_evict = false;
  std::chrono::milliseconds drain{};
  std::string backend = "auto";
};



}  // namespace

int main(int argc, char** argv) {
  Flags f;
  examples::CommandLine cli("qcloud-kvd", "a memcached-compatible CMEM cache node");
  cli.AddEndpoint("listen", &f.listen, "address to serve memcached on (port 0 = any)");
  cli.AddString("metrics-listen", &f.metrics_listen,
                "address to serve /metrics on, e.g. 127.0.0.1:9311 (default: none)");
  cli.AddBytes("memory", &f.memory, "64", "item memory: 1G, 512M; a plain number is MiB", kMiB);
  cli.AddNumber("threads", &f.threads, "worker threads (one event loop each)", 256u);
  cli.AddBytes("block-size", &f.block_size, "100", "bytes per memory block");
  cli.AddBytes("item-size-max", &f.item_size_max, "1M", "largest item (memcached -I)");
  cli.AddNumber("max-connections", &f.max_connections, "connection limit (memcached -c)");
  cli.AddFlag("no-evict", &f.no_evict, "refuse writes when full (memcached -M)");
  cli.AddString("ssd-dir", &f.ssd_dir, "directory of the cold (SSD) tier (default: none)");
  cli.AddDuration("cold-after", &f.cold_after, "7d",
                  "sink items not read for this long (with --ssd-dir): 30s, 12h, 7d");
  cli.AddBytes("ssd-mb", &f.ssd, "16384", "cold tier capacity: 16G; a plain number is MiB",
               kMiB);
  cli.AddFlag("compress-cold", &f.compress_cold, "zstd values on the cold tier");
  cli.AddDuration("drain", &f.drain, "1s", "at a stop, time to send replies already made");
  cli.AddString("loop", &f.backend, "connection loop: auto, io_uring or epoll");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  Logger& log = cli.logger();
  auto backend = ParseLoopBackend(f.backend);
  if (!backend) return cli.Exit(backend.error().WithContext("--loop"));

  auto life = Lifecycle::Open({.drain_timeout = f.drain + std::chrono::seconds(5), .logger = &log});
  if (!life) return cli.Exit(life.error());
  if (Status s = (*life)->HandleSignals(); !s.ok()) return cli.Exit(s);

  auto store = kv::Store::Open({
      .memory_bytes = f.memory,
      .block_size = f.block_size,
      .item_size_max = f.item_size_max,
      .eviction = f.no_evict ? kv::Eviction::kNone : kv::Eviction::kClock,
      .ssd_dir = f.ssd_dir,
      .ssd_bytes = f.ssd,
      .cold_after = std::chrono::duration_cast<std::chrono::seconds>(f.cold_after),
      .compress_cold = f.compress_cold,
  });
  if (!store) return cli.Exit(store.error());
  auto server = kv::Server::Open(**store, {
                                              .listen = f.listen.ToString(),
                                              .threads = f.threads,
                                              .max_connections = f.max_connections,
                                              .drain_timeout = f.drain,
                                              .backend = *backend,
                                              .logger = &log,
                                          });
  if (!server) return cli.Exit(server.error());
  kv::Server& srv = **server;
  kv::Store& st = **store;

  MetricsRegistry registry;
  if (Status s = srv.ExportMetrics(registry); !s.ok()) return cli.Exit(s);
  auto metrics = examples::StartMetricsHttp("qcloud-kvd", f.metrics_listen, registry, **life, log);
  if (!metrics) return cli.Exit(metrics.error());

  for (unsigned i = 0; i < srv.threads(); ++i) {
    (*life)->Spawn(fmt::format("worker {}", i), [&srv, i] { return srv.Serve(i); });
  }
  (*life)->Every("maintain", kMaintainEvery, [&st] { return st.Maintain(); });
  (*life)->OnStop("memcached", [&srv] {
    srv.Stop();
    return Status::Ok();
  });
  if (!f.ssd_dir.empty()) {
    // A clean stop loses nothing: what is in memory goes to the cold tier.
    (*life)->OnDrained("save memory to the cold tier", [&st] { return st.SinkAll(); });
  }
  std::cout << "qcloud-kvd listening on " << srv.address() << " (" << LoopBackendName(srv.backend())
            << ")" << std::endl;
  return cli.Exit((*life)->Run());
}
