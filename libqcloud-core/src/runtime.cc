#include "qcloud/core/runtime.h"

#include <sys/socket.h>

#include <charconv>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

namespace qcloud {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

void LogLine(Logger* logger, LogLevel level, const std::string& line) {
  if (logger->Enabled(level)) logger->Log(level, line);
}
}  // namespace

Result<tcp::endpoint> ParseEndpoint(std::string_view text) {
  std::string_view host, port;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return InvalidArgument(fmt::format("bad endpoint '{}': want [v6addr]:port", text));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return InvalidArgument(fmt::format("bad endpoint '{}': want host:port", text));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (ec != std::errc() || end != port.data() + port.size() || p > 65535) {
    return InvalidArgument(fmt::format("bad port in endpoint '{}'", text));
  }
  asio::ip::address addr = asio::ip::address_v4::any();
  if (!host.empty()) {
    boost::system::error_code aec;
    addr = asio::ip::make_address(std::string(host), aec);
    if (aec) return InvalidArgument(fmt::format("bad address in endpoint '{}'", text));
  }
  return tcp::endpoint(addr, static_cast<unsigned short>(p));
}

struct Runtime::Signals {
  explicit Signals(asio::io_context& io) : set(io, SIGINT, SIGTERM) {}
  asio::signal_set set;
};

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
  if (options.stop_signals == StopSignals::kHandle) {
    rt->signals_ = std::make_unique<Signals>(rt->shards_[0]->io);
    Runtime* self = rt.get();
    rt->signals_->set.async_wait([self](const boost::system::error_code& ec, int signo) {
      if (ec) return;
      LogLine(self->logger_, LogLevel::kInfo, fmt::format("signal {}: stopping", signo));
      self->Stop();
    });
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

Result<tcp::endpoint> Runtime::Listen(const tcp::endpoint& endpoint, AcceptHandler handler) {
  auto shared = std::make_shared<AcceptHandler>(std::move(handler));
  tcp::endpoint bound = endpoint;
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
                    fmt::format("listen on {}:{}: {}", endpoint.address().to_string(),
                                endpoint.port(), ec.message()));
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
  return bound;
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

void Runtime::Start() {
  std::lock_guard lock(mu_);
  for (size_t i = threads_.size(); i < shards_.size(); ++i) {
    threads_.emplace_back([this, i] {
      // The asio pattern for handlers that throw: log and keep serving, so
      // one bad handler does not take the whole shard down.
      while (true) {
        try {
          shards_[i]->io.run();
          return;
        } catch (const std::exception& e) {
          LogLine(logger_, LogLevel::kError, fmt::format("shard {}: handler threw: {}", i, e.what()));
        }
      }
    });
  }
}

Status Runtime::Run() {
  Start();
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
  cv_.notify_all();
  if (watchdog_.joinable()) watchdog_.join();
  if (forced_.load()) return Status(Errc::kTimedOut, "drain deadline passed; stop forced");
  return Status::Ok();
}

void Runtime::Stop() {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
  asio::post(shards_[0]->io, [this] { BeginStop(); });
}

void Runtime::BeginStop() {
  if (signals_) {
    boost::system::error_code ignored;
    signals_->set.cancel(ignored);
  }
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
  watchdog_ = std::thread([this] {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, options_.drain_timeout, [this] { return joined_; })) {
      forced_.store(true);
      LogLine(logger_, LogLevel::kWarning, "drain deadline passed: forcing stop");
      for (auto& shard : shards_) shard->io.stop();
    }
  });
}

}  // namespace qcloud
