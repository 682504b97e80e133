// The TCP front end: one io_uring per worker. Each connection has at most
// one receive and one send in flight; every completion that arrives in one
// io_uring_enter is handled, and the receives and sends it produced are
// submitted together by the next io_uring_enter, which also waits for the
// next completions. With N busy connections a loop turn costs one system
// call for up to N requests, where an epoll server pays epoll_wait plus a
// read and a write per request.
//
// Connection lifecycle: accepted (multishot accept) -> receiving; each
// receive feeds Session::Process, whose replies are queued in `out`; `out`
// is swapped into `sending` when no send is in flight, so a buffer is never
// touched by the kernel and by the session at once. While more than
// output_high_water bytes wait to be sent the connection is not read.
// A connection ends when the peer closes its side (after our replies are
// sent), on an error, after quit, or at Stop(); its fd is closed only when
// no operation is in flight.

#include "qcloud/kv/server.h"

#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "kv/session.h"
#include "qcloud/kv/store.h"

namespace qcloud::kv {

namespace {

enum Tag : uintptr_t { kRecv = 0, kSend = 1, kAccept = 2, kWake = 3 };

struct Conn {
  Conn(ServerShared& shared, WorkerCounters& counters, int fd_in)
      : fd(fd_in), session(shared, counters) {}
  int fd;
  Session session;
  Buffer in;
  Buffer out;
  Buffer sending;
  bool recv_armed = false;
  bool send_armed = false;
  bool eof = false;       // peer finished sending, or we stopped reading
  bool dead = false;      // closing: waiting for in-flight operations
  bool reaping = false;   // queued for Reap()
};

uint64_t Encode(void* p, Tag t) { return reinterpret_cast<uintptr_t>(p) | t; }

Status Errno(std::string_view what) {
  return Status::FromErrno(errno, std::string(what));
}

Result<sockaddr_storage> ParseAddress(std::string_view text, socklen_t* len) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return InvalidArgument("listen address needs host:port");
  std::string host(text.substr(0, colon));
  const std::string port_text(text.substr(colon + 1));
  char* end = nullptr;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (port_text.empty() || *end != '\0' || port < 0 || port > 65535) {
    return InvalidArgument("bad port in listen address");
  }
  sockaddr_storage ss{};
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) != 1) {
      return InvalidArgument("bad IPv6 address in listen address");
    }
    *len = sizeof(sockaddr_in6);
    return ss;
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(&ss);
  a4->sin_family = AF_INET;
  a4->sin_port = htons(static_cast<uint16_t>(port));
  if (host.empty()) host = "0.0.0.0";
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) {
    return InvalidArgument("bad IPv4 address in listen address (numeric only)");
  }
  *len = sizeof(sockaddr_in);
  return ss;
}

}  // namespace

struct Server::Impl {
  ServerShared shared;
  std::vector<WorkerCounters> counters;
  std::vector<int> listen_fds;
  std::vector<int> wake_fds;
  std::string address;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> connections{0};
  Logger* logger = nullptr;

  ~Impl() {
    for (int fd : listen_fds) if (fd >= 0) ::close(fd);
    for (int fd : wake_fds) if (fd >= 0) ::close(fd);
  }
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;
const std::string& Server::address() const noexcept { return impl_->address; }
unsigned Server::threads() const noexcept { return impl_->shared.options.threads; }

Result<std::unique_ptr<Server>> Server::Open(Store& store, const ServerOptions& options) {
  if (options.threads == 0 || options.threads > 256) {
    return InvalidArgument("threads must be 1..256");
  }
  if (options.max_line < 64 || options.max_get_line < options.max_line ||
      options.output_high_water < 4096 || options.read_buffer < 1024) {
    return InvalidArgument("buffer limits out of range");
  }
  {
    // io_uring may be disabled (kernel.io_uring_disabled, seccomp): say so.
    io_uring probe;
    const int rc = io_uring_queue_init(4, &probe, 0);
    if (rc < 0) {
      return Status(Errc::kNotSupported,
                    fmt::format("io_uring unavailable: {}", std::strerror(-rc)));
    }
    io_uring_queue_exit(&probe);
  }
  socklen_t len = 0;
  QCLOUD_ASSIGN_OR_RETURN(sockaddr_storage addr, ParseAddress(options.listen, &len));
  auto impl = std::make_unique<Impl>();
  impl->logger = options.logger != nullptr ? options.logger : &DiscardLogger();
  impl->shared.store = &store;
  impl->shared.options = options;
  impl->counters = std::vector<WorkerCounters>(options.threads);
  impl->shared.workers = &impl->counters;
  impl->shared.started_unix = static_cast<int64_t>(std::time(nullptr));
  for (unsigned i = 0; i < options.threads; ++i) {
    const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return Errno("socket");
    impl->listen_fds.push_back(fd);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) return Errno("bind " + options.listen);
    if (::listen(fd, options.listen_backlog) != 0) return Errno("listen");
    if (i == 0) {
      // Port 0: the other workers bind the port the kernel chose.
      socklen_t l = len;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &l);
    }
    const int wfd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wfd < 0) return Errno("eventfd");
    impl->wake_fds.push_back(wfd);
  }
  char host[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (addr.ss_family == AF_INET6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof host);
    port = ntohs(a6->sin6_port);
    impl->address = fmt::format("[{}]:{}", host, port);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a4->sin_addr, host, sizeof host);
    port = ntohs(a4->sin_port);
    impl->address = fmt::format("{}:{}", host, port);
  }
  impl->shared.options.listen = impl->address;
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::Stop() {
  if (impl_->stopping.exchange(true)) return;
  for (int fd : impl_->wake_fds) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
  }
}

namespace {

class Worker {
 public:
  Worker(ServerShared& shared, WorkerCounters& counters, std::atomic<int64_t>& connections,
         int listen_fd, int wake_fd, Logger& log)
      : shared_(shared),
        counters_(counters),
        connections_(connections),
        listen_fd_(listen_fd),
        wake_fd_(wake_fd),
        log_(log) {}

  Status Run(const std::atomic<bool>& stopping) {
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    params.cq_entries = 8192;
    params.flags |= IORING_SETUP_CQSIZE;
    int rc = io_uring_queue_init_params(1024, &ring_, &params);
    if (rc == -EINVAL) {  // older kernels: no DEFER_TASKRUN
      params = {};
      params.flags = IORING_SETUP_CQSIZE;
      params.cq_entries = 8192;
      rc = io_uring_queue_init_params(1024, &ring_, &params);
    }
    if (rc < 0) return Status::FromErrno(-rc, "io_uring_queue_init");
    ArmAccept();
    ArmWake();
    bool draining = false;
    auto drain_deadline = std::chrono::steady_clock::now();
    while (true) {
      if (stopping.load(std::memory_order_relaxed) && !draining) {
        draining = true;
        drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        for (Conn* c : conns_) StopReading(*c);
      }
      if (draining && live_ == 0) break;
      if (draining && std::chrono::steady_clock::now() > drain_deadline) break;
      __kernel_timespec ts{0, 100 * 1000 * 1000};
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, draining ? &ts : nullptr, nullptr);
      if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
        log_.Log(LogLevel::kError, fmt::format("io_uring wait: {}", std::strerror(-rc)));
        break;
      }
      unsigned head;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head, cqe) {
        ++seen;
        Handle(cqe->user_data, cqe->res, cqe->flags);
      }
      io_uring_cq_advance(&ring_, seen);
      Reap();
    }
    for (Conn* c : conns_) {
      ::close(c->fd);
      counters_.curr_connections.fetch_sub(1, std::memory_order_relaxed);
      connections_.fetch_sub(1, std::memory_order_relaxed);
    }
    io_uring_queue_exit(&ring_);
    for (Conn* c : conns_) delete c;
    conns_.clear();
    return Status::Ok();
  }

 private:
  io_uring_sqe* Sqe() {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) {
      io_uring_submit(&ring_);
      sqe = io_uring_get_sqe(&ring_);
    }
    return sqe;
  }

  void ArmAccept() {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_multishot_accept(sqe, listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, Encode(nullptr, kAccept));
  }

  void ArmWake() {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof wake_value_, 0);
    io_uring_sqe_set_data64(sqe, Encode(nullptr, kWake));
  }

  void ArmRecv(Conn& c) {
    // Like memcached, read a command line into at most read_buffer (16 KiB)
    // bytes: a longer line without a newline then closes the connection
    // the same way. Values (partial data blocks) read in 16 KiB steps.
    const size_t pending = c.in.size();
    const size_t want = shared_.options.read_buffer > pending + 4096
                            ? shared_.options.read_buffer - pending
                            : shared_.options.read_buffer;
    auto space = c.in.Prepare(want);
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_recv(sqe, c.fd, space.data(), want, 0);
    io_uring_sqe_set_data64(sqe, Encode(&c, kRecv));
    c.recv_armed = true;
  }

  void ArmSend(Conn& c) {
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_send(sqe, c.fd, c.sending.data(), c.sending.size(), MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, Encode(&c, kSend));
    c.send_armed = true;
  }

  void Handle(uint64_t data, int res, unsigned flags) {
    const Tag tag = static_cast<Tag>(data & 3);
    Conn* c = reinterpret_cast<Conn*>(data & ~uint64_t{3});
    switch (tag) {
      case kAccept:
        OnAccept(res);
        if ((flags & IORING_CQE_F_MORE) == 0 && !closed_listener_) ArmAccept();
        return;
      case kWake:
        return;  // Run() notices `stopping`
      case kRecv:
        c->recv_armed = false;
        if (res > 0) {
          c->in.Commit(static_cast<size_t>(res));
          Bump(counters_.bytes_read, static_cast<uint64_t>(res));
          Drive(*c);
        } else if (res == -EINTR || res == -EAGAIN) {
          if (!c->dead && !c->eof) ArmRecv(*c);
        } else {
          // 0: the peer finished sending; replies still go out, then close.
          c->eof = true;
          if (res < 0) c->dead = true;
          Drive(*c);
        }
        return;
      case kSend:
        c->send_armed = false;
        if (res < 0) {
          c->dead = true;
          c->eof = true;
          return;
        }
        Bump(counters_.bytes_written, static_cast<uint64_t>(res));
        c->sending.Consume(static_cast<size_t>(res));
        if (!c->sending.empty()) {
          ArmSend(*c);
          return;
        }
        Drive(*c);
        return;
    }
  }

  void OnAccept(int fd) {
    if (fd < 0) {
      if (fd != -ECANCELED) {
        log_.Log(LogLevel::kWarning, fmt::format("accept: {}", std::strerror(-fd)));
      }
      return;
    }
    if (connections_.load(std::memory_order_relaxed) >=
        static_cast<int64_t>(shared_.options.max_connections)) {
      static constexpr char kMsg[] = "ERROR Too many open connections\r\n";
      [[maybe_unused]] ssize_t n = ::send(fd, kMsg, sizeof kMsg - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      ::close(fd);
      shared_.rejected_connections.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Conn* c = new Conn(shared_, counters_, fd);
    conns_.push_back(c);
    ++live_;
    connections_.fetch_add(1, std::memory_order_relaxed);
    counters_.curr_connections.fetch_add(1, std::memory_order_relaxed);
    Bump(counters_.total_connections);
    ArmRecv(*c);
  }

  // Runs the session over the buffered input, starts a send if none is in
  // flight, and decides whether to read more or to close.
  void Drive(Conn& c) {
    if (!c.dead) {
      const size_t used = c.session.Process(c.in.readable(), c.out);
      c.in.Consume(used);
      if (c.session.closing()) c.eof = true;
    }
    if (!c.send_armed && !c.out.empty() && !c.dead) {
      std::swap(c.out, c.sending);
      ArmSend(c);
    }
    if (c.dead || (c.eof && !c.send_armed)) {
      c.dead = true;
      if (!c.recv_armed && !c.send_armed) {
        if (!c.reaping) to_close_.push_back(&c);
        c.reaping = true;
      } else if (c.recv_armed) {
        ::shutdown(c.fd, SHUT_RDWR);  // completes the pending receive
      }
      return;
    }
    if (!c.eof && !c.recv_armed && !c.session.blocked(c.out)) {
      c.in.ShrinkIfIdle(shared_.options.read_buffer * 4);
      c.out.ShrinkIfIdle(shared_.options.output_high_water);
      ArmRecv(c);
    }
  }

  void StopReading(Conn& c) {
    c.eof = true;
    if (c.recv_armed) {
      ::shutdown(c.fd, SHUT_RD);
    } else {
      Drive(c);
    }
  }

  void Reap() {
    for (Conn* c : to_close_) {
      if (c->recv_armed || c->send_armed) continue;  // completions still due
      ::close(c->fd);
      for (size_t i = 0; i < conns_.size(); ++i) {
        if (conns_[i] == c) {
          conns_[i] = conns_.back();
          conns_.pop_back();
          break;
        }
      }
      --live_;
      connections_.fetch_sub(1, std::memory_order_relaxed);
      counters_.curr_connections.fetch_sub(1, std::memory_order_relaxed);
      delete c;
    }
    to_close_.clear();
  }

  ServerShared& shared_;
  WorkerCounters& counters_;
  std::atomic<int64_t>& connections_;
  int listen_fd_;
  int wake_fd_;
  Logger& log_;
  io_uring ring_{};
  uint64_t wake_value_ = 0;
  bool closed_listener_ = false;
  std::vector<Conn*> conns_;
  std::vector<Conn*> to_close_;
  size_t live_ = 0;
};

}  // namespace

Status Server::Serve(unsigned index) {
  if (index >= impl_->listen_fds.size()) return InvalidArgument("no such worker");
  Worker worker(impl_->shared, impl_->counters[index], impl_->connections,
                impl_->listen_fds[index], impl_->wake_fds[index], *impl_->logger);
  return worker.Run(impl_->stopping);
}

}  // namespace qcloud::kv
