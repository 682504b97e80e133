// qcloud-blockd: one CBS node. Serves the volumes of a qcloud::block::Store
// as NBD exports (one per volume, by name), so qemu, nbdinfo, nbdcopy,
// nbdfuse and fio's nbd engine use them unchanged, and its statistics at
// /metrics for Prometheus.
//
//   qcloud-blockd --listen 127.0.0.1:10809 --data-dir /srv/cbs --volume vm1:10G
//   qemu-img info nbd://127.0.0.1:10809/vm1
//
//   qcloud-blockd volume create|list|resize|delete|snapshot|snapshots|
//                 delete-snapshot|rollback|clone ... --data-dir DIR
//
// Prints "qcloud-blockd listening on HOST:PORT" once it accepts
// connections; SIGINT/SIGTERM stop it cleanly (requests in flight are
// answered, then everything is flushed). The volume commands work on the
// store directly and so need the server stopped (the data directory is
// locked while it runs; they say so).

#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.h"
#include "serve_metrics.h"
#include "qcloud/block/nbd_server.h"
#include "qcloud/block/store.h"
#include "qcloud/block/volume_exports.h"
#include "qcloud/core/lifecycle.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/units.h"

using namespace qcloud;

namespace {

constexpr char kProgram[] = "qcloud-blockd";

std::string Human(uint64_t bytes) {
  static const char* units[] = {"B", "K", "M", "G", "T", "P"};
  int u = 0;
  uint64_t v = bytes;
  while (u < 5 && v >= 1024 && v % 1024 == 0) {
    v /= 1024;
    ++u;
  }
  return fmt::format("{}{}", v, units[u]);
}

// "NAME:SIZE" from --volume.
Result<std::pair<std::string, uint64_t>> ParseVolumeFlag(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    return InvalidArgument(fmt::format("--volume {}: want NAME:SIZE, e.g. vm1:10G", text));
  }
  auto size = ParseByteSize(text.substr(colon + 1));
  if (!size) return size.status().WithContext(fmt::format("--volume {}", text));
  return std::pair{std::string(text.substr(0, colon)), *size};
}

int Usage(std::ostream& os, int code) {
  os << "usage: " << kProgram << " [--listen HOST:PORT] --data-dir DIR [--volume NAME:SIZE]... (serve)\n"
     << "       " << kProgram << " volume create NAME SIZE --data-dir DIR\n"
     << "       " << kProgram << " volume list --data-dir DIR\n"
     << "       " << kProgram << " volume resize NAME SIZE --data-dir DIR\n"
     << "       " << kProgram << " volume delete NAME --data-dir DIR\n"
     << "       " << kProgram << " volume snapshot NAME SNAPSHOT --data-dir DIR\n"
     << "       " << kProgram << " volume snapshots [NAME] --data-dir DIR\n"
     << "       " << kProgram << " volume delete-snapshot NAME SNAPSHOT --data-dir DIR\n"
     << "       " << kProgram << " volume rollback NAME SNAPSHOT --data-dir DIR\n"
     << "       " << kProgram << " volume clone NAME SNAPSHOT NEW-NAME --data-dir DIR\n"
     << "run '" << kProgram << " --help' for the server's options\n";
  return code;
}

// The `volume ...` commands: positional words and --data-dir.
int VolumeCommand(int argc, char** argv) {
  std::vector<std::string> words;
  std::string data_dir;
  for (int i = 2; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--data-dir" && i + 1 < argc) {
      data_dir = argv[++i];
    } else if (a.starts_with("--data-dir=")) {
      data_dir = std::string(a.substr(11));
    } else if (a == "--help" || a == "-h") {
      return Usage(std::cout, 0);
    } else if (a.starts_with("--")) {
      std::cerr << kProgram << ": unknown option " << a << "\n";
      return Usage(std::cerr, 2);
    } else {
      words.emplace_back(a);
    }
  }
  if (words.empty() || data_dir.empty()) return Usage(std::cerr, 2);
  const std::string& cmd = words[0];
  auto want = [&](size_t n) { return words.size() == n + 1; };
  auto fail = [](const Status& s) {
    std::cerr << kProgram << ": " << s.ToString() << "\n";
    return 1;
  };
  auto opened = block::Store::Open({.data_dir = data_dir});
  if (!opened) return fail(opened.status());
  block::Store& store = **opened;
  Status st;
  if (cmd == "create" && want(2)) {
    auto size = ParseByteSize(words[2]);
    if (!size) return fail(size.status());
    st = store.CreateVolume(words[1], *size);
  } else if (cmd == "list" && want(0)) {
    for (const auto& v : store.ListVolumes()) {
      std::cout << fmt::format("{}\t{}\tallocated {}{}\n", v.name, Human(v.size), Human(v.allocated_bytes),
                               v.origin.empty() ? "" : "\torigin " + v.origin);
    }
  } else if (cmd == "resize" && want(2)) {
    auto size = ParseByteSize(words[2]);
    if (!size) return fail(size.status());
    st = store.ResizeVolume(words[1], *size);
  } else if (cmd == "delete" && want(1)) {
    st = store.DeleteVolume(words[1]);
  } else if (cmd == "snapshot" && want(2)) {
    st = store.CreateSnapshot(words[1], words[2]);
  } else if (cmd == "snapshots" && (want(0) || want(1))) {
    for (const auto& s : store.ListSnapshots(words.size() > 1 ? words[1] : "")) {
      std::cout << fmt::format("{}@{}\t{}\n", s.volume, s.name, Human(s.size));
    }
  } else if (cmd == "delete-snapshot" && want(2)) {
    st = store.DeleteSnapshot(words[1], words[2]);
  } else if (cmd == "rollback" && want(2)) {
    st = store.Rollback(words[1], words[2]);
  } else if (cmd == "clone" && want(3)) {
    st = store.Clone(words[1], words[2], words[3]);
  } else {
    return Usage(std::cerr, 2);
  }
  return st.ok() ? 0 : fail(st);
}

struct Flags {
  Endpoint listen{.address = "127.0.0.1", .port = 10809};
  std::string metrics_listen;
  std::string data_dir;
  std::vector<std::string> volumes;
  std::string default_export;
  uint64_t capacity = 0;
  std::vector<std::string> replicas;
  unsigned write_quorum = 0;
  unsigned threads = 2;
  std::chrono::milliseconds drain{};
  std::string backend = "auto";
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "volume") == 0) return VolumeCommand(argc, argv);
  Flags f;
  examples::CommandLine cli(kProgram, "a CBS block node: volumes over NBD");
  cli.AddEndpoint("listen", &f.listen, "address to serve NBD on (port 0 = any)");
  cli.AddString("metrics-listen", &f.metrics_listen,
                "address to serve /metrics on, e.g. 127.0.0.1:9310 (default: none)");
  cli.AddString("data-dir", &f.data_dir, "the store's directory (required)");
  cli.AddStrings("volume", &f.volumes, "NAME:SIZE: create the volume if absent (repeatable)");
  cli.AddString("default-export", &f.default_export, "volume served to clients that ask for \"\"");
  cli.AddBytes("capacity", &f.capacity, "0", "physical space for all volumes: 100G (0 = the disk's)");
  cli.AddStrings("replica", &f.replicas,
                 "another copy of the data: a directory (dir:PATH) or an NBD export (nbd://HOST:PORT/NAME); "
                 "repeatable, CBS keeps 3 copies");
  cli.AddNumber("write-quorum", &f.write_quorum, "copies a write needs (0 = a majority)", 5u);
  cli.AddNumber("threads", &f.threads, "worker threads (one event loop each)", 256u);
  cli.AddDuration("drain", &f.drain, "1s", "at a stop, time to answer requests already read");
  cli.AddString("loop", &f.backend, "connection loop: auto, io_uring or epoll");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  Logger& log = cli.logger();
  if (f.data_dir.empty()) return cli.Exit(InvalidArgument("--data-dir is required"));
  auto backend = ParseLoopBackend(f.backend);
  if (!backend) return cli.Exit(backend.error().WithContext("--loop"));

  auto life = Lifecycle::Open({.drain_timeout = f.drain + std::chrono::seconds(5), .logger = &log});
  if (!life) return cli.Exit(life.error());
  if (Status s = (*life)->HandleSignals(); !s.ok()) return cli.Exit(s);

  auto store = block::Store::Open({.data_dir = f.data_dir,
                                   .capacity_bytes = f.capacity,
                                   .replicas = f.replicas,
                                   .write_quorum = f.write_quorum});
  if (!store) return cli.Exit(store.error());
  block::Store& st = **store;
  for (const std::string& spec : f.volumes) {
    auto vol = ParseVolumeFlag(spec);
    if (!vol) return cli.Exit(vol.status());
    Status s = st.CreateVolume(vol->first, vol->second);
    if (!s.ok() && s.code() != Errc::kAlreadyExists) return cli.Exit(s);
  }
  block::VolumeExports exports(st, f.default_export);
  auto server = block::NbdServer::Open(exports, {
                                                    .listen = f.listen.ToString(),
                                                    .threads = f.threads,
                                                    .drain_timeout = f.drain,
                                                    .backend = *backend,
                                                    .logger = &log,
                                                });
  if (!server) return cli.Exit(server.error());
  block::NbdServer& srv = **server;

  MetricsRegistry registry;
  if (Status s = srv.RegisterMetrics(registry); !s.ok()) return cli.Exit(s);
  if (Status s = block::RegisterMetrics(st, registry); !s.ok()) return cli.Exit(s);
  auto metrics = examples::StartMetricsHttp(kProgram, f.metrics_listen, registry, **life, log);
  if (!metrics) return cli.Exit(metrics.error());

  for (unsigned i = 0; i < srv.threads(); ++i) {
    (*life)->Spawn(fmt::format("worker {}", i), [&srv, i] { return srv.Serve(i); });
  }
  // Failed copies are reconnected and rebuilt in the background; a copy
  // still unreachable is said once per change of its error, not every second.
  std::string last_error;
  (*life)->Every("replicas", std::chrono::seconds(1), [&st, &log, &last_error] {
    Status s = st.Maintain();
    if (!s.ok() && s.ToString() != last_error) log.Log(LogLevel::kWarning, "replicas: " + s.ToString());
    last_error = s.ok() ? "" : s.ToString();
    return Status::Ok();
  });
  (*life)->OnStop("nbd", [&srv] {
    srv.Stop();
    return Status::Ok();
  });
  // A clean stop leaves nothing to recover: every completed write is durable.
  (*life)->OnDrained("flush the store", [&st] { return st.Flush(); });
  std::cout << kProgram << " listening on " << srv.address() << " (" << LoopBackendName(srv.backend())
            << ")" << std::endl;
  return cli.Exit((*life)->Run());
}
