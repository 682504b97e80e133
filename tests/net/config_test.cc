#include "qcloud/net/config.h"

#include <doctest/doctest.h>

#include <string>

using namespace qcloud;
using namespace qcloud::net;

TEST_CASE("net config rates and sizes in tc units") {
  CHECK(ParseTcRate("100mbit").value() == 12'500'000);
  CHECK(ParseTcRate("1gbit").value() == 125'000'000);
  CHECK(ParseTcRate("500kbit").value() == 62'500);
  CHECK(ParseTcRate("12500kbps").value() == 12'500'000);
  CHECK(ParseTcRate("8000").value() == 1000);  // a bare number is bits per second, as in tc
  CHECK(ParseTcRate("8bit").value() == 1);
  CHECK(ParseTcRate("1bps").value() == 1);
  CHECK(ParseTcRate("10tbit").value() == 1'250'000'000'000ull);
  CHECK(ParseTcRate("9000tbit").status().code() == Errc::kInvalidArgument);  // over 8 Pbit/s
  CHECK(ParseTcRate("100Mbit").value() == 12'500'000);  // tc reads units in any case
  CHECK(ParseTcRate("1.5gbit").value() == 187'500'000);  // and fractions
  CHECK(ParseTcSize("1.5KB").value() == 1536);
  for (const char* bad : {"", "mbit", "100 mbit", "-5mbit", "1.mbit", ".5mbit", "1.5.1mbit", "99999999999999999999tbit", "100xbit"})
    CHECK_MESSAGE(ParseTcRate(bad).status().code() == Errc::kInvalidArgument, std::string(bad));
  CHECK(ParseTcSize("1500").value() == 1500);
  CHECK(ParseTcSize("1500b").value() == 1500);
  CHECK(ParseTcSize("15kb").value() == 15 * 1024);
  CHECK(ParseTcSize("15k").value() == 15 * 1024);
  CHECK(ParseTcSize("2mb").value() == 2 << 20);
  CHECK(ParseTcSize("8kbit").value() == 1024);
  for (const char* bad : {"", "kb", "15 kb", "1,5k", "99999999999999999999gb"})
    CHECK_MESSAGE(ParseTcSize(bad).status().code() == Errc::kInvalidArgument, std::string(bad));
}

TEST_CASE("net config a whole host") {
  const char* text = R"({
    "host_id": 1, "service": "10.1.0.1", "storage": "10.2.0.1", "control": "127.0.0.1:0",
    "probe_interval": "50ms", "dead_after": "300ms", "link_rate": "1gbit", "gre": false,
    "vpcs": [{"id": 100}, {"id": 200, "tunnel": "gre", "learning": true, "flood_peers": ["10.1.0.9"]}],
    "hosts": [{"id": 2, "service": "10.1.0.2", "storage": "10.2.0.2"}, {"id": 9, "service": "10.1.0.9"}],
    "ports": [{"id": 1, "vpc": 100, "tap": "vm1", "mac": "02:00:00:00:00:01", "ipv4": ["192.168.0.1"],
               "ipv6": ["2001:db8::1"], "mtu": 1400, "qos": {"rate": "100mbit", "ceil": "1gbit", "burst": "15kb", "prio": 2}}],
    "vms": [{"vpc": 100, "mac": "02:00:00:00:00:03", "ipv4": ["192.168.0.3"], "host": 2}]
  })";
  auto c = ParseVswitchdConfig(text);
  REQUIRE_MESSAGE(c.ok(), c.status().ToString());
  CHECK(c->host_id == 1);
  CHECK(c->service.ToString() == "10.1.0.1");
  CHECK(c->storage.ToString() == "10.2.0.1");
  CHECK(c->probe_interval == std::chrono::milliseconds(50));
  CHECK(c->dead_after == std::chrono::milliseconds(300));
  CHECK(c->link_rate == 125'000'000);
  CHECK_FALSE(c->gre);
  REQUIRE(c->vpcs.size() == 2);
  CHECK(c->vpcs[1].tunnel == Tunnel::kGre);
  CHECK(c->vpcs[1].learning);
  CHECK(c->vpcs[1].flood_peers.at(0).ToString() == "10.1.0.9");
  REQUIRE(c->hosts.size() == 2);
  CHECK(c->hosts[1].storage.value == 0);
  REQUIRE(c->ports.size() == 1);
  const TapPortOptions& p = c->ports[0];
  CHECK(p.tap == "vm1");
  CHECK(p.mtu == 1400);
  CHECK(p.port.ipv6.at(0).ToString() == "2001:db8::1");
  CHECK(p.qos.rate == 12'500'000);
  CHECK(p.qos.ceil == 125'000'000);
  CHECK(p.qos.burst == 15 * 1024);
  CHECK(p.qos.prio == 2);
  REQUIRE(c->vms.size() == 1);
  CHECK(c->vms[0].host == 2);
  // What prints back parses to the same.
  auto again = ParsePortJson(PortToJson(p));
  REQUIRE(again.ok());
  CHECK(again->qos.rate == p.qos.rate);
  CHECK(again->qos.ceil == p.qos.ceil);
  CHECK(again->port.mac == p.port.mac);
  CHECK(ParseVpcJson(VpcToJson(c->vpcs[1])).value().flood_peers == c->vpcs[1].flood_peers);
  CHECK(ParseVmJson(VmToJson(c->vms[0])).value().ipv4 == c->vms[0].ipv4);
  CHECK(ParseHostJson(HostToJson(c->hosts[1])).value().storage.value == 0);
}

TEST_CASE("net config errors name the field") {
  auto err = [](const char* text) { return ParseVswitchdConfig(text).status().ToString(); };
  CHECK(err("[]").find("must be a JSON object") != std::string::npos);
  CHECK(err("{").find("not JSON") != std::string::npos);
  CHECK(err(R"({"service": "10.1.0.1"})").find("host_id: required") != std::string::npos);
  CHECK(err(R"({"host_id": 1})").find("service: required") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": ""})").find("service: required") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.300"})").find("not an IPv4 address") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "sevrice": 1})").find("sevrice: unknown key") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "vpcs": [{"id": 1}, {"id": 16777216}]})")
            .find("vpcs[1].id") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "vpcs": [{"id": 1, "tunnel": "ipip"}]})")
            .find("vpcs[0].tunnel") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "ports": [{"id": 1, "vpc": 1, "tap": "a/b", "mac": "02:00:00:00:00:01"}]})")
            .find("ports[0].tap") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "ports": [{"id": 1, "vpc": 1, "tap": "t", "mac": "ff:ff:ff:ff:ff:ff"}]})")
            .find("ports[0].mac") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "ports": [{"id": 1, "vpc": 1, "tap": "t", "mac": "02:00:00:00:00:01", "qos": {"rate": "10mbit", "ceil": "1mbit"}}]})")
            .find("ports[0].qos.ceil") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "ports": [{"id": 1, "vpc": 1, "tap": "t", "mac": "02:00:00:00:00:01", "qos": {"ceil": "1mbit"}}]})")
            .find("ports[0].qos.rate") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "vxlan_port": 4788})").find("distinct") != std::string::npos);
  CHECK(err(R"({"host_id": 1, "service": "10.1.0.1", "dead_after": "soon"})").find("dead_after") != std::string::npos);
  std::string many = R"({"host_id": 1, "service": "10.1.0.1", "vpcs": [{"id": 1, "flood_peers": [)";
  for (int i = 0; i < 65; ++i) many += std::string(i ? "," : "") + "\"10.0.0.1\"";
  many += "]}]}";
  CHECK(err(many.c_str()).find("more than 64") != std::string::npos);
  CHECK(ParseVmJson(R"({"vpc": 1, "mac": "02:00:00:00:00:01"})").status().ToString().find("host: required") !=
        std::string::npos);
}
