// The NBD front end: core's connection loop (TcpServer) with an NbdSession
// per connection. Sockets, io_uring/epoll, limits, the idle close and the
// drain live in core; this file sizes the loop for NBD and sums the
// protocol's counters.

#include "qcloud/block/nbd_server.h"

#include <fmt/format.h>

#include <algorithm>
#include <functional>

#include "block/nbd_proto.h"
#include "block/nbd_session.h"
#include "qcloud/core/worker_pool.h"

namespace qcloud::block {

namespace {

constexpr unsigned kMaxThreads = 256;
// An option must hold the longest export name the spec allows, with
// NBD_OPT_GO's framing and a few information requests.
constexpr uint32_t kMinOptionBytes = nbd::kMaxString + 64;
constexpr uint32_t kMinRequestBytes = 4096;
// A structured read reply's length field holds the data plus its offset.
constexpr uint32_t kMaxRequestBytes = 1u << 30;
constexpr size_t kMinHighWater = 4096;
// Bytes asked of one receive: a 1 MiB write arrives in a few steps.
constexpr size_t kReadBuffer = 256 * 1024;

}  // namespace

struct NbdServer::Impl final : SessionFactory {
  ExportDirectory* exports = nullptr;
  NbdServerOptions options;
  std::unique_ptr<NbdCounters[]> counters;  // one per worker
  // After the counters (its jobs count), before the loop (whose sessions
  // post to it): destroyed after the sessions, running what was posted.
  std::unique_ptr<WorkerPool> pool;
  std::unique_ptr<TcpServer> loop;
  std::string address;

  std::unique_ptr<StreamSession> NewSession(unsigned worker) override {
    return std::make_unique<NbdSession>(*exports, options, counters[worker], pool.get());
  }
};

NbdServer::NbdServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NbdServer::~NbdServer() = default;
const std::string& NbdServer::address() const noexcept { return impl_->address; }
unsigned NbdServer::threads() const noexcept { return impl_->options.threads; }
LoopBackend NbdServer::backend() const noexcept { return impl_->loop->backend(); }
Status NbdServer::Serve(unsigned index) { return impl_->loop->Serve(index); }
void NbdServer::Stop() { impl_->loop->Stop(); }

Result<std::unique_ptr<NbdServer>> NbdServer::Open(ExportDirectory& exports,
                                                   const NbdServerOptions& options) {
  if (options.threads == 0 || options.threads > kMaxThreads) {
    return InvalidArgument(fmt::format("threads must be 1..{}", kMaxThreads));
  }
  if (options.max_option_bytes < kMinOptionBytes) {
    return InvalidArgument(fmt::format("max_option_bytes must be >= {}", kMinOptionBytes));
  }
  if (options.max_request_bytes < kMinRequestBytes ||
      options.max_request_bytes > kMaxRequestBytes) {
    return InvalidArgument(
        fmt::format("max_request_bytes must be {}..{}", kMinRequestBytes, kMaxRequestBytes));
  }
  if (options.output_high_water < kMinHighWater) {
    return InvalidArgument(fmt::format("output_high_water must be >= {}", kMinHighWater));
  }
  if (options.handshake_timeout.count() < 0) return InvalidArgument("negative handshake_timeout");
  auto impl = std::make_unique<Impl>();
  impl->exports = &exports;
  impl->options = options;
  impl->counters = std::make_unique<NbdCounters[]>(options.threads);
  if (options.io_threads > kMaxThreads) {
    return InvalidArgument(fmt::format("io_threads must be 0..{}", kMaxThreads));
  }
  if (options.io_threads > 0) impl->pool = std::make_unique<WorkerPool>(options.io_threads);

  TcpServerOptions lo;
  lo.listen = options.listen;
  lo.threads = options.threads;
  lo.max_connections = options.max_connections;
  lo.read_buffer = kReadBuffer;
  // The session keeps at most one incomplete message (a write with its
  // payload, or an option with its data); a receive may add a buffer more.
  lo.max_input = std::max<size_t>(size_t{options.max_request_bytes} + nbd::kRequestSize,
                                  size_t{options.max_option_bytes} + nbd::kOptionHeaderSize) +
                 2 * kReadBuffer;
  lo.drain_timeout = options.drain_timeout;
  // Sessions past their handshake are idle_exempt(): the loop's idle close
  // is exactly a handshake timeout.
  lo.idle_timeout = options.handshake_timeout;
  lo.backend = options.backend;
  lo.clock = options.clock;
  lo.logger = options.logger;
  QCLOUD_ASSIGN_OR_RETURN(impl->loop, TcpServer::Open(*impl, lo));
  impl->address = impl->loop->address().ToString();
  impl->options.listen = impl->address;
  return std::unique_ptr<NbdServer>(new NbdServer(std::move(impl)));
}

NbdServerStats NbdServer::stats() const {
  NbdServerStats s;
  const TcpServerStats loop = impl_->loop->stats();
  s.connections = loop.total_connections;
  s.curr_connections = loop.curr_connections;
  constexpr auto r = std::memory_order_relaxed;
  for (unsigned i = 0; i < impl_->options.threads; ++i) {
    const NbdCounters& c = impl_->counters[i];
    s.handshakes += c.handshakes.load(r);
    s.reads += c.reads.load(r);
    s.writes += c.writes.load(r);
    s.flushes += c.flushes.load(r);
    s.trims += c.trims.load(r);
    s.zeroes += c.zeroes.load(r);
    s.read_bytes += c.read_bytes.load(r);
    s.write_bytes += c.write_bytes.load(r);
    s.errors += c.errors.load(r);
    s.protocol_errors += c.protocol_errors.load(r);
  }
  return s;
}

Status NbdServer::RegisterMetrics(MetricsRegistry& registry) {
  struct Row {
    const char* name;
    const char* help;
    MetricType type;
    std::function<double(const NbdServerStats&)> read;
  };
  const Row rows[] = {
      {"qcloud_nbd_connections_total", "NBD connections accepted.", MetricType::kCounter,
       [](const NbdServerStats& s) { return double(s.connections); }},
      {"qcloud_nbd_connections", "NBD connections open.", MetricType::kGauge,
       [](const NbdServerStats& s) { return double(s.curr_connections); }},
      {"qcloud_nbd_handshakes_total", "NBD connections that reached the transmission phase.",
       MetricType::kCounter, [](const NbdServerStats& s) { return double(s.handshakes); }},
      {"qcloud_nbd_read_bytes_total", "Bytes read by NBD clients.", MetricType::kCounter,
       [](const NbdServerStats& s) { return double(s.read_bytes); }},
      {"qcloud_nbd_written_bytes_total", "Bytes written by NBD clients.", MetricType::kCounter,
       [](const NbdServerStats& s) { return double(s.write_bytes); }},
      {"qcloud_nbd_request_errors_total", "NBD requests answered with an error.",
       MetricType::kCounter, [](const NbdServerStats& s) { return double(s.errors); }},
      {"qcloud_nbd_protocol_errors_total", "NBD connections closed for bytes that are not NBD.",
       MetricType::kCounter, [](const NbdServerStats& s) { return double(s.protocol_errors); }},
  };
  for (const Row& row : rows) {
    QCLOUD_RETURN_IF_ERROR(registry.AddCallback(row.name, row.help, row.type,
                                                [this, read = row.read] { return read(stats()); }));
  }
  return registry.AddCollector("qcloud_nbd_requests_total", "NBD requests by command.",
                               MetricType::kCounter, {"cmd"}, [this] {
                                 const NbdServerStats s = stats();
                                 return std::vector<MetricsRegistry::Sample>{
                                     {{"read"}, double(s.reads)},
                                     {{"write"}, double(s.writes)},
                                     {{"flush"}, double(s.flushes)},
                                     {{"trim"}, double(s.trims)},
                                     {{"write_zeroes"}, double(s.zeroes)}};
                               });
}

}  // namespace qcloud::block
