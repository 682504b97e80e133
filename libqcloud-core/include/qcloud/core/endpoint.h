#pragma once

// Endpoint: a numeric IP address and a TCP/UDP port, the one grammar every
// qcloud server and tool uses for addresses:
//
//   "127.0.0.1:11311"   IPv4
//   "[::1]:11311"       IPv6, in brackets
//   ":11311"            every IPv4 interface (0.0.0.0)
//
// Host names are refused on purpose: a server's listen address must not
// depend on a resolver. Port 0 means "let the kernel pick".

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"

namespace qcloud {

struct QCLOUD_EXPORT Endpoint {
  std::string address = "127.0.0.1";  // numeric IPv4 or IPv6 text, without brackets
  uint16_t port = 0;                  // 0 = any free port (when binding)

  bool is_v6() const noexcept { return address.find(':') != std::string::npos; }
  // "1.2.3.4:80" or "[::1]:80": what ParseEndpoint reads back.
  std::string ToString() const;
  // The socket address, for bind/connect. Precondition: `address` is numeric
  // (ParseEndpoint or FromSockaddr made it). Returns its length.
  socklen_t ToSockaddr(sockaddr_storage* out) const noexcept;
  static Endpoint FromSockaddr(const sockaddr_storage& addr) noexcept;

  friend bool operator==(const Endpoint&, const Endpoint&) = default;
};

// Parses the grammar above. Errors: kInvalidArgument naming what is wrong.
QCLOUD_EXPORT Result<Endpoint> ParseEndpoint(std::string_view text);

}  // namespace qcloud
