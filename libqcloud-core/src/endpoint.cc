#include "qcloud/core/endpoint.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

#include <fmt/format.h>

namespace qcloud {

std::string Endpoint::ToString() const {
  return is_v6() ? fmt::format("[{}]:{}", address, port) : fmt::format("{}:{}", address, port);
}

socklen_t Endpoint::ToSockaddr(sockaddr_storage* out) const noexcept {
  std::memset(out, 0, sizeof *out);
  if (is_v6()) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(out);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    inet_pton(AF_INET6, address.c_str(), &a6->sin6_addr);
    return sizeof(sockaddr_in6);
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(out);
  a4->sin_family = AF_INET;
  a4->sin_port = htons(port);
  inet_pton(AF_INET, address.c_str(), &a4->sin_addr);
  return sizeof(sockaddr_in);
}

Endpoint Endpoint::FromSockaddr(const sockaddr_storage& addr) noexcept {
  char host[INET6_ADDRSTRLEN] = {};
  Endpoint e;
  if (addr.ss_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a6->sin6_addr, host, sizeof host);
    e.port = ntohs(a6->sin6_port);
  } else {
    const auto* a4 = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a4->sin_addr, host, sizeof host);
    e.port = ntohs(a4->sin_port);
  }
  e.address = host;
  return e;
}

Result<Endpoint> ParseEndpoint(std::string_view text) {
  std::string_view host, port;
  const bool bracketed = text.starts_with('[');
  if (bracketed) {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return InvalidArgument(fmt::format("bad endpoint '{}': want [v6addr]:port", text));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return InvalidArgument(fmt::format("bad endpoint '{}': want host:port", text));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) {
      return InvalidArgument(fmt::format("bad endpoint '{}': IPv6 goes in brackets", text));
    }
  }
  unsigned p = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || p > 65535) {
    return InvalidArgument(fmt::format("bad port in endpoint '{}'", text));
  }
  Endpoint e;
  e.port = static_cast<uint16_t>(p);
  const std::string h(host);
  unsigned char buf[sizeof(in6_addr)];
  if (bracketed) {
    if (inet_pton(AF_INET6, h.c_str(), buf) != 1) {
      return InvalidArgument(fmt::format("bad IPv6 address in endpoint '{}'", text));
    }
  } else if (h.empty()) {
    e.address = "0.0.0.0";
    return e;
  } else if (inet_pton(AF_INET, h.c_str(), buf) != 1) {
    return InvalidArgument(
        fmt::format("bad address in endpoint '{}': want a numeric IPv4 address", text));
  }
  // Normalized text, so equal addresses compare equal ("::0001" -> "::1").
  char norm[INET6_ADDRSTRLEN] = {};
  inet_ntop(bracketed ? AF_INET6 : AF_INET, buf, norm, sizeof norm);
  e.address = norm;
  return e;
}

}  // namespace qcloud
