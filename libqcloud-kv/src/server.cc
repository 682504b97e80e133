// The memcached front end: core's connection loop (TcpServer) with a
// memcached Session per connection. Everything about sockets, io_uring,
// epoll, limits and the drain lives in core; this file wires the protocol's
// shared state and statistics to it.

#include "qcloud/kv/server.h"

#include <algorithm>
#include <mutex>

#include <fmt/format.h>

#include "kv/session.h"
#include "kv/stats.h"
#include "qcloud/kv/store.h"

namespace qcloud::kv {

namespace {

// memcached's reply to a connection over its limit (-c).
constexpr std::string_view kTooManyConnections = "ERROR Too many open connections\r\n";
// Smallest accepted buffer limits.
constexpr size_t kMinLine = 64;
constexpr size_t kMinHighWater = 4096;
constexpr size_t kMinReadBuffer = 1024;
constexpr unsigned kMaxThreads = 256;
// A scrape reads many rows; one snapshot serves the rows of one scrape.
constexpr auto kSnapshotReuse = std::chrono::milliseconds(500);

class Sessions final : public SessionFactory {
 public:
  explicit Sessions(ServerShared& shared) : shared_(shared) {}
  std::unique_ptr<StreamSession> NewSession(unsigned worker) override {
    return std::make_unique<Session>(shared_, (*shared_.workers)[worker]);
  }

 private:
  ServerShared& shared_;
};

}  // namespace

// `watch evictions`: the store's evictions as memcached's log lines.
class EvictionLog final : public EvictionObserver {
 public:
  explicit EvictionLog(WatchHub& hub) : hub_(hub) {}
  void OnEviction(const ItemView& item) noexcept override {
    if (!hub_.Wants(kWatchEvictions)) return;
    try {
      std::string line = "type=eviction key=";
      AppendUriEncoded(line, item.key());
      line += fmt::format(" fetch={} ttl={} la={} clsid={} size={}",
                          item.fetched_before() ? "yes" : "no", item.ttl(), item.idle_seconds(),
                          MemcachedSlabClass(item.key().size(), item.value_size(), item.flags()),
                          item.value_size());
      hub_.Publish(kWatchEvictions, line);
    } catch (...) {
      // Out of memory while logging: the line is lost, the eviction is not.
    }
  }

 private:
  WatchHub& hub_;
};

struct Server::Impl {
  ServerShared shared;
  std::unique_ptr<EvictionLog> eviction_log;
  std::vector<WorkerCounters> counters;
  std::unique_ptr<Sessions> sessions;
  std::unique_ptr<TcpServer> loop;
  std::string address;
  Clock* clock = nullptr;
  // The snapshot the metrics rows of one scrape share.
  std::mutex snapshot_mu;
  StatsSnapshot snapshot;
  MonoTime snapshot_at{};
  bool have_snapshot = false;

  StatsSnapshot Snapshot() {
    std::lock_guard lock(snapshot_mu);
    const MonoTime now = clock->MonotonicNow();
    if (!have_snapshot || now - snapshot_at > kSnapshotReuse) {
      snapshot = TakeStatsSnapshot(shared);
      snapshot_at = now;
      have_snapshot = true;
    }
    return snapshot;
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() {
  if (impl_ != nullptr && impl_->eviction_log != nullptr) impl_->shared.store->SetEvictionObserver(nullptr);
}
const std::string& Server::address() const noexcept { return impl_->address; }
unsigned Server::threads() const noexcept { return impl_->shared.options.threads; }
LoopBackend Server::backend() const noexcept { return impl_->loop->backend(); }
Status Server::Serve(unsigned index) { return impl_->loop->Serve(index); }
void Server::Stop() { impl_->loop->Stop(); }

Result<std::unique_ptr<Server>> Server::Open(Store& store, const ServerOptions& options) {
  if (options.threads == 0 || options.threads > kMaxThreads) {
    return InvalidArgument(fmt::format("threads must be 1..{}", kMaxThreads));
  }
  if (options.max_line < kMinLine || options.max_get_line < options.max_line ||
      options.output_high_water < kMinHighWater || options.read_buffer < kMinReadBuffer) {
    return InvalidArgument("buffer limits out of range");
  }
  auto impl = std::make_unique<Impl>();
  impl->clock = options.clock != nullptr ? options.clock : &RealClock();
  impl->shared.store = &store;
  impl->shared.options = options;
  impl->counters = std::vector<WorkerCounters>(options.threads);
  impl->shared.workers = &impl->counters;
  impl->shared.started_unix =
      std::chrono::duration_cast<std::chrono::seconds>(impl->clock->WallNow().time_since_epoch()).count();
  impl->sessions = std::make_unique<Sessions>(impl->shared);

  TcpServerOptions lo;
  lo.listen = options.listen;
  lo.threads = options.threads;
  lo.max_connections = options.max_connections;
  lo.reject_message = std::string(kTooManyConnections);
  lo.read_buffer = options.read_buffer;
  // The session bounds what it buffers (a line, a value up to
  // item_size_max); the loop's bound only catches a session that does not.
  lo.max_input = std::max(options.max_get_line, store.options().item_size_max) +
                 2 * options.max_line + 2 * options.read_buffer;
  lo.listen_backlog = options.listen_backlog;
  lo.drain_timeout = options.drain_timeout;
  lo.backend = options.backend;
  lo.clock = options.clock;
  lo.logger = options.logger;
  QCLOUD_ASSIGN_OR_RETURN(impl->loop, TcpServer::Open(*impl->sessions, lo));
  impl->shared.loop = impl->loop.get();
  impl->eviction_log = std::make_unique<EvictionLog>(impl->shared.watch);
  store.SetEvictionObserver(impl->eviction_log.get());
  impl->address = impl->loop->address().ToString();
  impl->shared.options.listen = impl->address;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Status Server::ExportMetrics(MetricsRegistry& registry) {
  std::vector<std::string> done;
  for (auto table : {GeneralStats(), ColdStats()}) {
    for (const StatRow& row : table) {
      if (row.prometheus == nullptr || row.type == StatType::kText) continue;
      const bool counter = row.type == StatType::kCounter;
      std::string name = fmt::format("qcloud_kv_{}{}", row.prometheus, counter ? "_total" : "");
      if (std::find(done.begin(), done.end(), name) != done.end()) continue;  // in both tables
      QCLOUD_RETURN_IF_ERROR(registry.AddCallback(
          name, fmt::format("{} (memcached: {})", row.help, row.name),
          counter ? MetricType::kCounter : MetricType::kGauge,
          [impl = impl_.get(), read = row.read] { return StatNumber(read(impl->Snapshot())); }));
      done.push_back(std::move(name));
    }
  }
  return Status::Ok();
}

}  // namespace qcloud::kv
