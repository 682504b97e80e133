#include "monitor/http_post.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>

#include <fmt/format.h>

namespace qcloud::monitor::detail {

namespace {

struct Socket {
  int fd = -1;
  Socket() = default;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() {
    if (fd >= 0) ::close(fd);
  }
};

Status Connect(const Endpoint& ep, std::chrono::milliseconds timeout, Socket& sock) {
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
  sock.fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int fd = sock.fd;
  if (fd < 0) return Status::FromErrno(errno, "socket");
  timeval tv{.tv_sec = static_cast<time_t>(timeout.count() / 1000),
             .tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) return Status::Ok();
  if (errno != EINTR) return Status::FromErrno(errno, "connect " + ep.ToString());
  // A signal cut the wait short; the connection goes on without us
  // (connect(2)): wait for it until the timeout, then take its outcome.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{.fd = fd, .events = POLLOUT, .revents = 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return Status::FromErrno(errno, "connect " + ep.ToString());
    if (r == 0) return Status::FromErrno(ETIMEDOUT, "connect " + ep.ToString());
    break;
  }
  int err = 0;
  socklen_t err_len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0) err = errno;
  if (err != 0) return Status::FromErrno(err, "connect " + ep.ToString());
  return Status::Ok();
}

Status SendAll(int fd, std::initializer_list<const std::string*> parts) {
  for (const std::string* part : parts) {
    size_t sent = 0;
    while (sent < part->size()) {
      const ssize_t n = ::send(fd, part->data() + sent, part->size() - sent, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return Status::FromErrno(errno, "send");
      sent += static_cast<size_t>(n);
    }
  }
  return Status::Ok();
}

std::string_view HeaderValue(std::string_view headers, std::string_view name) {
  size_t at = 0;
  while (at < headers.size()) {
    size_t end = headers.find("\r\n", at);
    if (end == std::string_view::npos) end = headers.size();
    std::string_view line = headers.substr(at, end - at);
    at = end + 2;
    const size_t colon = line.find(':');
    if (colon != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < colon && same; ++i) {
      same = std::tolower(static_cast<unsigned char>(line[i])) == std::tolower(static_cast<unsigned char>(name[i]));
    }
    if (!same) continue;
    std::string_view v = line.substr(colon + 1);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    return v;
  }
  return {};
}

}  // namespace

// One HTTP/1.1 POST on a fresh connection; the response's status code.
Result<int> HttpPost(const Endpoint& ep, const std::string& path, const std::string& headers, const std::string& body,
                     std::chrono::milliseconds timeout) {
  Socket sock;
  QCLOUD_RETURN_IF_ERROR(Connect(ep, timeout, sock));
  const int fd = sock.fd;
  const std::string head = fmt::format(
      "POST {} HTTP/1.1\r\nHost: {}\r\n{}User-Agent: qcloud-monitor\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
      path, ep.ToString(), headers, body.size());
  QCLOUD_RETURN_IF_ERROR(SendAll(fd, {&head, &body}));
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

Result<HttpReply> ParseHttpReply(std::string_view raw, size_t max_body_bytes) {
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string_view::npos) return Status(Errc::kProtocolError, "an HTTP answer without the end of its headers");
  int status = 0;
  if (raw.size() < 12 || !raw.starts_with("HTTP/1.") || raw[8] != ' ') {
    return Status(Errc::kProtocolError, "not an HTTP answer");
  }
  auto [p, ec] = std::from_chars(raw.data() + 9, raw.data() + 12, status);
  if (ec != std::errc() || p != raw.data() + 12 || status < 100 || status > 599) {
    return Status(Errc::kProtocolError, "an HTTP answer without a status code");
  }
  const std::string_view headers = raw.substr(0, end + 2);
  HttpReply r;
  r.status = status;
  r.content_type = std::string(HeaderValue(headers, "Content-Type"));
  std::string_view body = raw.substr(end + 4);
  if (const std::string_view cl = HeaderValue(headers, "Content-Length"); !cl.empty()) {
    size_t n = 0;
    auto [q, e] = std::from_chars(cl.data(), cl.data() + cl.size(), n);
    if (e != std::errc() || q != cl.data() + cl.size()) return Status(Errc::kProtocolError, "a bad Content-Length");
    if (n > body.size()) return Status(Errc::kProtocolError, fmt::format("the answer ended {} bytes short", n - body.size()));
    body = body.substr(0, n);
  }
  if (!HeaderValue(headers, "Transfer-Encoding").empty()) {
    return Status(Errc::kProtocolError, "a chunked answer to an HTTP/1.0 request");
  }
  if (body.size() > max_body_bytes) {
    return Status(Errc::kTooLarge, fmt::format("the body is over {} bytes", max_body_bytes));
  }
  r.body = std::string(body);
  return r;
}

Result<HttpReply> HttpGet(const Endpoint& ep, const std::string& path, const std::string& headers,
                          std::chrono::milliseconds timeout, size_t max_body_bytes) {
  Socket sock;
  QCLOUD_RETURN_IF_ERROR(Connect(ep, timeout, sock));
  const std::string head =
      fmt::format("GET {} HTTP/1.0\r\nHost: {}\r\n{}User-Agent: qcloud-monitor\r\n\r\n", path, ep.ToString(), headers);
  QCLOUD_RETURN_IF_ERROR(SendAll(sock.fd, {&head}));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string raw;
  char buf[64 * 1024];
  for (;;) {
    if (std::chrono::steady_clock::now() > deadline) return Status(Errc::kTimedOut, "GET " + path + ": timed out");
    const ssize_t n = ::recv(sock.fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno(errno, "GET " + path);
    if (n == 0) break;
    raw.append(buf, static_cast<size_t>(n));
    if (raw.size() > max_body_bytes + 64 * 1024) {
      return Status(Errc::kTooLarge, fmt::format("GET {}: the answer is over {} bytes", path, max_body_bytes));
    }
  }
  return ParseHttpReply(raw, max_body_bytes);
}


}  // namespace qcloud::monitor::detail
