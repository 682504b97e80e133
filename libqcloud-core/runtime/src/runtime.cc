#include "qcloud/runtime/runtime.h"

#include <sys/socket.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

namespace qcloud {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

// How often a running shard looks at the drain deadline.
constexpr std::chrono::milliseconds kDeadlineCheck{50};

void LogLine(Logger* logger, LogLevel level, const std::string& line) {
  if (logger->Enabled(level)) logger->Log(level, line);
}
}  // namespace

tcp::endpoint ToAsio(const Endpoint& endpoint) {
  // Endpoint's address is numeric text (ParseEndpoint normalized it).
  boost::system::error_code ec;
  auto addr = asio::ip::make_address(endpoint.address, ec);
  return tcp::endpoint(ec ? asio::ip::address(asio::ip::address_v4::any()) : addr, endpoint.port);
}

Endpoint FromAsio(const tcp::endpoint& endpoint) {
  return Endpoint{.address = endpoint.address().to_string(), .port = endpoint.port()};
}

Runtime::Runtime(const RuntimeOptions& options)
    : options_(options), logger_(options.logger ? options.logger : &DiscardLogger()) {}

Result<std::unique_ptr<Runtime>> Runtime::Open(const RuntimeOptions& options) {
  unsigned n = options.threads ? options.threads : std::max(1u, std::thread::hardware_concurrency());
  if (n > 1024) return InvalidArgument(fmt::format("threads {} > 1024", n));
  if (options.drain_timeout.count() < 0) return InvalidArgument("negative drain_timeout");
  std::unique_ptr<Runtime> rt(new Runtime(options));
  for (unsigned i = 0; i < n; ++i) {
    auto shard = std::make_unique<Shard>();
    shard->work = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(
        shard->io.get_executor());
    rt->shards_.push_back(std::move(shard));
  }
  return rt;
}

Runtime::~Runtime() {
  Stop();
  bool started;
  {
    std::lock_guard lock(mu_);
    started = !threads_.empty() && !joined_;
  }
  if (started) (void)Join();
}

Result<Endpoint> Runtime::Listen(const Endpoint& endpoint, AcceptHandler handler) {
  auto shared = std::make_shared<AcceptHandler>(std::move(handler));
  tcp::endpoint bound = ToAsio(endpoint);
  std::vector<std::unique_ptr<tcp::acceptor>> made;
  for (auto& shard : shards_) {
    auto acc = std::make_unique<tcp::acceptor>(shard->io);
    boost::system::error_code ec;
    acc->open(bound.protocol(), ec);
    if (!ec) acc->set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acc->set_option(ReusePort(true), ec);
    if (!ec) acc->bind(bound, ec);
    if (!ec) acc->listen(options_.listen_backlog, ec);
    if (ec) {
      return Status(std::error_code(ec.value(), std::system_category()),
                    fmt::format("listen on {}: {}", endpoint.ToString(), ec.message()));
    }
    // Port 0: the first socket picks a port; the others join it.
    bound = acc->local_endpoint();
    made.push_back(std::move(acc));
  }
  for (size_t i = 0; i < shards_.size(); ++i) {
    tcp::acceptor& acc = *made[i];
    shards_[i]->acceptors.push_back(std::move(made[i]));
    asio::post(shards_[i]->io, [this, i, &acc, shared] { AcceptLoop(i, acc, shared); });
  }
  return FromAsio(bound);
}

void Runtime::AcceptLoop(size_t shard, tcp::acceptor& acceptor,
                         const std::shared_ptr<AcceptHandler>& handler) {
  acceptor.async_accept(
      shards_[shard]->io, [this, shard, &acceptor, handler](boost::system::error_code ec,
                                                           tcp::socket socket) {
        if (!ec) {
          (*handler)(std::move(socket), shard);
        } else if (ec == asio::error::operation_aborted || stopping()) {
          return;
        } else {
          // EMFILE/ENFILE/ENOBUFS: back off briefly instead of spinning; the
          // connection stays queued in the kernel until we can take it.
          LogLine(logger_, LogLevel::kWarning, fmt::format("accept: {}", ec.message()));
          auto timer = std::make_shared<asio::steady_timer>(shards_[shard]->io,
                                                            std::chrono::milliseconds(50));
          timer->async_wait([this, shard, &acceptor, handler, timer](boost::system::error_code) {
            if (!stopping()) AcceptLoop(shard, acceptor, handler);
          });
          return;
        }
        if (!stopping()) AcceptLoop(shard, acceptor, handler);
      });
}

void Runtime::OnStop(std::function<void()> hook) { stop_hooks_.push_back(std::move(hook)); }

void Runtime::StartFrom(size_t first) {
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  for (size_t i = first; i < shards_.size(); ++i) {
    threads_.emplace_back([this, i] { RunShard(i); });
  }
}

void Runtime::Start() { StartFrom(0); }

Status Runtime::Run() {
  StartFrom(1);
  RunShard(0);
  return Join();
}

Status Runtime::Join() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  {
    std::lock_guard lock(mu_);
    joined_ = true;
  }
  if (forced_.load()) return Status(Errc::kTimedOut, "drain deadline passed; stop forced");
  return Status::Ok();
}

void Runtime::Stop() {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
  asio::post(shards_[0]->io, [this] { BeginStop(); });
}

void Runtime::BeginStop() {
  for (auto& shard : shards_) {
    asio::post(shard->io, [s = shard.get()] {
      for (auto& acc : s->acceptors) {
        boost::system::error_code ignored;
        acc->close(ignored);
      }
    });
  }
  for (auto& hook : stop_hooks_) hook();
  // Without the guards each io_context returns once its last operation ends.
  for (auto& shard : shards_) shard->work.reset();
  drain_deadline_ns_.store(
      (std::chrono::steady_clock::now() + options_.drain_timeout).time_since_epoch().count(),
      std::memory_order_release);
}

// Each shard's thread runs its context in slices and looks at the drain
// deadline between them, so the forced stop needs no watchdog thread. A
// context returns from a slice early once it is out of work: the clean end.
void Runtime::RunShard(size_t i) {
  asio::io_context& io = shards_[i]->io;
  while (!io.stopped()) {
    // The asio pattern for handlers that throw: log and keep serving, so
    // one bad handler does not take the whole shard down.
    try {
      io.run_for(kDeadlineCheck);
    } catch (const std::exception& e) {
      LogLine(logger_, LogLevel::kError, fmt::format("shard {}: handler threw: {}", i, e.what()));
    }
    const int64_t deadline = drain_deadline_ns_.load(std::memory_order_acquire);
    if (deadline != 0 && std::chrono::steady_clock::now().time_since_epoch().count() > deadline &&
        !io.stopped()) {
      if (!forced_.exchange(true)) {
        LogLine(logger_, LogLevel::kWarning, "drain deadline passed: forcing stop");
      }
      for (auto& shard : shards_) shard->io.stop();
    }
  }
}

}  // namespace qcloud
