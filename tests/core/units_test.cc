// The one grammar for durations, sizes, numbers and endpoints that every
// qcloud program's command line and configuration uses.

#include <doctest/doctest.h>

#include "qcloud/core/endpoint.h"
#include "qcloud/core/units.h"
#include "qcloud/testing/doctest_helpers.h"

namespace qcloud {
namespace {

using namespace std::chrono_literals;

TEST_CASE("units: durations") {
  CHECK(REQUIRE_VALUE(ParseDuration("7d")) == 7 * 24h);
  CHECK(REQUIRE_VALUE(ParseDuration("12h")) == 12h);
  CHECK(REQUIRE_VALUE(ParseDuration("30m")) == 30min);
  CHECK(REQUIRE_VALUE(ParseDuration("45s")) == 45s);
  CHECK(REQUIRE_VALUE(ParseDuration("45")) == 45s);
  CHECK(REQUIRE_VALUE(ParseDuration("250ms")) == 250ms);
  CHECK(REQUIRE_VALUE(ParseDuration("0")) == 0ms);
  for (const char* bad : {"", "-1", "-1s", "+5s", " 5s", "5 s", "5x", "1.5h", "s", "ms",
                          "99999999999999999999s", "9999999999999d"}) {
    INFO(bad);
    CHECK_ERRC(ParseDuration(bad), Errc::kInvalidArgument);
  }
}

TEST_CASE("units: byte sizes") {
  CHECK(REQUIRE_VALUE(ParseByteSize("1024")) == 1024);
  CHECK(REQUIRE_VALUE(ParseByteSize("4K")) == 4096);
  CHECK(REQUIRE_VALUE(ParseByteSize("512M")) == uint64_t{512} << 20);
  CHECK(REQUIRE_VALUE(ParseByteSize("10G")) == uint64_t{10} << 30);
  CHECK(REQUIRE_VALUE(ParseByteSize("10GiB")) == uint64_t{10} << 30);
  CHECK(REQUIRE_VALUE(ParseByteSize("2TB")) == uint64_t{2} << 40);
  CHECK(REQUIRE_VALUE(ParseByteSize("100B")) == 100);
  // A plain number in a unit of the caller's (memcached -m: MiB).
  CHECK(REQUIRE_VALUE(ParseByteSize("64", 1 << 20)) == uint64_t{64} << 20);
  CHECK(REQUIRE_VALUE(ParseByteSize("1G", 1 << 20)) == uint64_t{1} << 30);
  for (const char* bad : {"", "-1", "-1G", "1.5G", "G", "10X", "10 G", "16777216T",
                          "18446744073709551616"}) {
    INFO(bad);
    CHECK_ERRC(ParseByteSize(bad), Errc::kInvalidArgument);
  }
}

TEST_CASE("units: plain numbers refuse signs and overflow") {
  CHECK(REQUIRE_VALUE(ParseUnsigned("4096")) == 4096);
  CHECK(REQUIRE_VALUE(ParseUnsigned("18446744073709551615")) == UINT64_MAX);
  CHECK_ERRC(ParseUnsigned("18446744073709551616"), Errc::kInvalidArgument);
  CHECK_ERRC(ParseUnsigned("-1"), Errc::kInvalidArgument);
  CHECK_ERRC(ParseUnsigned("257", 256), Errc::kInvalidArgument);
  CHECK_ERRC(ParseUnsigned("12a"), Errc::kInvalidArgument);
}

TEST_CASE("endpoint: one grammar for every listen address") {
  auto e = REQUIRE_VALUE(ParseEndpoint("127.0.0.1:11311"));
  CHECK(e.address == "127.0.0.1");
  CHECK(e.port == 11311);
  CHECK(e.ToString() == "127.0.0.1:11311");
  auto v6 = REQUIRE_VALUE(ParseEndpoint("[::0001]:80"));
  CHECK(v6.is_v6());
  CHECK(v6.ToString() == "[::1]:80");
  auto any = REQUIRE_VALUE(ParseEndpoint(":9100"));
  CHECK(any.address == "0.0.0.0");
  // The text survives a round trip through a socket address.
  sockaddr_storage ss{};
  v6.ToSockaddr(&ss);
  CHECK(Endpoint::FromSockaddr(ss) == v6);
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "host:80",
                          "localhost:80", "[::1]80", "1.2.3.4:8x", "::1:80", "[1.2.3.4]:80",
                          "1.2.3.4:-1", "[::1]:+80"}) {
    INFO(bad);
    CHECK_ERRC(ParseEndpoint(bad), Errc::kInvalidArgument);
  }
}

}  // namespace
}  // namespace qcloud
