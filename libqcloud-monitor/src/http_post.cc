#include "monitor/http_post.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace qcloud::monitor::detail {

// One HTTP/1.1 POST on a fresh connection; the response's status code.
Result<int> HttpPost(const Endpoint& ep, const std::string& path, const std::string& headers, const std::string& body,
                     std::chrono::milliseconds timeout) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (ep.address.find(':') != std::string::npos) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(ep.port);
    if (inet_pton(AF_INET6, ep.address.c_str(), &a->sin6_addr) != 1) return InvalidArgument("bad address " + ep.address);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(ep.port);
    if (inet_pton(AF_INET, ep.address.c_str(), &a->sin_addr) != 1) return InvalidArgument("bad address " + ep.address);
    len = sizeof *a;
  }
  const int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno(errno, "socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{.tv_sec = static_cast<time_t>(timeout.count() / 1000),
             .tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Status::FromErrno(errno, "connect " + ep.ToString());
  }
  const std::string head = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}\r\n{}User-Agent: qcloud-monitor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
      path, ep.ToString(), headers, body.size());
  for (const std::string* part : {&head, &body}) {
    size_t sent = 0;
    while (sent < part->size()) {
      const ssize_t n = ::send(fd, part->data() + sent, part->size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::FromErrno(errno, "send");
      sent += static_cast<size_t>(n);
    }
  }
  // The status line is all we need: "HTTP/1.1 204 No Content".
  std::string reply;
  char buf[512];
  while (reply.find("\r\n") == std::string::npos && reply.size() < 4096) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return Status(Errc::kUnavailable, "no answer from " + ep.ToString());
    reply.append(buf, static_cast<size_t>(n));
  }
  int status = 0;
  if (reply.size() < 12 || !reply.starts_with("HTTP/1.") ||
      std::sscanf(reply.c_str() + 9, "%3d", &status) != 1) {
    return Status(Errc::kUnavailable, "not an HTTP answer from " + ep.ToString());
  }
  return status;
}


}  // namespace qcloud::monitor::detail
