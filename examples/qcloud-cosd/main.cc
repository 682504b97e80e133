// qcloud-cosd: one COS node. An S3-compatible server over a qcloud::object
// store (CHX chunk stores plus the LMDB index), so s3cmd, rclone, boto3 and
// awscli work unchanged.
//
//   qcloud-cosd --listen 127.0.0.1:9000 --data-dir /srv/cos
//               --user alice:AKIAALICE:alice-secret [--user ...] [--sync]
//   AWS_ACCESS_KEY_ID=AKIAALICE AWS_SECRET_ACCESS_KEY=alice-secret
//     aws --endpoint-url http://127.0.0.1:9000 s3 mb s3://photos
//
// Prints "qcloud-cosd listening on HOST:PORT" once it accepts connections.
// With no --user, one development user is made up and its keys printed.
// SIGINT/SIGTERM stop it cleanly: responses in flight are sent first. Layout
// of --data-dir: index/ (LMDB) and chx0/, chx1/, ... (one CHX store per
// --disks, each standing for a disk; or name the disks with --disk).

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <iostream>
#include <memory>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "cli.h"
#include "serve_metrics.h"
#include "qcloud/core/lifecycle.h"
#include "qcloud/core/metrics.h"
#include "qcloud/object/object_store.h"
#include "qcloud/object/s3_server.h"
#include "qcloud/runtime/metrics_http.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/runtime/runtime.h"

using namespace qcloud;

namespace {

// How often the stores' background work (compaction) runs.
constexpr auto kMaintainEvery = std::chrono::seconds(10);

struct Flags {
  Endpoint listen{.address = "127.0.0.1", .port = 9000};
  std::string data_dir;
  std::vector<std::string> users;
  std::vector<std::string> disks;
  std::vector<std::string> domains;
  unsigned disk_count = 1;
  std::string region = "us-east-1";
  std::string metrics_listen;
  bool sync = false;
  unsigned threads = 0;
  uint64_t chunk = uint64_t{8} << 20;
  std::chrono::milliseconds drain{};
  std::chrono::milliseconds idle{};
  std::string backend = "auto";
};


Result<object::S3User> ParseUser(std::string_view text) {
  const size_t a = text.find(':');
  const size_t b = a == std::string_view::npos ? a : text.find(':', a + 1);
  if (b == std::string_view::npos || a == 0 || b == a + 1 || b + 1 == text.size()) {
    return InvalidArgument(fmt::format("--user: want NAME:ACCESS_KEY:SECRET_KEY, not '{}'", text));
  }
  return object::S3User{std::string(text.substr(0, a)), std::string(text.substr(a + 1, b - a - 1)),
                        std::string(text.substr(b + 1))};
}

std::string RandomText(size_t n, std::string_view alphabet) {
  std::random_device rd;
  std::string out;
  for (size_t i = 0; i < n; ++i) out.push_back(alphabet[rd() % alphabet.size()]);
  return out;
}


}  // namespace

int main(int argc, char** argv) {
  Flags f;
  examples::CommandLine cli("qcloud-cosd", "an S3-compatible COS object storage node");
  cli.AddEndpoint("listen", &f.listen, "address to serve S3 on (port 0 = any)");
  cli.AddString("data-dir", &f.data_dir, "directory of the index and the chunk stores (required)");
  cli.AddStrings("user", &f.users, "NAME:ACCESS_KEY:SECRET_KEY, once per user (default: a development user)");
  cli.AddStrings("disk", &f.disks, "a chunk store directory, once per disk (default: DATA_DIR/chx0..)");
  cli.AddNumber("disks", &f.disk_count, "chunk stores under --data-dir when no --disk is given", 256u);
  cli.AddStrings("domain", &f.domains, "host name for virtual-host-style buckets (default: localhost)");
  cli.AddString("region", &f.region, "the region buckets live in (GetBucketLocation, SigV4 scope)");
  cli.AddFlag("sync", &f.sync, "acknowledge writes only once on disk (group-committed fsync)");
  cli.AddNumber("threads", &f.threads, "worker threads (one event loop each); 0 = one per core", 256u);
  cli.AddString("loop", &f.backend, "connection loop: auto, io_uring or epoll");
  cli.AddBytes("chunk-size", &f.chunk, "8M", "objects are cut into chunks of this size (4K..64M)");
  cli.AddString("metrics-listen", &f.metrics_listen,
                "address to serve /metrics on, e.g. 127.0.0.1:9100 (default: none)");
  cli.AddDuration("drain", &f.drain, "5s", "at a stop, time for requests in flight to finish");
  cli.AddDuration("idle-timeout", &f.idle, "60s", "close a connection silent this long (0 = never)");
  if (auto exit = cli.Parse(argc, argv)) return *exit;
  Logger& log = cli.logger();
  if (f.data_dir.empty()) return cli.Exit(InvalidArgument("--data-dir is required"));
  if (f.disk_count == 0) return cli.Exit(InvalidArgument("--disks must be at least 1"));

  object::S3ServerOptions options;
  options.region = f.region;
  options.logger = &log;
  if (!f.domains.empty()) options.domains = f.domains;
  for (const std::string& u : f.users) {
    auto user = ParseUser(u);
    if (!user) return cli.Exit(user.error());
    options.users.push_back(std::move(*user));
  }
  if (options.users.empty()) {
    object::S3User dev{"dev", "AKIA" + RandomText(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
                       RandomText(40, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")};
    std::cout << "qcloud-cosd: no --user given; development user '" << dev.name
              << "': AWS_ACCESS_KEY_ID=" << dev.access_key << " AWS_SECRET_ACCESS_KEY=" << dev.secret_key
              << std::endl;
    options.users.push_back(std::move(dev));
  }

  if (::mkdir(f.data_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return cli.Exit(Status::FromErrno(errno, "mkdir " + f.data_dir));
  }
  std::vector<std::string> disks = f.disks;
  if (disks.empty()) {
    for (unsigned i = 0; i < f.disk_count; ++i) disks.push_back(fmt::format("{}/chx{}", f.data_dir, i));
  }
  auto life = Lifecycle::Open({.drain_timeout = f.drain + std::chrono::seconds(5), .logger = &log});
  if (!life) return cli.Exit(life.error());
  if (Status s = (*life)->HandleSignals(); !s.ok()) return cli.Exit(s);

  auto store = object::ObjectStore::Open({
      .disks = disks,
      .index_dir = f.data_dir + "/index",
      .durability = f.sync ? object::Durability::kDurable : object::Durability::kProcessCrash,
      .chunk_bytes = f.chunk,
      .logger = &log,
  });
  if (!store) return cli.Exit(store.error());
  options.listen = f.listen.ToString();
  options.threads = f.threads != 0 ? f.threads : std::max(1u, std::thread::hardware_concurrency());
  options.drain_timeout = f.drain;
  options.idle_timeout = f.idle;
  // --sync: commits wait for fdatasync; many at once share it. Otherwise
  // only large bodies commit off the loop (their last chunk's write).
  options.commit_threads = f.sync ? 32 : 2;
  options.commit_offload_min = f.sync ? 0 : uint64_t{1} << 20;
  auto backend = ParseLoopBackend(f.backend);
  if (!backend) return cli.Exit(backend.error().WithContext("--loop"));
  options.backend = *backend;
  auto server = object::S3Server::Open(**store, options);
  if (!server) return cli.Exit(server.error());
  object::S3Server& srv = **server;

  MetricsRegistry registry;
  if (Status s = srv.ExportMetrics(registry); !s.ok()) return cli.Exit(s);
  auto metrics = examples::StartMetricsHttp("qcloud-cosd", f.metrics_listen, registry, **life, log);
  if (!metrics) return cli.Exit(metrics.error());

  object::ObjectStore* st = store->get();
  for (unsigned i = 0; i < srv.threads(); ++i) {
    (*life)->Spawn(fmt::format("s3 worker {}", i), [&srv, i] { return srv.Serve(i); });
  }
  (*life)->OnStop("s3", [&srv] {
    srv.Stop();
    return Status::Ok();
  });
  (*life)->Every("maintain", kMaintainEvery, [st]() -> Status { return st->Maintain().status(); });
  // The SHA-256 that large PUTs leave out (ObjectStore::HashContents), so
  // that an instant-upload claim later finds it: at the lowest priority (nice
  // 19) rather than SCHED_IDLE, which could starve it while it holds the
  // index's write lock or an old read snapshot.
  Lifecycle* lc = life->get();
  (*life)->Spawn("hasher", [st, lc, &log]() -> Status {
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);
    while (!lc->stopping()) {
      auto hashed = st->HashContents(uint64_t{64} << 20);
      if (!hashed.ok() && log.Enabled(LogLevel::kWarning)) {
        log.Log(LogLevel::kWarning, hashed.status().WithContext("hashing stored content").ToString());
      }
      if (hashed.ok() && *hashed > 0) continue;
      for (int i = 0; i < 10 && !lc->stopping(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return Status::Ok();
  });
  std::cout << "qcloud-cosd listening on " << srv.address().ToString() << " ("
            << LoopBackendName(srv.backend()) << ")" << std::endl;
  return cli.Exit((*life)->Run());
}
