#pragma once

// Private: what TcpServer's two backends share. Invariants:
//   - a Conn belongs to one worker thread; only that thread touches it;
//   - a Conn's fd is closed exactly once, when no kernel operation on its
//     buffers is in flight (io_uring) — then the Conn is deleted;
//   - Impl::connections counts open connections across workers and is what
//     max_connections is checked against; each worker's LoopCounters has
//     one writer (its thread) and any number of readers.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/io_backend.h"
#include "qcloud/core/bytes.h"
#include "qcloud/core/tcp_server.h"

namespace qcloud::core_internal {

struct alignas(64) LoopCounters {
  std::atomic<int64_t> curr_connections{0};
  std::atomic<uint64_t> total_connections{0};
  std::atomic<uint64_t> rejected_connections{0};
  std::atomic<uint64_t> bytes_read{0};
  std::atomic<uint64_t> bytes_written{0};
  std::atomic<uint64_t> input_overflows{0};
  std::atomic<uint64_t> drain_forced_closes{0};
  std::atomic<uint64_t> idle_closes{0};
};

// One writer: a plain load+store is enough and avoids a locked add.
inline void Bump(std::atomic<uint64_t>& c, uint64_t n = 1) noexcept {
  c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

struct Conn;

// A worker's queue of connections woken from other threads (SessionWaker),
// signalled through the worker's eventfd. `mu` also orders a Wake() against
// the connection's close: a waker whose connection closed does nothing.
struct WakeQueue {
  std::mutex mu;
  std::vector<Conn*> woken;
  int fd = -1;  // the worker's eventfd
};

class ConnWaker final : public SessionWaker {
 public:
  ConnWaker(std::shared_ptr<WakeQueue> queue, Conn* conn) : queue_(std::move(queue)), conn_(conn) {}
  void Wake() noexcept override;
  // Under queue->mu, by the worker: the connection is closing.
  void Forget() noexcept { conn_ = nullptr; }
  bool queued = false;  // under queue->mu

 private:
  std::shared_ptr<WakeQueue> queue_;
  Conn* conn_;  // null once closed; under queue->mu
};

class LoopWorker;

// A connection's SessionIo: the worker's backend starts the reads.
class ConnIo final : public SessionIo {
 public:
  ConnIo(LoopWorker* worker, Conn* conn) noexcept : worker_(worker), conn_(conn) {}
  bool Read(int fd, uint64_t offset, MutableByteView dst, int64_t* result) override;
  bool SendFile(Buffer& out, int fd, uint64_t offset, uint64_t length,
                std::shared_ptr<const void> hold) override;
  bool SendMemory(Buffer& out, ByteView bytes, std::shared_ptr<const void> hold) override;
  bool zero_copy() const noexcept override;
  uint64_t queued_file_bytes() const noexcept override;
  int socket_fd() const noexcept override;

 private:
  LoopWorker* worker_;
  Conn* conn_;
};

// Bytes of a file (SessionIo::SendFile) or of memory outside the output
// buffer (SessionIo::SendMemory, `mem` set) queued for the socket, after
// the first `at` bytes of the buffer they were queued with.
struct FileSegment {
  size_t at = 0;
  int fd = -1;
  uint64_t offset = 0;
  uint64_t length = 0;  // left to hand to the kernel
  const std::byte* mem = nullptr;  // SendMemory: the next byte to send
  std::shared_ptr<const void> hold;
};

struct Conn {
  int fd = -1;
  std::shared_ptr<ConnWaker> waker;
  std::unique_ptr<ConnIo> io;
  MonoTime last_activity{};  // the last byte received or sent (idle_timeout)
  std::unique_ptr<StreamSession> session;
  Buffer in;
  Buffer out;
  Buffer sending;           // io_uring: the buffer the kernel is sending from
  // Zero-copy output (io_uring): file segments queued with `out`, and those
  // of `sending` (their `at` counts from the start of `sending` at the swap;
  // `sent` is how much of it has gone since); the pipe they go through.
  std::vector<FileSegment> out_files, sending_files;
  size_t sending_files_head = 0;  // the first of sending_files not yet done
  size_t sent = 0;
  uint64_t queued_file_bytes = 0;  // in out_files and sending_files
  int pipe_r = -1, pipe_w = -1;
  size_t pipe_bytes = 0;    // spliced into the pipe, not yet into the socket
  size_t pipe_cap = 0;      // the pipe's capacity
  size_t zero_bytes = 0;    // to send as zeros (a segment past end of file)
  enum class Sending : uint8_t { kBytes, kPipe, kZeros, kMemory } send_kind = Sending::kBytes;
  bool HasOutput() const noexcept { return !out.empty() || !out_files.empty(); }
  size_t in_keep = 0;       // the longest message input_needed() announced, plus a receive
  bool recv_armed = false;  // io_uring: a receive is in flight
  bool recv_cancel = false; // io_uring: ... and a wake asked to cancel it
  bool send_armed = false;  // io_uring: a send is in flight
  bool file_armed = false;  // a SessionIo read is in flight (io_uring) or its result unseen
  int64_t* file_result = nullptr;  // where that read's result goes
  int64_t file_done = 0;           // epoll: the result, until it is handed over
  bool eof = false;         // no more input: peer finished, session closing, or stop
  bool dead = false;        // closing: waiting for in-flight operations, then close
  bool reaping = false;     // queued for the close at the end of the loop turn
  uint32_t epoll_events = 0;  // epoll: the interest registered now
};

}  // namespace qcloud::core_internal

namespace qcloud {

struct TcpServer::Impl {
  SessionFactory* factory = nullptr;
  TcpServerOptions options;
  Clock* clock = nullptr;
  Logger* logger = nullptr;
  Endpoint address;
  LoopBackend backend = LoopBackend::kIoUring;
  std::vector<int> listen_fds;
  std::vector<int> wake_fds;
  std::unique_ptr<core_internal::LoopCounters[]> counters;
  std::atomic<bool> stopping{false};
  std::atomic<int64_t> connections{0};

  ~Impl();
  void Log(LogLevel level, const std::string& line) const {
    if (logger->Enabled(level)) logger->Log(level, line);
  }
};

}  // namespace qcloud

namespace qcloud::core_internal {

// Base of both backends' workers: admission, the session step and closing.
class LoopWorker {
 public:
  LoopWorker(TcpServer::Impl& server, unsigned index)
      : server_(server),
        index_(index),
        counters_(server.counters[index]),
        listen_fd_(server.listen_fds[index]),
        wake_fd_(server.wake_fds[index]) {}
  virtual ~LoopWorker() = default;
  virtual Status Run() = 0;
  // SessionIo::Read for connection `c` (see ConnIo): false while one is in flight.
  virtual bool StartRead(Conn& c, int fd, uint64_t offset, MutableByteView dst,
                         int64_t* result) = 0;
  // SessionIo::SendFile: whether this backend does it.
  virtual bool zero_copy() const noexcept { return false; }

 protected:
  // A freshly accepted socket: refused (reject message, close) over the
  // connection limit or at the stop, else a new Conn in conns_.
  Conn* Admit(int fd);
  // Offers the buffered input to the session; marks eof when the session is
  // closing or the input outgrew max_input.
  void Feed(Conn& c);
  bool WantsInput(const Conn& c) const { return !c.eof && !c.dead && !c.session->blocked(c.out); }
  // Bytes to ask of the next receive: read_buffer, less what is already
  // pending, so a session that bounds its line length sees the same chunks
  // as from a read(2) loop; at least 4 KiB so a long value still arrives in
  // big steps.
  size_t ReceiveSize(const Conn& c) const {
    const size_t rb = server_.options.read_buffer;
    const size_t pending = c.in.size();
    return rb > pending + 4096 ? rb - pending : rb;
  }
  // The input buffer's room for the next receive of `want` bytes. When the
  // session waits for the rest of a message whose size it knows
  // (StreamSession::input_needed()), the room holds all of it, so a long
  // message is received in one piece where it started (the part already
  // here moves to the front once, while it is short), and the receive
  // stops at the message's end: the buffer is then empty and the next
  // message starts at its front, with nothing to move. The buffer keeps
  // that capacity between messages (KeepInput()).
  MutableByteView ReceiveRoom(Conn& c, size_t& want) const {
    const size_t need = c.session->input_needed();
    const size_t pending = c.in.size();
    if (need > pending && need <= server_.options.max_input) {
      c.in_keep = std::max(c.in_keep, need + want);
      // The last receive of a message takes up to half a receive more
      // rather than leave a sliver of it for a receive of its own.
      const size_t rest = need - pending;
      if (rest <= want + want / 2) want = rest;
      return c.in.Prepare(rest);
    }
    return c.in.Prepare(want);
  }
  // Input capacity an empty buffer keeps: four receives, or what the
  // longest message announced plus a receive made it grow to (twice that,
  // as it grows by doubling), up to 16 MiB: not freed and grown again (new
  // pages, a copy) for every message of a client that sends long ones.
  size_t KeepInput(const Conn& c) const {
    constexpr size_t kKeepLimit = size_t{16} << 20;
    return std::max(server_.options.read_buffer * 4, std::min(2 * c.in_keep, kKeepLimit));
  }
  // Closes the fd, forgets the Conn. No operation may be in flight on it.
  void Close(Conn* c);
  // The connections woken since the last call (their wakes consumed).
  std::vector<Conn*> TakeWoken();
  // At the drain deadline: closes every connection still open.
  void CloseAll();
  // Connections idle past idle_timeout (none when it is 0), at most once a
  // second; the backend closes them its own way.
  std::vector<Conn*> IdleConnections();
  MonoTime Now() const { return server_.clock->MonotonicNow(); }
  bool stopping() const { return server_.stopping.load(std::memory_order_acquire); }

  TcpServer::Impl& server_;
  const unsigned index_;
  LoopCounters& counters_;
  const int listen_fd_;
  const int wake_fd_;
  std::shared_ptr<WakeQueue> wake_queue_ = std::make_shared<WakeQueue>();
  MonoTime next_idle_check_{};
  std::vector<Conn*> conns_;
};

std::unique_ptr<LoopWorker> NewIoUringWorker(TcpServer::Impl& server, unsigned index);
std::unique_ptr<LoopWorker> NewEpollWorker(TcpServer::Impl& server, unsigned index);

}  // namespace qcloud::core_internal
