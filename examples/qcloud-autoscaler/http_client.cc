#include "http_client.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace qcloud::examples {

Result<HttpUrl> ParseHttpUrl(std::string_view url) {
  if (!url.starts_with("http://")) return InvalidArgument(fmt::format("\"{}\": only http:// URLs", url));
  url.remove_prefix(7);
  HttpUrl out;
  const size_t slash = url.find('/');
  std::string_view hostport = url.substr(0, slash);
  if (slash != std::string_view::npos) out.path = std::string(url.substr(slash));
  const size_t colon = hostport.rfind(':');
  if (colon != std::string_view::npos && hostport.find(']') == std::string_view::npos) {
    out.host = std::string(hostport.substr(0, colon));
    out.port = std::string(hostport.substr(colon + 1));
  } else {
    out.host = std::string(hostport);
  }
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']') out.host = out.host.substr(1, out.host.size() - 2);
  if (out.host.empty() || out.port.empty()) return InvalidArgument("URL without a host");
  return out;
}

Result<HttpReply> HttpCall(const HttpUrl& url, std::string_view method, std::string_view target,
                           std::string_view content_type, std::string_view body, std::chrono::milliseconds timeout,
                           size_t max_bytes) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = ::getaddrinfo(url.host.c_str(), url.port.c_str(), &hints, &res); rc != 0) {
    return Status(Errc::kUnavailable, fmt::format("{}: {}", url.host, ::gai_strerror(rc)));
  }
  int fd = -1;
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval tv{.tv_sec = static_cast<time_t>(timeout.count() / 1000),
               .tv_usec = static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  if (fd < 0) return Status(Errc::kUnavailable, fmt::format("connect {}:{}: {}", url.host, url.port, std::strerror(errno)));
  std::string req = fmt::format("{} {} HTTP/1.0\r\nHost: {}:{}\r\nUser-Agent: qcloud-autoscaler\r\nAccept: */*\r\n", method,
                                target, url.host, url.port);
  if (!body.empty() || method == "POST") {
    req += fmt::format("Content-Type: {}\r\nContent-Length: {}\r\n", content_type, body.size());
  }
  req += "\r\n";
  req += body;
  size_t sent = 0;
  while (sent < req.size()) {
    const ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      return Status(Errc::kUnavailable, fmt::format("send to {}:{}: {}", url.host, url.port, std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  std::string in;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status(Errc::kUnavailable, fmt::format("receive from {}:{}: {}", url.host, url.port, std::strerror(err)));
    }
    in.append(buf, static_cast<size_t>(n));
    if (in.size() > max_bytes) {
      ::close(fd);
      return Status(Errc::kTooLarge, fmt::format("answer over {} bytes", max_bytes));
    }
  }
  ::close(fd);
  const size_t head_end = in.find("\r\n\r\n");
  if (!in.starts_with("HTTP/1.") || head_end == std::string::npos || in.size() < 12) {
    return Status(Errc::kProtocolError, "not an HTTP answer");
  }
  HttpReply reply;
  auto [end, ec] = std::from_chars(in.data() + 9, in.data() + 12, reply.status);
  if (ec != std::errc() || end != in.data() + 12) return Status(Errc::kProtocolError, "bad HTTP status line");
  std::string head = in.substr(0, head_end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (head.find("transfer-encoding: chunked") != std::string::npos) {
    return Status(Errc::kProtocolError, "a chunked answer to an HTTP/1.0 request");
  }
  reply.body = in.substr(head_end + 4);
  return reply;
}

}  // namespace qcloud::examples
