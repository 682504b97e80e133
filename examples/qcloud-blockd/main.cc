// qcloud-blockd: one CBS node. Serves the volumes of a qcloud::block::Store
// as NBD exports (one per volume, by name), so qemu, nbdinfo, nbdcopy,
// nbdfuse and fio's nbd engine use them unchanged, and its statistics at
// /metrics for Prometheus.
//
//   qcloud-blockd --listen 127.0.0.1:10809 --data-dir /srv/cbs --volume vm1:10G
//   qemu-img info nbd://127.0.0.1:10809/vm1
//
//   qcloud-blockd volume create|list|resize|delete|snapshot|snapshots|
//                 delete-snapshot|rollback|clone|copies ... --data-dir DIR
//
// Prints "qcloud-blockd listening on HOST:PORT" once it accepts
// connections; SIGINT/SIGTERM stop it cleanly (requests in flight are
// answered, then everything is flushed). The volume commands work on a
// stopped or a running server: they open the store themselves, or, when a
// server holds it, send the same command to the server's admin socket
// (<data-dir>/admin.sock, mode 0600; qcloud/block/admin.h); either way they
// print the same text and exit 0, or say why on stderr and exit 1. A volume
// made on a running server is served at once.

#include <algorithm>
#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "cli.h"
#include "serve_metrics.h"
#include "qcloud/block/admin.h"
#include "qcloud/block/nbd_server.h"
#include "qcloud/block/store.h"
#include "qcloud/block/volume_exports.h"
#include "qcloud/core/env.h"
#include "qcloud/core/lifecycle.h"
#include "qcloud/core/metrics.h"
#include "qcloud/core/units.h"

using namespace qcloud;

namespace {

constexpr char kProgram[] = "qcloud-blockd";
// A volume command sent to a running server: its own run time included (a
// snapshot flushes the volume first).
constexpr auto kAdminTimeout = std::chrono::seconds(60);

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
     << "       " << kProgram << " volume copies --data-dir DIR\n"
     << "the volume commands work on a stopped or a running server\n"
     << "run '" << kProgram << " --help' for the server's options\n";
  return code;
}

// The `volume ...` commands: positional words and --data-dir. They run
// on the store itself when it is free, else through the running server's
// admin socket; both answer in the admin protocol's text, printed as is.
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
  auto fail = [](const Status& s) {
    std::cerr << kProgram << ": " << s.ToString() << "\n";
    return 1;
  };
  // The request is the words joined by spaces: a word that holds one
  // would come apart on the way.
  std::string line;
  for (const std::string& w : words) {
    if (w.empty() || w.find(' ') != std::string::npos) {
      return fail(InvalidArgument(fmt::format("'{}': names and sizes hold no spaces", w)));
    }
    line += (line.empty() ? "" : " ") + w;
  }
  auto run = [&]() -> Result<std::string> {
    auto store = block::Store::Open({.data_dir = data_dir});
    if (store) {
      std::string reply = block::RunAdminCommand(**store, line);
      // Closed cleanly, so that the server's next start has nothing to resync.
      if (Status s = (*store)->Close(); !s.ok()) return s;
      return reply;
    }
    if (store.status().code() != Errc::kUnavailable) return store.status();
    // Locked: a server runs on this directory; it runs the command.
    const std::string socket = JoinPath(data_dir, block::kAdminSocketName);
    auto sent = block::SendAdminCommand(socket, line, kAdminTimeout);
    if (!sent) return sent.status().WithContext(store.status().message());
    return sent;
  };
  auto reply = run();
  if (!reply) return fail(reply.status());
  auto parsed = block::ParseAdminReply(*reply);
  if (!parsed) return fail(parsed.status());
  std::cout << parsed->data << std::flush;
  return parsed->status.ok() ? 0 : fail(parsed->status);
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
  std::string ssd_dir;
  uint64_t ssd_size = uint64_t{1} << 30;
  uint64_t merge_bytes = 256 * 1024;
  unsigned threads = 2;
  unsigned io_threads = 0;
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
  cli.AddString("ssd-dir", &f.ssd_dir, "directory of the SSD tier, a cache of hot blocks (default: none)");
  cli.AddBytes("ssd-size", &f.ssd_size, "1G", "size of the SSD tier");
  cli.AddBytes("merge-bytes", &f.merge_bytes, "256K",
               "gather sequential small writes into writes of up to this much (0 = off)");
  cli.AddNumber("threads", &f.threads, "worker threads (one event loop each)", 256u);
  cli.AddNumber("io-threads", &f.io_threads,
                "threads running requests, many at once per connection (0 = in order on the loop)", 256u);
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
                                   .write_quorum = f.write_quorum,
                                   .merge_bytes = static_cast<uint32_t>(std::min<uint64_t>(f.merge_bytes, 1u << 20)),
                                   .ssd_dir = f.ssd_dir,
                                   .ssd_bytes = f.ssd_size});
  if (!store) return cli.Exit(store.error());
  block::Store& st = **store;
  // CBS keeps three copies, each on another machine: this node holds one,
  // and each --replica one more. Fewer serve all the same, with a warning.
  if (const size_t n = st.copies().size(); n < 3) {
    log.Log(LogLevel::kWarning,
            fmt::format("{} cop{} of the data (CBS keeps 3: add --replica nbd://HOST:PORT/NAME for each "
                        "other machine); a lost disk loses {}",
                        n, n == 1 ? "y" : "ies", n == 1 ? "the volumes" : "what its copies missed"));
  }
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
                                                    .io_threads = f.io_threads,
                                                    .drain_timeout = f.drain,
                                                    .backend = *backend,
                                                    .logger = &log,
                                                });
  if (!server) return cli.Exit(server.error());
  block::NbdServer& srv = **server;

  // Volume commands while the store is ours (qcloud-blockd volume ...).
  auto admin = block::AdminServer::Open(st, JoinPath(f.data_dir, block::kAdminSocketName));
  if (!admin) return cli.Exit(admin.error());
  block::AdminServer& adm = **admin;

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
  (*life)->Spawn("admin", [&adm] { return adm.Serve(); });
  (*life)->OnStop("admin", [&adm] {
    adm.Stop();
    return Status::Ok();
  });
  (*life)->OnStop("nbd", [&srv] {
    srv.Stop();
    return Status::Ok();
  });
  // A clean stop leaves nothing to recover: every completed write is durable.
  // Close() flushes and marks the copies closed cleanly (no resync at the next start).
  (*life)->OnDrained("close the store", [&st] { return st.Close(); });
  std::cout << kProgram << " listening on " << srv.address() << " (" << LoopBackendName(srv.backend())
            << ")" << std::endl;
  return cli.Exit((*life)->Run());
}
