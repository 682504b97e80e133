// TcpServer: options, listening sockets, the backend choice, statistics, and
// the parts of a worker both backends share (core/tcp_loop.h).

#include "qcloud/core/tcp_server.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include <fmt/format.h>

#include "core/tcp_loop.h"

namespace qcloud {

using core_internal::LoopCounters;

namespace {
constexpr unsigned kMaxWorkers = 256;
constexpr size_t kMinReadBuffer = 1024;
}  // namespace

const char* LoopBackendName(LoopBackend backend) noexcept {
  switch (backend) {
    case LoopBackend::kAuto: return "auto";
    case LoopBackend::kIoUring: return "io_uring";
    case LoopBackend::kEpoll: return "epoll";
  }
  return "?";
}

Result<LoopBackend> ParseLoopBackend(std::string_view name) {
  for (LoopBackend b : {LoopBackend::kAuto, LoopBackend::kIoUring, LoopBackend::kEpoll}) {
    if (name == LoopBackendName(b)) return b;
  }
  return InvalidArgument(fmt::format("want auto, io_uring or epoll, not '{}'", name));
}

TcpServer::Impl::~Impl() {
  for (int fd : listen_fds) ::close(fd);
  for (int fd : wake_fds) ::close(fd);
}

TcpServer::TcpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
TcpServer::~TcpServer() = default;
const Endpoint& TcpServer::address() const noexcept { return impl_->address; }
unsigned TcpServer::threads() const noexcept { return impl_->options.threads; }
LoopBackend TcpServer::backend() const noexcept { return impl_->backend; }
int TcpServer::listen_fd(unsigned index) const noexcept {
  return index < impl_->listen_fds.size() ? impl_->listen_fds[index] : -1;
}

Result<std::unique_ptr<TcpServer>> TcpServer::Open(SessionFactory& factory,
                                                   const TcpServerOptions& options) {
  if (options.threads == 0 || options.threads > kMaxWorkers) {
    return InvalidArgument(fmt::format("threads must be 1..{}", kMaxWorkers));
  }
  if (options.read_buffer < kMinReadBuffer || options.max_input < options.read_buffer) {
    return InvalidArgument("read_buffer must be >= 1 KiB and max_input >= read_buffer");
  }
  if (options.max_connections == 0) return InvalidArgument("max_connections must be > 0");
  if (options.drain_timeout.count() < 0) return InvalidArgument("negative drain_timeout");
  QCLOUD_ASSIGN_OR_RETURN(Endpoint listen, ParseEndpoint(options.listen));

  auto impl = std::make_unique<Impl>();
  impl->factory = &factory;
  impl->options = options;
  impl->clock = options.clock != nullptr ? options.clock : &RealClock();
  impl->logger = options.logger != nullptr ? options.logger : &DiscardLogger();
  impl->counters = std::make_unique<LoopCounters[]>(options.threads);
  switch (options.backend) {
    case LoopBackend::kAuto:
      impl->backend =
          core_internal::IoUringAllowed() ? LoopBackend::kIoUring : LoopBackend::kEpoll;
      break;
    case LoopBackend::kIoUring:
      if (!core_internal::IoUringAllowed()) {
        return Status(Errc::kNotSupported, "io_uring refused by the kernel or a seccomp policy");
      }
      impl->backend = LoopBackend::kIoUring;
      break;
    case LoopBackend::kEpoll:
      impl->backend = LoopBackend::kEpoll;
      break;
  }

  sockaddr_storage addr{};
  const socklen_t len = listen.ToSockaddr(&addr);
  for (unsigned i = 0; i < options.threads; ++i) {
    // epoll accepts until EAGAIN, so its listeners must not block; io_uring
    // arms a poll itself and wants them blocking.
    const int nonblock = impl->backend == LoopBackend::kEpoll ? SOCK_NONBLOCK : 0;
    const int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | nonblock, 0);
    if (fd < 0) return Status::FromErrno(errno, "socket");
    impl->listen_fds.push_back(fd);
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
      return Status::FromErrno(errno, "bind " + listen.ToString());
    }
    if (::listen(fd, options.listen_backlog) != 0) return Status::FromErrno(errno, "listen");
    if (i == 0) {
      // Port 0: the other workers bind the port the kernel chose.
      socklen_t l = sizeof addr;
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &l);
    }
    const int wfd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wfd < 0) return Status::FromErrno(errno, "eventfd");
    impl->wake_fds.push_back(wfd);
  }
  impl->address = Endpoint::FromSockaddr(addr);
  return std::unique_ptr<TcpServer>(new TcpServer(std::move(impl)));
}

Status TcpServer::Serve(unsigned index) {
  if (index >= impl_->options.threads) return InvalidArgument("no such worker");
  auto worker = impl_->backend == LoopBackend::kEpoll
                    ? core_internal::NewEpollWorker(*impl_, index)
                    : core_internal::NewIoUringWorker(*impl_, index);
  return worker->Run();
}

void TcpServer::Stop() {
  if (impl_->stopping.exchange(true, std::memory_order_acq_rel)) return;
  for (int fd : impl_->wake_fds) {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
  }
}

TcpServerStats TcpServer::worker_stats(unsigned index) const noexcept {
  TcpServerStats s;
  if (index >= impl_->options.threads) return s;
  const LoopCounters& c = impl_->counters[index];
  constexpr auto r = std::memory_order_relaxed;
  s.curr_connections = c.curr_connections.load(r);
  s.total_connections = c.total_connections.load(r);
  s.rejected_connections = c.rejected_connections.load(r);
  s.bytes_read = c.bytes_read.load(r);
  s.bytes_written = c.bytes_written.load(r);
  s.input_overflows = c.input_overflows.load(r);
  s.drain_forced_closes = c.drain_forced_closes.load(r);
  s.idle_closes = c.idle_closes.load(r);
  return s;
}

TcpServerStats TcpServer::stats() const noexcept {
  TcpServerStats sum;
  for (unsigned i = 0; i < impl_->options.threads; ++i) {
    const TcpServerStats s = worker_stats(i);
    sum.curr_connections += s.curr_connections;
    sum.total_connections += s.total_connections;
    sum.rejected_connections += s.rejected_connections;
    sum.bytes_read += s.bytes_read;
    sum.bytes_written += s.bytes_written;
    sum.input_overflows += s.input_overflows;
    sum.drain_forced_closes += s.drain_forced_closes;
    sum.idle_closes += s.idle_closes;
  }
  return sum;
}

void TcpServer::ResetStats() noexcept {
  // A racing Bump() on the worker may put back a few increments: the reset
  // is as exact as memcached's `stats reset`, not more.
  for (unsigned i = 0; i < impl_->options.threads; ++i) {
    LoopCounters& c = impl_->counters[i];
    c.total_connections.store(0, std::memory_order_relaxed);
    c.rejected_connections.store(0, std::memory_order_relaxed);
    c.bytes_read.store(0, std::memory_order_relaxed);
    c.bytes_written.store(0, std::memory_order_relaxed);
  }
}

namespace core_internal {

Conn* LoopWorker::Admit(int fd) {
  const TcpServerOptions& o = server_.options;
  if (stopping() ||
      server_.connections.load(std::memory_order_relaxed) >=
          static_cast<int64_t>(o.max_connections)) {
    Bump(counters_.rejected_connections);  // before the client can see the close
    if (!stopping() && !o.reject_message.empty()) {
      [[maybe_unused]] ssize_t n = ::send(fd, o.reject_message.data(), o.reject_message.size(),
                                          MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    ::close(fd);
    return nullptr;
  }
  if (o.tcp_nodelay) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  auto* c = new Conn;
  c->fd = fd;
  c->session = server_.factory->NewSession(index_);
  if (wake_queue_->fd < 0) wake_queue_->fd = wake_fd_;
  c->waker = std::make_shared<ConnWaker>(wake_queue_, c);
  c->session->Attach(c->waker);
  c->io = std::make_unique<ConnIo>(this, c);
  c->session->AttachIo(c->io.get());
  c->session->Start(c->out);  // the backend sends it when it arms the connection
  if (c->session->closing()) c->eof = true;
  c->last_activity = Now();
  conns_.push_back(c);
  server_.connections.fetch_add(1, std::memory_order_relaxed);
  counters_.curr_connections.fetch_add(1, std::memory_order_relaxed);
  Bump(counters_.total_connections);
  return c;
}

void LoopWorker::Feed(Conn& c) {
  if (c.dead) return;
  const size_t used = c.session->Process(c.in.readable(), c.out);
  c.in.Consume(used);
  if (c.session->closing()) c.eof = true;
  if (c.in.size() > server_.options.max_input) {
    // The session kept buffering without consuming: its own bounds should
    // have closed it first; the loop's bound is the last line of defence.
    Bump(counters_.input_overflows);
    c.eof = true;
    c.dead = true;
  }
}

bool ConnIo::Read(int fd, uint64_t offset, MutableByteView dst, int64_t* result) {
  return worker_->StartRead(*conn_, fd, offset, dst, result);
}

bool ConnIo::zero_copy() const noexcept { return worker_->zero_copy(); }

bool ConnIo::SendFile(Buffer& out, int fd, uint64_t offset, uint64_t length,
                      std::shared_ptr<const void> hold) {
  if (!worker_->zero_copy() || fd < 0) return false;
  if (length == 0) return true;
  conn_->out_files.push_back(
      {.at = out.size(), .fd = fd, .offset = offset, .length = length, .hold = std::move(hold)});
  conn_->queued_file_bytes += length;
  return true;
}

bool ConnIo::SendMemory(Buffer& out, ByteView bytes, std::shared_ptr<const void> hold) {
  if (!worker_->zero_copy()) return false;
  if (bytes.empty()) return true;
  conn_->out_files.push_back({.at = out.size(),
                              .length = bytes.size(),
                              .mem = bytes.data(),
                              .hold = std::move(hold)});
  conn_->queued_file_bytes += bytes.size();
  return true;
}

uint64_t ConnIo::queued_file_bytes() const noexcept { return conn_->queued_file_bytes; }

int ConnIo::socket_fd() const noexcept { return conn_->fd; }

void ConnWaker::Wake() noexcept {
  std::lock_guard lock(queue_->mu);
  if (conn_ == nullptr || queued) return;
  queued = true;
  queue_->woken.push_back(conn_);
  // Under the lock: the worker closes its connections (and the server its
  // eventfd) only after forgetting every waker under this lock.
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(queue_->fd, &one, sizeof one);
}

std::vector<Conn*> LoopWorker::TakeWoken() {
  std::vector<Conn*> woken;
  std::lock_guard lock(wake_queue_->mu);
  woken.swap(wake_queue_->woken);
  for (Conn* c : woken) c->waker->queued = false;
  return woken;
}

void LoopWorker::Close(Conn* c) {
  {
    std::lock_guard lock(wake_queue_->mu);
    c->waker->Forget();
    std::erase(wake_queue_->woken, c);
  }
  ::close(c->fd);
  if (c->pipe_r >= 0) ::close(c->pipe_r);
  if (c->pipe_w >= 0) ::close(c->pipe_w);
  auto it = std::find(conns_.begin(), conns_.end(), c);
  if (it != conns_.end()) {
    *it = conns_.back();
    conns_.pop_back();
  }
  server_.connections.fetch_sub(1, std::memory_order_relaxed);
  counters_.curr_connections.fetch_sub(1, std::memory_order_relaxed);
  delete c;
}

std::vector<Conn*> LoopWorker::IdleConnections() {
  std::vector<Conn*> idle;
  const auto timeout = server_.options.idle_timeout;
  if (timeout.count() <= 0) return idle;
  const MonoTime now = Now();
  if (now < next_idle_check_) return idle;
  next_idle_check_ = now + std::chrono::seconds(1);
  for (Conn* c : conns_) {
    if (c->dead || c->reaping || c->session->busy() || c->session->idle_exempt()) continue;
    if (now - c->last_activity >= timeout) idle.push_back(c);
  }
  Bump(counters_.idle_closes, idle.size());
  return idle;
}

void LoopWorker::CloseAll() {
  while (!conns_.empty()) {
    Conn* c = conns_.back();
    if (c->HasOutput() || !c->sending.empty() || !c->sending_files.empty()) {
      Bump(counters_.drain_forced_closes);
    }
    Close(c);
  }
}

}  // namespace core_internal
}  // namespace qcloud
