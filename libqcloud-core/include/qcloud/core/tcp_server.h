#pragma once

// TcpServer: the connection loop under every qcloud server that speaks a
// byte-stream protocol (memcached, NBD, ...). The protocol is a socket-free
// state machine, a StreamSession; the loop owns sockets, buffers, limits and
// the stop, and is the same for every protocol.
//
//   struct Echo : StreamSession { ... };
//   struct Factory : SessionFactory {
//     std::unique_ptr<StreamSession> NewSession(unsigned) override { ... }
//   } factory;
//   auto server = TcpServer::Open(factory, {.listen = "127.0.0.1:0", .threads = 2}).value();
//   for (unsigned i = 0; i < server->threads(); ++i)
//     life->Spawn("worker", [&, i] { return server->Serve(i); });   // see lifecycle.h
//   ...
//   server->Stop();
//
// The server owns no threads: the caller runs Serve(i) for every worker
// index on a thread of its own. Each worker has its own SO_REUSEPORT
// listening socket (the kernel spreads connections), its own event loop and
// its own connections; workers share only the factory and the connection
// count.
//
// Backends. io_uring (default where the kernel allows it): every receive and
// send a loop turn produces goes to the kernel in one io_uring_enter, which
// also waits for the next completions, so N busy connections cost one system
// call a turn where epoll pays epoll_wait plus a read and a write per
// request. epoll: the fallback when io_uring_setup is refused (old kernel,
// kernel.io_uring_disabled, a seccomp policy such as Docker's default), or
// when asked for; level-triggered, non-blocking sockets.
//
// Per connection: received bytes accumulate in an input buffer that is
// offered to the session's Process(); what it consumes is dropped, its
// replies are sent in order, file ranges a session queued with
// SessionIo::SendFile among them (io_uring: spliced from the page cache,
// no copy in user space). A session may stream a long reply (see
// producing()): it is asked for more each time its output has been sent. A connection is not read while the session is
// blocked() (a client that does not read its replies costs bounded memory)
// and is closed when its unconsumed input exceeds max_input, after the
// session says closing() and its replies are out, when the peer closes, on
// a socket error, or at the stop. One connection's failure never touches
// another's.
//
// Stop: Stop() closes the listeners and stops reading; replies already
// produced are sent for up to drain_timeout (on the injected Clock); then
// the remaining connections are closed (counted in drain_forced_closes) and
// Serve() returns.
//
// Thread safety: Serve(i) once per worker index, on its own thread; Stop()
// and the statistics from any thread. The factory and sessions are called
// on the worker thread that owns the connection.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "qcloud/core/bytes.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/endpoint.h"
#include "qcloud/core/export.h"
#include "qcloud/core/log.h"
#include "qcloud/core/result.h"
#include "qcloud/core/status.h"

namespace qcloud {

// Resumes a session from another thread: after work the session handed off
// (a disk read, a durable commit) completes, or when it has something to
// send (a log stream), Wake() makes the connection's worker call the
// session's Process() again, on the worker's thread, as if input had
// arrived (io_uring: a receive in flight is cancelled first, so a session
// that still reads is woken too). Any thread, any number of times (wakes
// before the worker gets to them fold into one); after the connection
// closed it does nothing.
class SessionWaker {
 public:
  virtual ~SessionWaker() = default;
  virtual void Wake() noexcept = 0;
};

// File reads a session starts on its own worker's event loop instead of
// blocking the worker (a cache reading an item back from disk). io_uring:
// the read goes on the worker's ring with the sockets' receives and sends;
// epoll: it is a pread(2) done at once, and the session is resumed on the
// next loop turn. The worker serves its other connections meanwhile.
class SessionIo {
 public:
  virtual ~SessionIo() = default;
  // Starts reading dst.size() bytes at `offset` of `fd` into `dst`. When
  // the read has completed, on the worker's thread, *result holds the bytes
  // read (fewer only at end of file) or -errno, and the session's Process()
  // is called again as after SessionWaker::Wake(). At most one read per
  // connection at a time: false (nothing started) while one is in flight.
  // Until it sees the result, the session keeps `fd`, `dst` and `result`
  // valid and is busy() and blocked(); the connection is not closed under
  // the read.
  virtual bool Read(int fd, uint64_t offset, MutableByteView dst, int64_t* result) = 0;
  // Zero-copy output: queues `length` bytes of file `fd` from `offset`, to
  // be sent after the bytes `out` holds now and before any appended later.
  // The kernel moves them from the page cache to the socket (splice(2)
  // through a pipe): no copy in user space, none in the kernel on
  // loopback or a NIC with scatter-gather. Bytes past the end of the file
  // are sent as zeros. `hold` is kept until the bytes have been handed to
  // the kernel, or the connection closes: it is what keeps `fd` open and
  // its bytes what the session promised (the kernel keeps its own
  // references to the pages it took, so a file that is later rewritten in
  // place can change them: the caller punches a range out of the page
  // cache before reusing it for other data). A read error then closes the
  // connection: its peer was promised those bytes. False (nothing queued)
  // where the loop cannot (the epoll backend): the session copies them.
  virtual bool SendFile(Buffer& out, int fd, uint64_t offset, uint64_t length,
                        std::shared_ptr<const void> hold) {
    (void)out, (void)fd, (void)offset, (void)length, (void)hold;
    return false;
  }
  // Whether SendFile() works on this connection's loop.
  virtual bool zero_copy() const noexcept { return false; }
  // Output by reference: queues `bytes`, which live outside `out` (a file
  // mapped into memory), to be sent after the bytes `out` holds now and
  // before any appended later, without copying them into `out`: the
  // kernel copies them once, from where they are, into the socket. `hold`
  // keeps them valid and unchanged until they have been sent (or the
  // connection closes). Where the memory is a file mapping, the caller
  // checks that its pages are cached: a fault in the send would stall the
  // loop. False (nothing queued) where the loop cannot (the epoll backend):
  // the session copies them.
  virtual bool SendMemory(Buffer& out, ByteView bytes, std::shared_ptr<const void> hold) {
    (void)out, (void)bytes, (void)hold;
    return false;
  }
  // Bytes queued by SendFile() or SendMemory() and not yet handed to the
  // kernel: output like `out`'s, for a session's high-water mark.
  virtual uint64_t queued_file_bytes() const noexcept { return 0; }
  // The connection's socket, for what names connections by descriptor (as
  // memcached's logs do, "cfd=") or asks its peer's address. Not for I/O:
  // the loop owns it.
  virtual int socket_fd() const noexcept = 0;
};

// One connection's protocol state machine.
class StreamSession {
 public:
  virtual ~StreamSession() = default;
  // Called once by the loop before the first Process(): a session that
  // hands work to other threads keeps the waker to be resumed by them, and
  // one that reads files keeps `io` (valid for the connection's life).
  virtual void Attach(std::shared_ptr<SessionWaker> waker) { (void)waker; }
  virtual void AttachIo(SessionIo* io) { (void)io; }
  // Called once, after Attach()/AttachIo() and before the first Process():
  // a protocol in which the server speaks first (NBD's greeting, an SMTP
  // banner) appends those bytes to `out`; they are sent before any input
  // is awaited. A session may be closing() after it.
  virtual void Start(Buffer& out) { (void)out; }
  // Consumes complete requests from the front of `in` and appends their
  // replies to `out`; returns the bytes consumed (<= in.size()). The rest is
  // offered again with more bytes after it.
  virtual size_t Process(ByteView in, Buffer& out) = 0;
  // After a Process() that left a message incomplete: the bytes that
  // message takes from the front of the unconsumed input, when its header
  // told (an NBD write, a length-prefixed frame); 0 = unknown. The loop
  // then keeps room for all of it, so a long message is received in place
  // instead of being moved to the front of the buffer as it grows.
  virtual size_t input_needed() const noexcept { return 0; }
  // The connection closes once `out` has been sent.
  virtual bool closing() const noexcept = 0;
  // While true the connection is not read (e.g. `out` is over a high-water mark).
  virtual bool blocked(const Buffer& out) const noexcept = 0;
  // True while a reply is being streamed: more of it will be made when
  // `out` has been sent. The loop then calls Process() again (with whatever
  // input is pending, possibly none) each time `out` drains, and does not
  // close the connection at the peer's end of input until it is false. A
  // producing session must append something to `out` on every such call.
  virtual bool producing() const noexcept { return false; }
  // True while the session waits for work handed to another thread (see
  // SessionWaker): the connection is not closed at the peer's end of input
  // or at a stop until the answer is out (the drain deadline still closes
  // it). Such a session should be blocked() meanwhile.
  virtual bool busy() const noexcept { return false; }
  // True while the session may wait for its peer without a deadline (an
  // NBD connection past its handshake: a mounted device may stay silent
  // for hours): idle_timeout does not close the connection meanwhile, so
  // the timeout can bound a phase (a handshake) rather than the connection.
  virtual bool idle_exempt() const noexcept { return false; }
};

class SessionFactory {
 public:
  virtual ~SessionFactory() = default;
  // A session for a new connection accepted by worker `worker`; called on
  // that worker's thread.
  virtual std::unique_ptr<StreamSession> NewSession(unsigned worker) = 0;
};

enum class LoopBackend {
  kAuto,     // io_uring if the kernel allows it, else epoll
  kIoUring,  // io_uring or an error from Open()
  kEpoll,    // epoll even where io_uring works
};

QCLOUD_EXPORT const char* LoopBackendName(LoopBackend backend) noexcept;
// The inverse, for command lines: "auto", "io_uring" or "epoll";
// kInvalidArgument otherwise.
QCLOUD_EXPORT Result<LoopBackend> ParseLoopBackend(std::string_view name);

struct TcpServerOptions {
  std::string listen = "127.0.0.1:0";   // endpoint.h grammar; port 0 = pick a free port
  unsigned threads = 1;                 // workers (call Serve(i) for each), 1..256
  size_t max_connections = 4096;        // across workers; more are sent reject_message, closed
  std::string reject_message;           // bytes sent to a refused connection; "" = none
  size_t read_buffer = 16 * 1024;       // bytes asked of one receive (at least 1 KiB)
  size_t max_input = size_t{64} << 20;  // unconsumed input that closes a connection
  int listen_backlog = 1024;            // listen(2) backlog per worker socket
  std::chrono::milliseconds drain_timeout{1000};  // after Stop(): time to send pending replies
  // A connection with no input arriving and no output leaving for this long
  // is closed (unless its session is busy() or idle_exempt()): a client that opens sockets
  // and sends nothing, or a byte a minute, holds them only this long.
  // Checked about once a second, on the injected Clock; 0 = never.
  std::chrono::milliseconds idle_timeout{0};
  LoopBackend backend = LoopBackend::kAuto;       // see LoopBackend
  bool tcp_nodelay = true;              // request/response protocols want small replies out now
  // Drain deadline time source. Not owned; must outlive the server. Null = RealClock().
  Clock* clock = nullptr;
  // Accept and loop failures. Not owned; must outlive the server. Null = discard.
  Logger* logger = nullptr;
};

// Counters of one worker, or the sum over workers.
struct TcpServerStats {
  int64_t curr_connections = 0;
  uint64_t total_connections = 0;     // accepted and served
  uint64_t rejected_connections = 0;  // refused by max_connections
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t input_overflows = 0;       // closed for exceeding max_input
  uint64_t drain_forced_closes = 0;   // closed at the drain deadline with replies unsent
  uint64_t idle_closes = 0;           // closed by idle_timeout
};

class QCLOUD_EXPORT TcpServer {
 public:
  // Binds one listening socket per worker and picks the backend. `factory`
  // is not owned and must outlive the server. Errors: kInvalidArgument (bad
  // options or address), the socket/bind/listen failure (e.g. address in
  // use), kNotSupported when kIoUring was asked for and the kernel refuses it.
  static Result<std::unique_ptr<TcpServer>> Open(SessionFactory& factory,
                                                 const TcpServerOptions& options);
  ~TcpServer();
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

  // The bound address (the real port when 0 was asked).
  const Endpoint& address() const noexcept;
  unsigned threads() const noexcept;
  // kIoUring or kEpoll: what Open() chose.
  LoopBackend backend() const noexcept;
  // Worker `index`'s listening socket (-1 for a bad index), for what lists
  // sockets by descriptor (memcached's "stats conns"). Not for I/O.
  int listen_fd(unsigned index) const noexcept;

  // Runs worker `index` until Stop() and the drain end. Errors:
  // kInvalidArgument for a bad index; the event loop's setup or wait failure
  // (its connections are closed; the other workers go on).
  Status Serve(unsigned index);
  // Begins the stop of every worker. Idempotent; any thread.
  void Stop();

  TcpServerStats stats() const noexcept;
  TcpServerStats worker_stats(unsigned index) const noexcept;
  // Zeroes the totals (total/rejected connections, bytes); current
  // connections stay. For a protocol's "reset statistics" command.
  void ResetStats() noexcept;

  struct Impl;

 private:
  explicit TcpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace qcloud
