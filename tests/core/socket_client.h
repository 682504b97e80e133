#pragma once

// A blocking loopback TCP client on plain sockets, for the connection-loop
// tests (core's tests do not use Boost). Every read has a timeout so a
// broken server fails the test instead of hanging it.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <string_view>

#include "qcloud/core/endpoint.h"

namespace qcloud::test {

class SocketClient {
 public:
  explicit SocketClient(const Endpoint& ep, int rcvbuf = 0) {
    sockaddr_storage addr{};
    const socklen_t len = ep.ToSockaddr(&addr);
    fd_ = ::socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), len) == 0;
  }
  ~SocketClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  SocketClient(const SocketClient&) = delete;
  SocketClient& operator=(const SocketClient&) = delete;

  bool connected() const { return connected_; }
  bool Send(std::string_view data) {
    while (!data.empty()) {
      const ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // Up to `n` bytes: fewer at EOF, an error or after `timeout_ms` of silence.
  std::string Read(size_t n, int timeout_ms = 5000) {
    std::string out;
    char buf[65536];
    while (out.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) break;
      const ssize_t r = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
      if (r <= 0) {
        eof_ = true;
        break;
      }
      out.append(buf, static_cast<size_t>(r));
    }
    return out;
  }
  // True when the server closed the connection within the timeout.
  bool ClosedByPeer(int timeout_ms = 5000) {
    if (eof_) return true;
    Read(SIZE_MAX, timeout_ms);
    return eof_;
  }
  void ShutdownWrite() { ::shutdown(fd_, SHUT_WR); }

 private:
  int fd_ = -1;
  bool connected_ = false;
  bool eof_ = false;
};

}  // namespace qcloud::test
