// TcpServer's io_uring backend. Each connection has at most one receive and
// one send in flight; every completion that arrives in one io_uring_enter is
// handled, and the receives and sends it produced go to the kernel together
// with the next io_uring_enter, which also waits for the next completions.
//
// Zero-copy output (SessionIo::SendFile): `sending` goes out in pieces,
// its bytes up to the next file segment, then that segment: spliced from
// the file into the connection's pipe at once (page references, no copy;
// a read from disk if the pages are not cached), then from the pipe into
// the socket by an io_uring splice (the kernel runs it on its worker
// thread, which waits for room in the socket). One piece in flight at a
// time, as for plain sends.
//
// Connection lifecycle: accepted (multishot accept) -> receiving; each
// receive feeds the session, whose replies are queued in `out`; `out` is
// swapped into `sending` when no send is in flight, so a buffer is never
// touched by the kernel and by the session at once. A connection ends when
// the peer closes its side (after our replies are sent), on an error, when
// the session is closing, or at the stop; its fd is closed only when no
// operation is in flight.

#include <fcntl.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "core/tcp_loop.h"

namespace qcloud::core_internal {

namespace {

constexpr unsigned kSubmissionEntries = 1024;
constexpr unsigned kCompletionEntries = 8192;  // many connections' completions per wait
// While draining, how long one wait may block before the deadline is checked.
constexpr long kDrainPollNs = 100L * 1000 * 1000;
// At exit, how many waits for the completions of shut-down sockets.
constexpr int kExitDrainRounds = 50;
// The pipe of a connection's zero-copy output: asked as big as this.
constexpr int kPipeBytes = 1 << 20;

// user_data = Conn pointer | tag; Conn's alignment leaves the low bits free.
enum Tag : uintptr_t { kRecv = 0, kSend = 1, kAccept = 2, kWake = 3, kFile = 4, kCancel = 5 };
constexpr uintptr_t kTagMask = 7;
static_assert(alignof(Conn) > kTagMask, "tags live in the low bits of Conn pointers");

uint64_t Encode(Conn* c, Tag t) { return reinterpret_cast<uintptr_t>(c) | t; }

class IoUringWorker final : public LoopWorker {
 public:
  using LoopWorker::LoopWorker;

  ~IoUringWorker() override {
    if (ring_ready_) io_uring_queue_exit(&ring_);
  }

  Status Run() override {
    io_uring_params params{};
    params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE;
    params.cq_entries = kCompletionEntries;
    int rc = io_uring_queue_init_params(kSubmissionEntries, &ring_, &params);
    if (rc == -EINVAL) {  // kernels before 6.1: no DEFER_TASKRUN
      params = {};
      params.flags = IORING_SETUP_CQSIZE;
      params.cq_entries = kCompletionEntries;
      rc = io_uring_queue_init_params(kSubmissionEntries, &ring_, &params);
    }
    if (rc < 0) return Status::FromErrno(-rc, "io_uring_queue_init");
    ring_ready_ = true;
    // Zero-copy output needs IORING_OP_SPLICE (Linux 5.7); without it
    // sessions copy (SessionIo::SendFile says no).
    if (io_uring_probe* probe = io_uring_get_probe_ring(&ring_)) {
      splice_ = io_uring_opcode_supported(probe, IORING_OP_SPLICE) != 0;
      io_uring_free_probe(probe);
    }
    ArmAccept();
    ArmWake();
    Status result;
    bool draining = false;
    MonoTime deadline{};
    while (true) {
      if (stopping() && !draining) {
        draining = true;
        deadline = Now() + server_.options.drain_timeout;
        // New connections are refused by the kernel from now on.
        ::shutdown(listen_fd_, SHUT_RDWR);
        for (size_t i = conns_.size(); i-- > 0;) StopReading(*conns_[i]);
        Reap();
      }
      if (draining && conns_.empty()) break;
      if (draining && Now() >= deadline) break;
      // Waits are bounded while draining (the deadline) and when idle
      // connections are to be closed (about once a second).
      const bool idle_checks = server_.options.idle_timeout.count() > 0;
      __kernel_timespec ts = draining ? __kernel_timespec{0, kDrainPollNs} : __kernel_timespec{1, 0};
      io_uring_cqe* cqe = nullptr;
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, draining || idle_checks ? &ts : nullptr, nullptr);
      if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
        result = Status::FromErrno(-rc, "io_uring wait");
        break;
      }
      HandleCompletions();
      for (Conn* c : IdleConnections()) {
        c->dead = true;
        c->eof = true;
        if (c->recv_armed || c->send_armed) ::shutdown(c->fd, SHUT_RDWR);  // completes them
        Drive(*c);
      }
      Reap();
    }
    Shutdown();
    return result;
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

  void HandleCompletions() {
    unsigned head;
    unsigned seen = 0;
    io_uring_cqe* cqe;
    io_uring_for_each_cqe(&ring_, head, cqe) {
      ++seen;
      Handle(cqe->user_data, cqe->res, cqe->flags);
    }
    io_uring_cq_advance(&ring_, seen);
  }

  // Every socket is shut down so that its in-flight operations complete;
  // only then are buffers freed and fds closed.
  void Shutdown() {
    for (Conn* c : conns_) ::shutdown(c->fd, SHUT_RDWR);
    for (int round = 0; round < kExitDrainRounds && Armed(); ++round) {
      __kernel_timespec ts{0, 10 * 1000 * 1000};
      io_uring_cqe* cqe = nullptr;
      if (io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr) < 0 && !Armed()) break;
      HandleCompletions();
    }
    io_uring_queue_exit(&ring_);
    ring_ready_ = false;
    CloseAll();
  }

  bool StartRead(Conn& c, int fd, uint64_t offset, MutableByteView dst,
                 int64_t* result) override {
    if (c.file_armed) return false;
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_read(sqe, fd, dst.data(), static_cast<unsigned>(dst.size()), offset);
    io_uring_sqe_set_data64(sqe, Encode(&c, kFile));
    c.file_armed = true;
    c.file_result = result;
    return true;
  }

  bool Armed() const {
    for (const Conn* c : conns_) {
      if (c->recv_armed || c->send_armed || c->file_armed) return true;
    }
    return false;
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
    size_t want = ReceiveSize(c);
    auto space = ReceiveRoom(c, want);
    io_uring_sqe* sqe = Sqe();
    io_uring_prep_recv(sqe, c.fd, space.data(), want, 0);
    io_uring_sqe_set_data64(sqe, Encode(&c, kRecv));
    c.recv_armed = true;
  }

  bool zero_copy() const noexcept override { return splice_; }

  // Starts sending the next piece of `sending` (see the top); false when
  // all of it is out, or on a failure (then the connection is dead).
  bool ArmSend(Conn& c) {
    io_uring_sqe* sqe;
    for (;;) {
      if (c.pipe_bytes > 0) {
        sqe = Sqe();
        io_uring_prep_splice(sqe, c.pipe_r, -1, c.fd, -1, static_cast<unsigned>(c.pipe_bytes), 0);
        c.send_kind = Conn::Sending::kPipe;
        break;
      }
      if (c.zero_bytes > 0) {
        static constexpr std::byte kZeros[64 * 1024] = {};
        sqe = Sqe();
        io_uring_prep_send(sqe, c.fd, kZeros, std::min(c.zero_bytes, sizeof kZeros), MSG_NOSIGNAL);
        c.send_kind = Conn::Sending::kZeros;
        break;
      }
      FileSegment* seg = c.sending_files_head < c.sending_files.size()
                             ? &c.sending_files[c.sending_files_head]
                             : nullptr;
      const size_t bytes = seg != nullptr ? seg->at - c.sent : c.sending.size();
      if (bytes > 0) {
        sqe = Sqe();
        io_uring_prep_send(sqe, c.fd, c.sending.data(), bytes, MSG_NOSIGNAL);
        c.send_kind = Conn::Sending::kBytes;
        break;
      }
      if (seg == nullptr) return false;
      if (seg->length == 0) {
        seg->hold.reset();  // handed to the kernel: the session's promise is kept
        ++c.sending_files_head;
        continue;
      }
      if (seg->mem != nullptr) {
        sqe = Sqe();
        io_uring_prep_send(sqe, c.fd, seg->mem, static_cast<size_t>(std::min<uint64_t>(seg->length, 1U << 30)),
                           MSG_NOSIGNAL);
        c.send_kind = Conn::Sending::kMemory;
        break;
      }
      if (!FillPipe(c, *seg)) {
        c.dead = true;
        c.eof = true;
        return false;
      }
    }
    io_uring_sqe_set_data64(sqe, Encode(&c, kSend));
    c.send_armed = true;
    return true;
  }

  // Splices the next part of `seg` into the (empty) pipe, or notes the
  // zeros past the end of its file.
  bool FillPipe(Conn& c, FileSegment& seg) {
    if (c.pipe_r < 0) {
      int p[2];
      if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
        server_.Log(LogLevel::kWarning, fmt::format("pipe: {}", std::strerror(errno)));
        return false;
      }
      c.pipe_r = p[0];
      c.pipe_w = p[1];
      // As big as allowed (fs.pipe-max-size, 1 MiB by default): a 1 MiB
      // read goes through in one splice pair.
      const int cap = ::fcntl(c.pipe_w, F_SETPIPE_SZ, kPipeBytes);
      c.pipe_cap = static_cast<size_t>(cap > 0 ? cap : ::fcntl(c.pipe_w, F_GETPIPE_SZ));
    }
    for (;;) {
      auto off = static_cast<loff_t>(seg.offset);
      const size_t want = static_cast<size_t>(std::min<uint64_t>(seg.length, c.pipe_cap));
      const ssize_t n = ::splice(seg.fd, &off, c.pipe_w, nullptr, want, SPLICE_F_NONBLOCK);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        server_.Log(LogLevel::kWarning, fmt::format("splice from a file: {}", std::strerror(errno)));
        return false;
      }
      const auto got = static_cast<size_t>(n);
      if (got == 0) {
        c.zero_bytes = static_cast<size_t>(seg.length);  // past the end of the file
      } else {
        c.pipe_bytes = got;
      }
      c.queued_file_bytes -= got == 0 ? seg.length : got;
      seg.offset += got;
      seg.length = got == 0 ? 0 : seg.length - got;
      return true;
    }
  }

  void Handle(uint64_t data, int res, unsigned flags) {
    const Tag tag = static_cast<Tag>(data & kTagMask);
    Conn* c = reinterpret_cast<Conn*>(data & ~uint64_t{kTagMask});
    switch (tag) {
      case kAccept:
        OnAccept(res);
        if ((flags & IORING_CQE_F_MORE) == 0 && !stopping()) ArmAccept();
        return;
      case kWake:
        // A stop (Run() notices it) or sessions woken from other threads.
        for (Conn* w : TakeWoken()) {
          if (w->dead || w->reaping) continue;
          if (w->recv_armed) {
            // Never under an armed receive (the kernel is writing into
            // `in`): it is cancelled, and its completion feeds the session.
            if (!w->recv_cancel) {
              io_uring_sqe* sqe = Sqe();
              io_uring_prep_cancel64(sqe, Encode(w, kRecv), 0);
              io_uring_sqe_set_data64(sqe, Encode(nullptr, kCancel));
              w->recv_cancel = true;
            }
            continue;
          }
          Feed(*w);
          Drive(*w);
        }
        ArmWake();
        return;
      case kFile:
        // A session's file read (SessionIo): it resumes as after a wake.
        c->file_armed = false;
        *c->file_result = res;
        if (!c->dead && !c->reaping && !c->recv_armed) Feed(*c);
        Drive(*c);
        return;
      case kCancel:
        return;  // the cancelled receive completes on its own
      case kRecv:
        c->recv_armed = false;
        if (res == -ECANCELED && c->recv_cancel) {  // cancelled by a wake: not an error
          c->recv_cancel = false;
          Feed(*c);
          Drive(*c);
          return;
        }
        c->recv_cancel = false;
        if (res > 0) {
          c->last_activity = Now();
          c->in.Commit(static_cast<size_t>(res));
          Bump(counters_.bytes_read, static_cast<uint64_t>(res));
          Feed(*c);
        } else if (res != -EINTR && res != -EAGAIN) {
          // 0: the peer finished sending; replies still go out, then close.
          c->eof = true;
          if (res < 0) c->dead = true;
        }
        Drive(*c);
        return;
      case kSend:
        c->send_armed = false;
        if (res < 0) {
          c->dead = true;
          c->eof = true;
        } else {
          const auto n = static_cast<size_t>(res);
          Bump(counters_.bytes_written, n);
          if (n > 0) c->last_activity = Now();
          switch (c->send_kind) {
            case Conn::Sending::kBytes:
              c->sending.Consume(n);
              c->sent += n;
              break;
            case Conn::Sending::kPipe:
              c->pipe_bytes -= std::min(n, c->pipe_bytes);
              if (n == 0) c->dead = c->eof = true;  // the socket took nothing: gone
              break;
            case Conn::Sending::kZeros:
              c->zero_bytes -= std::min(n, c->zero_bytes);
              break;
            case Conn::Sending::kMemory: {
              FileSegment& seg = c->sending_files[c->sending_files_head];
              const size_t took = std::min<uint64_t>(n, seg.length);
              seg.mem += took;
              seg.length -= took;
              c->queued_file_bytes -= took;
              if (n == 0) c->dead = c->eof = true;  // the socket took nothing: gone
              break;
            }
          }
          if (!c->dead && ArmSend(*c)) return;
          if (!c->dead) {
            c->sending_files.clear();
            c->sending_files_head = 0;
            c->sent = 0;
            // Room in the output again: a blocked session may take more input.
            Feed(*c);
          }
        }
        Drive(*c);
        return;
    }
  }

  void OnAccept(int fd) {
    if (fd < 0) {
      if (fd != -ECANCELED && fd != -EINVAL && !stopping()) {
        server_.Log(LogLevel::kWarning, fmt::format("accept: {}", std::strerror(-fd)));
      }
      return;
    }
    if (Conn* c = Admit(fd)) Drive(*c);  // sends what Start() made, arms the receive
  }

  // Starts a send if none is in flight, and decides whether to read more or
  // to close.
  void Drive(Conn& c) {
    if (!c.send_armed && !c.HasOutput() && !c.dead && c.session->producing()) {
      Feed(c);  // a streamed reply goes on once its last piece is out
      if (!c.HasOutput()) c.dead = true;  // a producing session that makes nothing: give up
    }
    if (!c.send_armed && c.HasOutput() && !c.dead) {
      std::swap(c.out, c.sending);
      c.sending_files.swap(c.out_files);
      c.out_files.clear();
      c.sending_files_head = 0;
      c.sent = 0;
      ArmSend(c);
    }
    if (c.dead || (c.eof && !c.send_armed && !c.session->busy())) {
      c.dead = true;
      if (!c.recv_armed && !c.send_armed && !c.file_armed) {
        if (!c.reaping) to_close_.push_back(&c);
        c.reaping = true;
      } else if (c.recv_armed) {
        ::shutdown(c.fd, SHUT_RDWR);  // completes the pending receive
      }
      return;
    }
    if (!c.recv_armed && WantsInput(c)) {
      c.in.ShrinkIfIdle(KeepInput(c));
      c.out.ShrinkIfIdle(server_.options.read_buffer * 4);
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
    for (Conn* c : to_close_) Close(c);
    to_close_.clear();
  }

  io_uring ring_{};
  bool ring_ready_ = false;
  bool splice_ = false;  // the kernel has IORING_OP_SPLICE: zero-copy output
  uint64_t wake_value_ = 0;
  std::vector<Conn*> to_close_;
};

}  // namespace

std::unique_ptr<LoopWorker> NewIoUringWorker(TcpServer::Impl& server, unsigned index) {
  return std::make_unique<IoUringWorker>(server, index);
}

}  // namespace qcloud::core_internal
