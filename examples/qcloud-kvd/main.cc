// qcloud-kvd: one CMEM cache node. Serves a qcloud::kv::Store over the
// memcached text, meta and binary protocols, so memcache clients work
// unchanged.
//
//   qcloud-kvd --listen 127.0.0.1:11311 --memory 1024 --threads 2
//   printf 'set k 0 0 1\r\nv\r\nget k\r\n' | nc -q1 127.0.0.1 11311
//
// Prints "qcloud-kvd listening on HOST:PORT" once it accepts connections;
// SIGINT/SIGTERM stop it cleanly (replies in flight are sent first). With
// --ssd-dir, cold items live on SSD, and a clean stop saves memory there
// too, so a restart on the same directory serves every item it had.

#include <pthread.h>
#include <signal.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "qcloud/core/log.h"
#include "qcloud/kv/server.h"
#include "qcloud/kv/store.h"

namespace po = boost::program_options;
using namespace qcloud;

namespace {

// "7d", "12h", "30m", "45s", "250ms" or plain seconds.
bool ParseDuration(const std::string& text, std::chrono::milliseconds* out) {
  size_t pos = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(text, &pos);
  } catch (...) {
    return false;
  }
  const std::string unit = text.substr(pos);
  using namespace std::chrono;
  if (unit.empty() || unit == "s") {
    *out = seconds(n);
  } else if (unit == "ms") {
    *out = milliseconds(n);
  } else if (unit == "m") {
    *out = minutes(n);
  } else if (unit == "h") {
    *out = hours(n);
  } else if (unit == "d") {
    *out = hours(24 * n);
  } else {
    return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  std::string listen = "127.0.0.1:11311";
  size_t memory_mb = 64;
  unsigned threads = 1;
  size_t block_size = 100;
  size_t item_size_max = 1 << 20;
  size_t max_connections = 4096;
  std::string ssd_dir;
  std::string cold_after = "7d";
  size_t ssd_mb = 16384;
  bool compress_cold = false;
  bool no_evict = false;

  po::options_description desc("qcloud-kvd options");
  desc.add_options()("help,h", "this help")(
      "listen", po::value(&listen)->default_value(listen), "host:port to serve (port 0 = any)")(
      "memory", po::value(&memory_mb)->default_value(memory_mb), "item memory in MiB")(
      "threads", po::value(&threads)->default_value(threads), "worker threads (one io_uring each)")(
      "block-size", po::value(&block_size)->default_value(block_size), "bytes per memory block")(
      "item-size-max", po::value(&item_size_max)->default_value(item_size_max),
      "largest item in bytes (memcached -I)")(
      "max-connections", po::value(&max_connections)->default_value(max_connections),
      "connection limit (memcached -c)")("no-evict", po::bool_switch(&no_evict),
                                         "refuse writes when full (memcached -M)")(
      "ssd-dir", po::value(&ssd_dir), "directory of the cold (SSD) tier")(
      "cold-after", po::value(&cold_after)->default_value(cold_after),
      "sink items not read for this long (with --ssd-dir): 30s, 12h, 7d")(
      "ssd-mb", po::value(&ssd_mb)->default_value(ssd_mb), "cold tier capacity in MiB")(
      "compress-cold", po::bool_switch(&compress_cold), "zstd values on the cold tier");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "qcloud-kvd: " << e.what() << "\n" << desc;
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc;
    return 0;
  }
  std::chrono::milliseconds cold{};
  if (!ParseDuration(cold_after, &cold)) {
    std::cerr << "qcloud-kvd: bad --cold-after " << cold_after << "\n";
    return 2;
  }

  // Signals are taken by a dedicated thread (sigwait), so every other
  // thread starts with them blocked.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  StderrLogger logger;
  kv::StoreOptions so;
  so.memory_bytes = memory_mb << 20;
  so.block_size = block_size;
  so.item_size_max = item_size_max;
  so.eviction = no_evict ? kv::Eviction::kNone : kv::Eviction::kClock;
  so.ssd_dir = ssd_dir;
  so.ssd_bytes = ssd_mb << 20;
  so.cold_after = std::chrono::duration_cast<std::chrono::seconds>(cold);
  so.compress_cold = compress_cold;
  auto store = kv::Store::Open(so);
  if (!store.ok()) {
    std::cerr << "qcloud-kvd: " << store.status().ToString() << "\n";
    return 1;
  }
  kv::ServerOptions sv;
  sv.listen = listen;
  sv.threads = threads;
  sv.max_connections = max_connections;
  sv.logger = &logger;
  auto server = kv::Server::Open(**store, sv);
  if (!server.ok()) {
    std::cerr << "qcloud-kvd: " << server.status().ToString() << "\n";
    return 1;
  }
  std::vector<std::thread> workers;
  std::vector<Status> results(threads);
  for (unsigned i = 0; i < threads; ++i) {
    workers.emplace_back([&, i] {
      results[i] = (*server)->Serve(i);
      (*server)->Stop();  // one worker failing stops the node
    });
  }
  std::cout << "qcloud-kvd listening on " << (*server)->address() << std::endl;

  // The store's background work (idle items sink, cold buffer written out,
  // segments cleaned) runs here, once a second, until the stop.
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread maintenance([&] {
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, std::chrono::seconds(1), [&] { return stop; })) {
      lock.unlock();
      if (Status s = (*store)->Maintain(); !s.ok()) {
        logger.Log(LogLevel::kWarning, "maintenance: " + s.ToString());
      }
      lock.lock();
    }
  });
  std::thread signals([&] {
    int sig = 0;
    sigwait(&sigs, &sig);
    (*server)->Stop();
  });
  for (auto& t : workers) t.join();
  {
    std::lock_guard lock(mu);
    stop = true;
  }
  cv.notify_all();
  maintenance.join();
  if (!ssd_dir.empty()) {
    // A clean stop loses nothing: what is in memory goes to the cold tier.
    if (Status s = (*store)->SinkAll(); !s.ok()) {
      std::cerr << "qcloud-kvd: saving memory to " << ssd_dir << ": " << s.ToString() << "\n";
    }
  }
  // Wake the signal thread if the stop came from a failing worker.
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  int rc = 0;
  for (const Status& s : results) {
    if (!s.ok()) {
      std::cerr << "qcloud-kvd: " << s.ToString() << "\n";
      rc = 1;
    }
  }
  return rc;
}
