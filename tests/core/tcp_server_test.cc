// The connection loop under every qcloud byte-stream server, with both
// backends: serving, the connection limit, slow readers, input bounds, the
// stop and its drain deadline, and the epoll fallback under a seccomp
// filter that refuses io_uring as Docker's default profile does.

#include <doctest/doctest.h>
#include <stddef.h>

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <chrono>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/tcp_loop.h"
#include "qcloud/core/clock.h"
#include "qcloud/core/tcp_server.h"
#include "qcloud/testing/doctest_helpers.h"
#include "seccomp.h"
#include "socket_client.h"

namespace qcloud {
namespace {

using namespace std::chrono_literals;

constexpr size_t kHighWater = 64 * 1024;

// Lines in, lines out: "big N" answers N bytes of 'x' and a newline,
// "quit" closes, anything else is echoed.
class LineSession final : public StreamSession {
 public:
  explicit LineSession(std::atomic<int>& commands) : commands_(commands) {}
  size_t Process(ByteView in, Buffer& out) override {
    size_t used = 0;
    std::string_view text = in.AsStringView();
    while (!closing_ && !blocked(out)) {
      const size_t nl = text.find('\n', used);
      if (nl == std::string_view::npos) break;
      const std::string_view line = text.substr(used, nl - used);
      used = nl + 1;
      commands_++;
      if (line == "quit") {
        closing_ = true;
      } else if (line.starts_with("big ")) {
        const std::string big(std::stoul(std::string(line.substr(4))), 'x');
        out.Append(std::string_view(big));
        out.Append(std::string_view("\n"));
      } else {
        out.Append(line);
        out.Append(std::string_view("\n"));
      }
    }
    return used;
  }
  bool closing() const noexcept override { return closing_; }
  bool blocked(const Buffer& out) const noexcept override { return out.size() >= kHighWater; }

 private:
  std::atomic<int>& commands_;
  bool closing_ = false;
};

struct Lines final : SessionFactory {
  std::unique_ptr<StreamSession> NewSession(unsigned) override {
    return std::make_unique<LineSession>(commands);
  }
  std::atomic<int> commands{0};
};

// A server with its workers on threads; Stop() and join at the end.
struct Running {
  Running(Lines& lines, TcpServerOptions o) {
    server = REQUIRE_VALUE(TcpServer::Open(lines, o));
    for (unsigned i = 0; i < server->threads(); ++i) {
      results.push_back(std::async(std::launch::async, [this, i] { return server->Serve(i); }));
    }
  }
  // Stops and returns the first worker failure.
  Status Finish() {
    server->Stop();
    Status first;
    for (auto& r : results) {
      Status s = r.get();
      if (first.ok() && !s.ok()) first = s;
    }
    results.clear();
    return first;
  }
  ~Running() {
    if (!results.empty()) (void)Finish();
  }
  std::unique_ptr<TcpServer> server;
  std::vector<std::future<Status>> results;
};

// Runs `body` once per backend this host allows (io_uring may be refused).
template <typename F>
void ForEachBackend(F body) {
  for (LoopBackend b : {LoopBackend::kIoUring, LoopBackend::kEpoll}) {
    if (b == LoopBackend::kIoUring && !core_internal::IoUringAllowed()) {
      MESSAGE("io_uring refused on this host: testing epoll only");
      continue;
    }
    INFO("backend ", LoopBackendName(b));
    body(b);
  }
}

// Waits (bounded) until `pred` holds; the loop's work is on other threads.
template <typename P>
bool Eventually(P pred) {
  for (int i = 0; i < 500; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(10ms);
  }
  return pred();
}

TEST_CASE("tcp server: every worker serves and counts with each backend") {
  ForEachBackend([](LoopBackend backend) {
    Lines lines;
    Running r(lines, {.threads = 2, .backend = backend});
    // (20 connections over 2 SO_REUSEPORT listeners: all on one, p = 2^-19.)
    CHECK(r.server->backend() == backend);
    CHECK(r.server->address().port != 0);
    for (int i = 0; i < 20; ++i) {
      test::SocketClient c(r.server->address());
      REQUIRE(c.connected());
      const std::string msg = "hello " + std::to_string(i) + "\n";
      REQUIRE(c.Send(msg));
      CHECK(c.Read(msg.size()) == msg);
      REQUIRE(c.Send("quit\n"));
      CHECK(c.ClosedByPeer());
    }
    CHECK(Eventually([&] { return r.server->stats().curr_connections == 0; }));
    const TcpServerStats s = r.server->stats();
    CHECK(s.total_connections == 20);
    CHECK(s.bytes_read > 20 * 12);
    CHECK(s.bytes_written > 20 * 8);
    CHECK(r.server->worker_stats(0).total_connections > 0);
    CHECK(r.server->worker_stats(1).total_connections > 0);
    CHECK_OK(r.Finish());
  });
}

TEST_CASE("tcp server: over the connection limit a client gets the reject message") {
  ForEachBackend([](LoopBackend backend) {
    Lines lines;
    Running r(lines, {.max_connections = 2, .reject_message = "BUSY\r\n", .backend = backend});
    test::SocketClient a(r.server->address()), b(r.server->address());
    for (auto* c : {&a, &b}) {
      REQUIRE(c->Send("ping\n"));
      CHECK(c->Read(5) == "ping\n");
    }
    test::SocketClient refused(r.server->address());
    CHECK(refused.Read(6) == "BUSY\r\n");
    CHECK(refused.ClosedByPeer());
    CHECK(Eventually([&] { return r.server->stats().rejected_connections == 1; }));
    // The admitted ones are untouched, and a freed slot is reused.
    REQUIRE(a.Send("quit\n"));
    CHECK(a.ClosedByPeer());
    CHECK(Eventually([&] { return r.server->stats().curr_connections == 1; }));
    test::SocketClient later(r.server->address());
    REQUIRE(later.Send("again\n"));
    CHECK(later.Read(6) == "again\n");
    REQUIRE(b.Send("still\n"));
    CHECK(b.Read(6) == "still\n");
  });
}

TEST_CASE("tcp server: a reader that does not read is paused and loses nothing") {
  ForEachBackend([](LoopBackend backend) {
    Lines lines;
    Running r(lines, {.backend = backend});
    constexpr int kBig = 64;
    constexpr size_t kEach = 1 << 20;
    test::SocketClient slow(r.server->address(), 64 * 1024);
    std::string cmds;
    for (int i = 0; i < kBig; ++i) cmds += "big " + std::to_string(kEach) + "\n";
    REQUIRE(slow.Send(cmds));  // 64 MiB of replies asked for, none read yet
    // Another client is served meanwhile.
    test::SocketClient good(r.server->address());
    for (int i = 0; i < 50; ++i) {
      REQUIRE(good.Send("round trip\n"));
      REQUIRE(good.Read(11) == "round trip\n");
    }
    // The slow client's session was paused: far from all its commands ran.
    CHECK(lines.commands.load() < 50 + kBig / 2);
    // Reading everything now gets every byte, in order.
    const std::string all = slow.Read(kBig * (kEach + 1));
    CHECK(all.size() == kBig * (kEach + 1));
    CHECK(all.find_first_not_of("x\n") == std::string::npos);
  });
}

TEST_CASE("tcp server: input beyond max_input closes that connection only") {
  ForEachBackend([](LoopBackend backend) {
    Lines lines;
    Running r(lines, {.read_buffer = 4096, .max_input = 64 * 1024, .backend = backend});
    test::SocketClient other(r.server->address());
    test::SocketClient flood(r.server->address());
    const std::string no_newline(256 * 1024, 'a');
    (void)flood.Send(no_newline);  // may fail half way once the server closes
    CHECK(flood.ClosedByPeer());
    CHECK(r.server->stats().input_overflows == 1);
    REQUIRE(other.Send("fine\n"));
    CHECK(other.Read(5) == "fine\n");
  });
}

TEST_CASE("tcp server: stop sends the replies already made, then returns") {
  ForEachBackend([](LoopBackend backend) {
    Lines lines;
    Running r(lines, {.backend = backend});
    test::SocketClient c(r.server->address(), 64 * 1024);
    REQUIRE(c.Send("big 2000000\n"));
    REQUIRE(Eventually([&] { return lines.commands.load() == 1; }));
    r.server->Stop();
    const std::string got = c.Read(2000001);
    CHECK(got.size() == 2000001);
    CHECK(c.ClosedByPeer());
    CHECK_OK(r.Finish());
    CHECK(r.server->stats().drain_forced_closes == 0);
    // New connections are refused once the stop began.
    test::SocketClient late(r.server->address());
    CHECK((!late.connected() || late.ClosedByPeer()));
  });
}

TEST_CASE("tcp server: the drain deadline closes a client that never reads") {
  ForEachBackend([](LoopBackend backend) {
    ManualClock clock;
    Lines lines;
    Running r(lines, {.drain_timeout = 1000ms, .backend = backend, .clock = &clock});
    test::SocketClient c(r.server->address(), 64 * 1024);
    REQUIRE(c.Send("big 8000000\n"));
    REQUIRE(Eventually([&] { return lines.commands.load() == 1; }));
    r.server->Stop();
    std::this_thread::sleep_for(50ms);
    CHECK(r.results[0].wait_for(0ms) == std::future_status::timeout);  // still draining
    clock.Advance(1001ms);
    CHECK(r.results[0].wait_for(5s) == std::future_status::ready);
    CHECK_OK(r.Finish());
    CHECK(r.server->stats().drain_forced_closes == 1);
    CHECK(r.server->stats().curr_connections == 0);
  });
}

// "later X" answers "X done" from another thread, 20 ms later, through the
// SessionWaker; the answers keep their order, and a wake after the client
// has gone does nothing.
struct Deferred {
  std::mutex mu;
  std::vector<std::string> done;
};

class LaterSession final : public StreamSession {
 public:
  explicit LaterSession(std::vector<std::thread>& threads, std::mutex& threads_mu)
      : threads_(threads), threads_mu_(threads_mu) {}
  void Attach(std::shared_ptr<SessionWaker> waker) override { waker_ = std::move(waker); }
  size_t Process(ByteView in, Buffer& out) override {
    {
      std::lock_guard lock(deferred_->mu);
      for (const std::string& d : deferred_->done) out.Append(std::string_view(d + "\n"));
      pending_ -= static_cast<int>(deferred_->done.size());
      deferred_->done.clear();
    }
    size_t used = 0;
    std::string_view text = in.AsStringView();
    for (size_t nl; pending_ == 0 && (nl = text.find('\n', used)) != std::string_view::npos;) {
      const std::string word(text.substr(used + 6, nl - used - 6));  // after "later "
      used = nl + 1;
      ++pending_;
      std::lock_guard lock(threads_mu_);
      threads_.emplace_back([d = deferred_, w = waker_, word] {
        std::this_thread::sleep_for(20ms);
        {
          std::lock_guard lock2(d->mu);
          d->done.push_back(word + " done");
        }
        w->Wake();
        w->Wake();  // folds into one
      });
    }
    return used;
  }
  bool closing() const noexcept override { return false; }
  bool blocked(const Buffer&) const noexcept override { return pending_ > 0; }

 private:
  std::vector<std::thread>& threads_;
  std::mutex& threads_mu_;
  std::shared_ptr<SessionWaker> waker_;
  std::shared_ptr<Deferred> deferred_ = std::make_shared<Deferred>();
  int pending_ = 0;
};

TEST_CASE("tcp server: a session resumes when another thread wakes it") {
  ForEachBackend([](LoopBackend backend) {
    struct Factory final : SessionFactory {
      std::unique_ptr<StreamSession> NewSession(unsigned) override {
        return std::make_unique<LaterSession>(threads, mu);
      }
      std::vector<std::thread> threads;
      std::mutex mu;
    } factory;
    auto server = REQUIRE_VALUE(TcpServer::Open(factory, {.threads = 1, .backend = backend}));
    auto worker = std::async(std::launch::async, [&] { return server->Serve(0); });
    {
      test::SocketClient c(server->address());
      REQUIRE(c.connected());
      REQUIRE(c.Send("later a\nlater b\nlater c\n"));
      CHECK(c.Read(21) == "a done\nb done\nc done\n");
      REQUIRE(c.Send("later gone\n"));
    }  // the client leaves before its answer: the wake must do nothing
    std::this_thread::sleep_for(60ms);
    test::SocketClient c2(server->address());
    REQUIRE(c2.connected());
    REQUIRE(c2.Send("later z\n"));
    CHECK(c2.Read(7) == "z done\n");
    server->Stop();
    CHECK_OK(worker.get());
    std::lock_guard lock(factory.mu);
    for (auto& t : factory.threads) t.join();
  });
}

// "file OFF LEN" reads LEN bytes at OFF of the factory's file, "pipe LEN"
// LEN bytes of its pipe, through the loop (SessionIo), and answers the bytes
// (or "error N"); anything else is echoed. Requests wait behind a read.
class FileSession final : public StreamSession {
 public:
  FileSession(int file_fd, int pipe_fd) : file_fd_(file_fd), pipe_fd_(pipe_fd) {}
  void AttachIo(SessionIo* io) override { io_ = io; }
  size_t Process(ByteView in, Buffer& out) override {
    if (reading_ && result_ != kPending) {
      reading_ = false;
      const std::string reply =
          result_ < 0 ? "error " + std::to_string(-result_) : buf_.substr(0, static_cast<size_t>(result_));
      out.Append(std::string_view(reply + "\n"));
    }
    size_t used = 0;
    std::string_view text = in.AsStringView();
    for (size_t nl; !reading_ && (nl = text.find('\n', used)) != std::string_view::npos;) {
      const std::string line(text.substr(used, nl - used));
      used = nl + 1;
      unsigned long off = 0, len = 0;
      int fd = -1;
      if (std::sscanf(line.c_str(), "file %lu %lu", &off, &len) == 2) {
        fd = file_fd_;
      } else if (std::sscanf(line.c_str(), "pipe %lu", &len) == 1) {
        fd = pipe_fd_;
        off = ~0ul;  // a pipe has no offset: "the current position"
      } else {
        out.Append(std::string_view(line + "\n"));
        continue;
      }
      buf_.assign(len, '\0');
      result_ = kPending;
      reading_ = io_->Read(fd, off, MutableByteView(reinterpret_cast<std::byte*>(buf_.data()), len),
                           &result_);
      REQUIRE(reading_);
    }
    return used;
  }
  bool closing() const noexcept override { return false; }
  bool blocked(const Buffer&) const noexcept override { return reading_; }
  bool busy() const noexcept override { return reading_; }

 private:
  static constexpr int64_t kPending = INT64_MIN;
  SessionIo* io_ = nullptr;
  int file_fd_, pipe_fd_;
  bool reading_ = false;
  int64_t result_ = kPending;
  std::string buf_;
};

struct Files final : SessionFactory {
  std::unique_ptr<StreamSession> NewSession(unsigned) override {
    return std::make_unique<FileSession>(file_fd, pipe_fd);
  }
  int file_fd = -1;
  int pipe_fd = -1;
};

TEST_CASE("tcp server: a session reads a file through its worker's loop, in order") {
  char path[] = "/tmp/qcloud-tcp-file-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::unlink(path);
  REQUIRE(::pwrite(fd, "0123456789abcdef", 16, 0) == 16);
  ForEachBackend([&](LoopBackend backend) {
    Files files;
    files.file_fd = fd;
    files.pipe_fd = -1;
    auto server = REQUIRE_VALUE(TcpServer::Open(files, {.threads = 1, .backend = backend}));
    auto worker = std::async(std::launch::async, [&] { return server->Serve(0); });
    test::SocketClient c(server->address());
    REQUIRE(c.connected());
    // Pipelined: the echo waits for the read before it, the short read
    // stops at the end of the file, a bad descriptor is the read's error.
    REQUIRE(c.Send("file 2 5\necho\nfile 10 3\nfile 14 10\n"));
    const std::string want = "23456\necho\nabc\nef\n";
    CHECK(c.Read(want.size()) == want);
    files.file_fd = 1000000;  // new sessions read a descriptor that is not open
    test::SocketClient bad(server->address());
    REQUIRE(bad.Send("file 0 4\n"));
    CHECK(bad.Read(8) == "error 9\n");
    server->Stop();
    CHECK_OK(worker.get());
  });
  ::close(fd);
}

// "send OFF LEN" answers "<", LEN bytes of the factory's file at OFF
// (zeros past its end) and ">\n": zero-copy (SessionIo::SendFile) where the
// loop can, else copied. Each reply's hold is remembered, to see it go.
class SendFileSession final : public StreamSession {
 public:
  SendFileSession(int fd, const std::string* memory, std::vector<std::weak_ptr<const void>>& holds,
                  std::mutex& mu)
      : fd_(fd), memory_(memory), holds_(holds), mu_(mu) {}
  void AttachIo(SessionIo* io) override { io_ = io; }
  size_t Process(ByteView in, Buffer& out) override {
    size_t used = 0;
    std::string_view text = in.AsStringView();
    for (size_t nl; !blocked(out) && (nl = text.find('\n', used)) != std::string_view::npos;) {
      const std::string line(text.substr(used, nl - used));
      used = nl + 1;
      unsigned long off = 0, len = 0;
      const bool mem = std::sscanf(line.c_str(), "mem %lu %lu", &off, &len) == 2;
      if (!mem && std::sscanf(line.c_str(), "send %lu %lu", &off, &len) != 2) {
        out.Append(std::string_view(line + "\n"));
        continue;
      }
      out.Append(std::string_view("<"));
      auto hold = std::make_shared<int>(0);
      {
        std::lock_guard lock(mu_);
        holds_.push_back(hold);
      }
      if (mem) {
        // "mem OFF LEN": bytes of the in-memory copy, within it.
        const ByteView bytes(reinterpret_cast<const std::byte*>(memory_->data()) + off, len);
        if (!io_->SendMemory(out, bytes, hold)) {
          CHECK_FALSE(io_->zero_copy());
          out.Append(bytes);
        }
      } else if (!io_->SendFile(out, fd_, off, len, hold)) {
        CHECK_FALSE(io_->zero_copy());
        std::string bytes(len, '\0');
        const ssize_t n = ::pread(fd_, bytes.data(), len, static_cast<off_t>(off));
        REQUIRE(n >= 0);
        out.Append(std::string_view(bytes));
      }
      out.Append(std::string_view(">\n"));
    }
    return used;
  }
  bool closing() const noexcept override { return false; }
  bool blocked(const Buffer& out) const noexcept override {
    return out.size() + io_->queued_file_bytes() >= 4 * kHighWater;
  }

 private:
  SessionIo* io_ = nullptr;
  int fd_;
  const std::string* memory_;
  std::vector<std::weak_ptr<const void>>& holds_;
  std::mutex& mu_;
};

struct SendFiles final : SessionFactory {
  std::unique_ptr<StreamSession> NewSession(unsigned) override {
    return std::make_unique<SendFileSession>(fd, memory, holds, mu);
  }
  bool AllReleased() {
    std::lock_guard lock(mu);
    for (auto& h : holds) {
      if (!h.expired()) return false;
    }
    return true;
  }
  int fd = -1;
  const std::string* memory = nullptr;  // the file's bytes, for "mem"
  std::mutex mu;
  std::vector<std::weak_ptr<const void>> holds;
};

// An unlinked temporary file of 3 MiB + 5 bytes of a pattern no two
// nearby offsets share, and the same bytes in memory.
struct PatternFile {
  int fd = -1;
  std::string bytes;
  explicit PatternFile(uint64_t mul) : bytes(3 * 1024 * 1024 + 5, '\0') {
    char path[] = "/tmp/qcloud-tcp-pattern-XXXXXX";
    fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    ::unlink(path);
    for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * mul + i / 4093) & 0xff);
    REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), 0) == static_cast<ssize_t>(bytes.size()));
  }
  ~PatternFile() { ::close(fd); }
};

// A client that leaves with `requests`' replies still queued: their holds
// go with the connection, and the worker serves on (`probe` answers `want`).
void LeaveQueuedThenServe(TcpServer& server, SendFiles& files, const std::string& requests,
                          const std::string& probe, const std::string& want) {
  {
    test::SocketClient gone(server.address());
    REQUIRE(gone.Send(requests));
  }
  CHECK(Eventually([&] { return files.AllReleased(); }));
  test::SocketClient after(server.address());
  REQUIRE(after.Send(probe));
  CHECK(after.Read(want.size()) == want);
}

TEST_CASE("tcp server: file bytes sent without a copy arrive in order and exact") {
  const PatternFile pattern(7919);
  const int fd = pattern.fd;
  const std::string& file = pattern.bytes;
  auto expect = [&](uint64_t off, uint64_t len) {
    std::string got = off < file.size() ? file.substr(off, len) : "";
    got.resize(len, '\0');  // zeros past the end
    return "<" + got + ">\n";
  };
  ForEachBackend([&](LoopBackend backend) {
    SendFiles files;
    files.fd = fd;
    files.memory = &file;
    auto server = REQUIRE_VALUE(TcpServer::Open(files, {.threads = 1, .backend = backend}));
    auto worker = std::async(std::launch::async, [&] { return server->Serve(0); });
    test::SocketClient c(server->address());
    REQUIRE(c.connected());
    // Pipelined: small and large (several pipe loads) segments, one across
    // the end of the file, one wholly past it, plain bytes in between.
    const std::vector<std::pair<uint64_t, uint64_t>> reqs = {
        {0, 10}, {4095, 2}, {1000, 2621440}, {file.size() - 3, 4099}, {file.size() + 100, 70000}, {7, 1}};
    std::string send, want;
    for (auto [off, len] : reqs) {
      send += "send " + std::to_string(off) + " " + std::to_string(len) + "\necho\n";
      want += expect(off, len) + "echo\n";
    }
    REQUIRE(c.Send(send));
    const std::string got = c.Read(want.size());
    CHECK(got.size() == want.size());
    CHECK(got == want);
    CHECK(Eventually([&] { return files.AllReleased(); }));

    // Many short segments in one go: more pieces than the pipe has slots
    // (each takes one), so it fills up between a reply's bytes and its data.
    send.clear();
    want.clear();
    for (uint64_t i = 0; i < 1500; ++i) {
      const uint64_t off = i * 1031 % file.size(), len = 1 + i % 13;
      send += "send " + std::to_string(off) + " " + std::to_string(len) + "\n";
      want += expect(off, len);
    }
    REQUIRE(c.Send(send));
    CHECK(c.Read(want.size()) == want);
    CHECK(Eventually([&] { return files.AllReleased(); }));

    LeaveQueuedThenServe(*server, files, "send 0 3000000\nsend 0 3000000\nsend 0 3000000\n", "send 5 3\n",
                         expect(5, 3));
    server->Stop();
    CHECK_OK(worker.get());
  });
}

TEST_CASE("tcp server: memory sent by reference arrives in order and exact between file bytes and plain bytes") {
  const PatternFile pattern(104729);
  const int fd = pattern.fd;
  const std::string& file = pattern.bytes;
  auto expect = [&](uint64_t off, uint64_t len) { return "<" + file.substr(off, len) + ">\n"; };
  ForEachBackend([&](LoopBackend backend) {
    SendFiles files;
    files.fd = fd;
    files.memory = &file;
    auto server = REQUIRE_VALUE(TcpServer::Open(files, {.threads = 1, .backend = backend}));
    auto worker = std::async(std::launch::async, [&] { return server->Serve(0); });
    test::SocketClient c(server->address());
    REQUIRE(c.connected());
    // Memory pieces of every size (the 3 MiB ones take several sends, the
    // socket being full), file pieces and plain bytes between them.
    std::string send, want;
    for (uint64_t i = 0; i < 400; ++i) {
      const uint64_t off = i * 7877 % (file.size() / 2);
      const uint64_t len = i % 50 == 0 ? file.size() - off : 1 + i * 131 % 70000;
      send += (i % 3 == 1 ? "send " : "mem ") + std::to_string(off) + " " + std::to_string(len) + "\n";
      want += expect(off, len);
      if (i % 7 == 0) {
        send += "echo\n";
        want += "echo\n";
      }
    }
    REQUIRE(c.Send(send));
    const std::string got = c.Read(want.size());
    CHECK(got.size() == want.size());
    CHECK(got == want);
    CHECK(Eventually([&] { return files.AllReleased(); }));

    LeaveQueuedThenServe(*server, files, "mem 0 3000000\nmem 5 3000000\nsend 0 3000000\nmem 1 3000000\n",
                         "mem 5 3\n", expect(5, 3));
    server->Stop();
    CHECK_OK(worker.get());
  });
}

TEST_CASE("tcp server: while one connection's read waits, the worker serves the others") {
  if (!core_internal::IoUringAllowed()) return;  // epoll reads at once: nothing to wait for
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  Files files;
  files.pipe_fd = pipe_fds[0];
  auto server = REQUIRE_VALUE(TcpServer::Open(files, {.threads = 1, .backend = LoopBackend::kIoUring}));
  auto worker = std::async(std::launch::async, [&] { return server->Serve(0); });
  test::SocketClient waiting(server->address());
  test::SocketClient other(server->address());
  REQUIRE(waiting.Send("pipe 4\nafter\n"));
  REQUIRE(other.Send("hello\n"));
  CHECK(other.Read(6) == "hello\n");  // one worker, and its other connection waits on the pipe
  CHECK(waiting.Read(1, 100).empty());
  REQUIRE(::write(pipe_fds[1], "data", 4) == 4);
  CHECK(waiting.Read(11) == "data\nafter\n");
  {
    // A client that leaves while its read is in flight: the connection
    // closes only once the read is done.
    test::SocketClient gone(server->address());
    REQUIRE(gone.Send("pipe 3\n"));
    REQUIRE(other.Send("sync\n"));
    CHECK(other.Read(5) == "sync\n");
  }
  std::this_thread::sleep_for(20ms);
  REQUIRE(::write(pipe_fds[1], "xyz", 3) == 3);
  REQUIRE(other.Send("still\n"));
  CHECK(other.Read(6) == "still\n");
  CHECK(Eventually([&] { return server->stats().curr_connections == 2; }));
  server->Stop();
  CHECK_OK(worker.get());
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST_CASE("tcp server: a connection idle past idle_timeout is closed, a busy one is not") {
  ForEachBackend([](LoopBackend backend) {
    Lines lines;
    ManualClock clock;
    Running r(lines, {.threads = 1, .idle_timeout = 5s, .backend = backend, .clock = &clock});
    test::SocketClient idle(r.server->address());
    test::SocketClient active(r.server->address());
    REQUIRE(idle.connected());
    REQUIRE(active.connected());
    REQUIRE(active.Send("one\n"));
    CHECK(active.Read(4) == "one\n");
    clock.Advance(3s);
    REQUIRE(active.Send("two\n"));  // activity at t = 3 s
    CHECK(active.Read(4) == "two\n");
    clock.Advance(3s);               // t = 6 s: `idle` has been silent for 6 s, `active` for 3 s
    CHECK(idle.ClosedByPeer());      // within the loop's one-second check
    CHECK(Eventually([&] { return r.server->stats().idle_closes == 1; }));
    REQUIRE(active.Send("three\n"));
    CHECK(active.Read(6) == "three\n");
    CHECK_OK(r.Finish());
  });
}

// Speaks first: a greeting from Start(), then input echoed back.
class GreetingSession final : public StreamSession {
 public:
  GreetingSession(bool close_after, bool exempt) : close_after_(close_after), exempt_(exempt) {}
  void Start(Buffer& out) override {
    out.Append(std::string_view("hello\n"));
    closing_ = close_after_;
  }
  size_t Process(ByteView in, Buffer& out) override {
    out.Append(in);
    return in.size();
  }
  bool closing() const noexcept override { return closing_; }
  bool blocked(const Buffer& out) const noexcept override { return out.size() >= kHighWater; }
  bool idle_exempt() const noexcept override { return exempt_; }

 private:
  bool close_after_;
  bool exempt_;
  bool closing_ = false;
};

struct Greetings final : SessionFactory {
  std::unique_ptr<StreamSession> NewSession(unsigned) override {
    return std::make_unique<GreetingSession>(close_after.load(), exempt.load());
  }
  std::atomic<bool> close_after{false};
  std::atomic<bool> exempt{true};
};

TEST_CASE("tcp server: a session that speaks first greets before any input") {
  ForEachBackend([](LoopBackend backend) {
    Greetings greetings;
    ManualClock clock;
    auto server = REQUIRE_VALUE(TcpServer::Open(
        greetings, {.threads = 1, .idle_timeout = 5s, .backend = backend, .clock = &clock}));
    auto serving = std::async(std::launch::async, [&] { return server->Serve(0); });
    {
      test::SocketClient exempt(server->address());
      REQUIRE(exempt.connected());
      CHECK(exempt.Read(6) == "hello\n");  // before the client sent anything
      REQUIRE(exempt.Send("ping\n"));
      CHECK(exempt.Read(5) == "ping\n");
      greetings.exempt = false;  // the next session is an ordinary one
      test::SocketClient plain(server->address());
      REQUIRE(plain.connected());
      CHECK(plain.Read(6) == "hello\n");
      // The worker may note the greeting's send after the first Advance (an
      // io_uring completion reaped late): then the next one makes it idle.
      bool closed = false;
      for (int i = 0; i < 3 && !closed; ++i) {
        clock.Advance(10s);
        closed = plain.ClosedByPeer(2000);
      }
      CHECK(closed);  // the idle check ran...
      CHECK(server->stats().idle_closes == 1);
      REQUIRE(exempt.Send("pong\n"));  // ...and spared the idle_exempt() one
      CHECK(exempt.Read(5) == "pong\n");
    }
    greetings.close_after = true;
    {
      test::SocketClient c(server->address());
      REQUIRE(c.connected());
      CHECK(c.Read(6) == "hello\n");
      CHECK(c.ClosedByPeer());
    }
    server->Stop();
    CHECK_OK(serving.get());
  });
}

// Length-prefixed frames (4 bytes big-endian, then the bytes); each is
// answered with its length and checksum on a line. It tells the loop the
// size of a frame it waits for (input_needed()) and checks that no receive
// went past it.
class FrameSession final : public StreamSession {
 public:
  explicit FrameSession(std::atomic<int>& overruns) : overruns_(overruns) {}
  size_t Process(ByteView in, Buffer& out) override {
    if (needed_ != 0 && in.size() > needed_) overruns_++;
    needed_ = 0;
    size_t used = 0;
    while (in.size() - used >= 4) {
      const std::byte* p = in.data() + used;
      const size_t n = (size_t{std::to_integer<uint8_t>(p[0])} << 24) |
                       (size_t{std::to_integer<uint8_t>(p[1])} << 16) |
                       (size_t{std::to_integer<uint8_t>(p[2])} << 8) | std::to_integer<uint8_t>(p[3]);
      if (in.size() - used - 4 < n) {
        needed_ = 4 + n;
        break;
      }
      uint32_t sum = 2166136261u;
      for (size_t i = 0; i < n; ++i) sum = (sum ^ std::to_integer<uint8_t>(p[4 + i])) * 16777619u;
      out.Append(std::string_view(std::to_string(n) + " " + std::to_string(sum) + "\n"));
      used += 4 + n;
    }
    return used;
  }
  size_t input_needed() const noexcept override { return needed_; }
  bool closing() const noexcept override { return false; }
  bool blocked(const Buffer&) const noexcept override { return false; }

 private:
  std::atomic<int>& overruns_;
  size_t needed_ = 0;
};

struct Frames final : SessionFactory {
  std::unique_ptr<StreamSession> NewSession(unsigned) override {
    return std::make_unique<FrameSession>(overruns);
  }
  std::atomic<int> overruns{0};
};

TEST_CASE("tcp server: a long message whose size the session announced arrives whole and alone") {
  ForEachBackend([](LoopBackend backend) {
    Frames frames;
    auto server = REQUIRE_VALUE(TcpServer::Open(frames, {.threads = 1, .read_buffer = 64 * 1024,
                                                         .backend = backend}));
    auto serving = std::async(std::launch::async, [&] { return server->Serve(0); });
    // Frames from 0 bytes to 1.5 MiB, sent back to back by one thread while
    // this one reads the answers.
    std::mt19937 rng(7);
    std::string wire, expect;
    for (int i = 0; i < 40; ++i) {
      const size_t n = i % 4 == 0 ? rng() % 100 : rng() % (3 << 19);
      std::string body(n, '\0');
      for (char& c : body) c = static_cast<char>(rng());
      uint32_t sum = 2166136261u;
      for (char c : body) sum = (sum ^ static_cast<uint8_t>(c)) * 16777619u;
      wire += static_cast<char>(n >> 24);
      wire += static_cast<char>(n >> 16);
      wire += static_cast<char>(n >> 8);
      wire += static_cast<char>(n);
      wire += body;
      expect += std::to_string(n) + " " + std::to_string(sum) + "\n";
    }
    test::SocketClient c(server->address());
    REQUIRE(c.connected());
    auto sending = std::async(std::launch::async, [&] { return c.Send(wire); });
    CHECK(c.Read(expect.size(), 20000) == expect);
    CHECK(sending.get());
    CHECK(frames.overruns == 0);
    server->Stop();
    CHECK_OK(serving.get());
  });
}

TEST_CASE("tcp server: options are checked") {
  Lines lines;
  CHECK_ERRC(TcpServer::Open(lines, {.threads = 0}), Errc::kInvalidArgument);
  CHECK_ERRC(TcpServer::Open(lines, {.listen = "localhost:1"}), Errc::kInvalidArgument);
  CHECK_ERRC(TcpServer::Open(lines, {.read_buffer = 10}), Errc::kInvalidArgument);
  CHECK_ERRC(TcpServer::Open(lines, {.max_connections = 0}), Errc::kInvalidArgument);
  Running r(lines, {});
  auto second = TcpServer::Open(lines, {.listen = r.server->address().ToString()});
  CHECK(second.ok());  // SO_REUSEPORT: a second server may join the port
  CHECK_ERRC(r.server->Serve(7), Errc::kInvalidArgument);
}

TEST_CASE("tcp server: falls back to epoll when seccomp refuses io_uring") {
  Lines lines;
  std::promise<Endpoint> bound;
  struct Outcome {
    bool filtered = false;
    bool uring_refused = false;
    LoopBackend chosen = LoopBackend::kAuto;
    bool forced_uring_unsupported = false;
    Status served;
  };
  std::unique_ptr<TcpServer> server;
  // The filter stays on this thread: the test process keeps io_uring.
  auto filtered = std::async(std::launch::async, [&] {
    Outcome o;
    o.filtered = test::RefuseIoUringInThisThread();
    o.uring_refused = !core_internal::IoUringAllowed();
    auto forced = TcpServer::Open(lines, {.backend = LoopBackend::kIoUring});
    o.forced_uring_unsupported = !forced.ok() && forced.status() == Errc::kNotSupported;
    auto s = TcpServer::Open(lines, {});
    if (!s.ok()) {
      bound.set_value(Endpoint{});
      o.served = s.status();
      return o;
    }
    server = std::move(*s);
    o.chosen = server->backend();
    bound.set_value(server->address());
    o.served = server->Serve(0);
    return o;
  });
  const Endpoint ep = bound.get_future().get();
  if (ep.port != 0) {
    test::SocketClient c(ep);
    CHECK(c.Send("under seccomp\n"));
    CHECK(c.Read(14) == "under seccomp\n");
    server->Stop();  // before any REQUIRE: the thread must not serve forever
  }
  Outcome o = filtered.get();
  REQUIRE(o.filtered);
  CHECK(o.uring_refused);
  CHECK(o.forced_uring_unsupported);
  CHECK(o.chosen == LoopBackend::kEpoll);
  CHECK_OK(o.served);
}

}  // namespace
}  // namespace qcloud
