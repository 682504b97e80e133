// TcpServer's epoll backend: the fallback where io_uring is refused.
// Level-triggered, non-blocking sockets. A readable connection gets one
// receive per loop turn (so one busy client cannot starve the others), its
// input goes to the session, and the replies are sent at once; what the
// socket does not take waits for EPOLLOUT. Interest follows state: EPOLLIN
// while the session wants input, EPOLLOUT while replies wait.

#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/tcp_loop.h"

namespace qcloud::core_internal {

namespace {

constexpr int kRefillsPerTurn = 4;

constexpr int kMaxEvents = 256;
constexpr int kDrainPollMs = 100;
// Connections taken from the backlog per listener event, so a connection
// storm does not starve the established connections.
constexpr int kAcceptBurst = 64;

class EpollWorker final : public LoopWorker {
 public:
  using LoopWorker::LoopWorker;

  ~EpollWorker() override {
    if (epfd_ >= 0) ::close(epfd_);
  }

  Status Run() override {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) return Status::FromErrno(errno, "epoll_create1");
    // The listener and the wake eventfd are told apart from connections by
    // their addresses: &listen_tag_ and &wake_tag_.
    if (!Add(listen_fd_, EPOLLIN, &listen_tag_) || !Add(wake_fd_, EPOLLIN, &wake_tag_)) {
      return Status::FromErrno(errno, "epoll_ctl");
    }
    Status result;
    bool draining = false;
    MonoTime deadline{};
    epoll_event events[kMaxEvents];
    while (true) {
      if (stopping() && !draining) {
        draining = true;
        deadline = Now() + server_.options.drain_timeout;
        ::epoll_ctl(epfd_, EPOLL_CTL_DEL, listen_fd_, nullptr);
        ::shutdown(listen_fd_, SHUT_RDWR);
        for (size_t i = conns_.size(); i-- > 0;) {
          conns_[i]->eof = true;
          Update(*conns_[i]);
        }
        Reap();
      }
      if (draining && conns_.empty()) break;
      if (draining && Now() >= deadline) break;
      const bool idle_checks = server_.options.idle_timeout.count() > 0;
      const int wait_ms = !file_done_.empty() ? 0 : draining ? kDrainPollMs : idle_checks ? 1000 : -1;
      const int n = ::epoll_wait(epfd_, events, kMaxEvents, wait_ms);
      if (n < 0) {
        if (errno == EINTR) continue;
        result = Status::FromErrno(errno, "epoll_wait");
        break;
      }
      for (int i = 0; i < n; ++i) {
        void* tag = events[i].data.ptr;
        if (tag == &listen_tag_) {
          AcceptSome();
        } else if (tag == &wake_tag_) {
          // A stop (noticed above) or sessions woken from other threads.
          uint64_t v;
          [[maybe_unused]] ssize_t r = ::read(wake_fd_, &v, sizeof v);
          for (Conn* w : TakeWoken()) {
            if (w->reaping) continue;
            Feed(*w);
            Update(*w);
          }
        } else {
          OnEvents(*static_cast<Conn*>(tag), events[i].events);
        }
      }
      // File reads done in the turn (SessionIo): their sessions go on.
      // Reads those sessions start now are seen next turn.
      std::vector<Conn*> done;
      done.swap(file_done_);
      for (Conn* c : done) {
        c->file_armed = false;
        *c->file_result = c->file_done;
        if (c->reaping) continue;
        Feed(*c);
        Update(*c);
      }
      for (Conn* c : IdleConnections()) {
        c->dead = true;
        Update(*c);
      }
      Reap();
    }
    file_done_.clear();
    CloseAll();
    return result;
  }

 private:
  bool Add(int fd, uint32_t events, void* tag) {
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = tag;
    return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
  }

  void AcceptSome() {
    for (int i = 0; i < kAcceptBurst; ++i) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && !stopping()) {
          // EMFILE and friends: the connection waits in the backlog.
          server_.Log(LogLevel::kWarning, fmt::format("accept: {}", std::strerror(errno)));
        }
        return;
      }
      Conn* c = Admit(fd);
      if (c == nullptr) continue;
      c->epoll_events = EPOLLIN;
      if (!Add(fd, EPOLLIN, c)) {
        c->dead = true;
        c->reaping = true;
        to_close_.push_back(c);
      } else if (!c->out.empty() || c->eof) {
        Update(*c);  // what the session's Start() made goes out now
      }
    }
  }

  // No io_uring here: the read is done now, and the session sees its result
  // after this loop turn's events (never inside its own Process()).
  bool StartRead(Conn& c, int fd, uint64_t offset, MutableByteView dst,
                 int64_t* result) override {
    if (c.file_armed) return false;
    size_t got = 0;
    int64_t r = 0;
    while (got < dst.size()) {
      const ssize_t n = ::pread(fd, dst.data() + got, dst.size() - got,
                                static_cast<off_t>(offset + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        r = -errno;
        break;
      }
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    // Handed to the session only after this turn's events, as a completion.
    c.file_done = r < 0 ? r : static_cast<int64_t>(got);
    c.file_result = result;
    c.file_armed = true;
    file_done_.push_back(&c);
    return true;
  }

  void OnEvents(Conn& c, uint32_t events) {
    if (c.reaping) return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
      if (WantsInput(c)) Receive(c);
      if (events & EPOLLERR) c.dead = true;
    }
    Update(c);
  }

  void Receive(Conn& c) {
    size_t want = ReceiveSize(c);
    auto space = ReceiveRoom(c, want);
    const ssize_t n = ::recv(c.fd, space.data(), want, 0);
    if (n > 0) {
      c.last_activity = Now();
      c.in.Commit(static_cast<size_t>(n));
      Bump(counters_.bytes_read, static_cast<uint64_t>(n));
      Feed(c);
    } else if (n == 0) {
      c.eof = true;
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      c.eof = true;
      c.dead = true;
    }
  }

  // Sends what is queued, then sets the interest (or closes) from the state.
  void Update(Conn& c) {
    if (!c.dead && c.out.empty() && c.session->producing()) {
      Feed(c);  // a streamed reply goes on once its last piece is out
      if (c.out.empty()) c.dead = true;  // a producing session that makes nothing: give up
    }
    // A streamed reply is refilled a few times per turn, not until the
    // socket is full: other connections of this worker get their turn.
    int refills = 0;
    while (!c.dead && !c.out.empty()) {
      const ssize_t n = ::send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.last_activity = Now();
        Bump(counters_.bytes_written, static_cast<uint64_t>(n));
        c.out.Consume(static_cast<size_t>(n));
        const bool room = c.out.empty() || !c.session->blocked(c.out);
        if (room && (!c.session->producing() || ++refills <= kRefillsPerTurn)) Feed(c);  // take more input
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else {
        c.dead = true;
      }
    }
    if (c.file_armed) return;  // its read's result is handled later this turn
    if (c.dead || (c.eof && c.out.empty() && !c.session->busy())) {
      if (!c.reaping) to_close_.push_back(&c);
      c.reaping = true;
      return;
    }
    uint32_t want = 0;
    if (WantsInput(c)) {
      want |= EPOLLIN;
      c.in.ShrinkIfIdle(KeepInput(c));
    }
    if (!c.out.empty() || c.session->producing()) want |= EPOLLOUT;
    if (want != c.epoll_events) {
      epoll_event ev{};
      ev.events = want;
      ev.data.ptr = &c;
      ::epoll_ctl(epfd_, EPOLL_CTL_MOD, c.fd, &ev);
      c.epoll_events = want;
    }
  }

  void Reap() {
    for (Conn* c : to_close_) Close(c);  // close(2) also leaves the epoll set
    to_close_.clear();
  }

  int epfd_ = -1;
  char listen_tag_ = 0;
  char wake_tag_ = 0;
  std::vector<Conn*> to_close_;
  std::vector<Conn*> file_done_;  // connections whose read (StartRead) awaits its session
};

}  // namespace

std::unique_ptr<LoopWorker> NewEpollWorker(TcpServer::Impl& server, unsigned index) {
  return std::make_unique<EpollWorker>(server, index);
}

}  // namespace qcloud::core_internal
