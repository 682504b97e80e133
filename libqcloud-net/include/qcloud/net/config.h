#pragma once

// qcloud::net configuration in JSON: one host's switch as qcloud-vswitchd
// reads it (--config FILE), and the objects its control API takes (a VPC,
// a port, a host, a VM's location), in the same shapes.
//
//   {
//     "host_id": 1,
//     "service": "10.1.0.1", "storage": "10.2.0.1",     // this host's plane addresses
//     "control": "127.0.0.1:9870",                       // HTTP API and /metrics
//     "vxlan_port": 4789, "probe_port": 4788, "gre": true,
//     "probe_interval": "100ms", "dead_after": "500ms",
//     "link_rate": "10gbit",                             // the root of the HTB tree
//     "vpcs":  [{"id": 100, "tunnel": "vxlan", "learning": false, "flood_peers": ["10.1.0.9"]}],
//     "hosts": [{"id": 2, "service": "10.1.0.2", "storage": "10.2.0.2"}],
//     "ports": [{"id": 1, "vpc": 100, "tap": "vm1", "mac": "02:00:00:00:00:01", "ipv4": ["192.168.0.1"],
//                "ipv6": [], "anti_spoof": true, "mtu": 1450,
//                "qos": {"rate": "100mbit", "ceil": "1gbit", "burst": "15kb", "prio": 0}}],
//     "vms":   [{"vpc": 100, "mac": "02:00:00:00:00:03", "ipv4": ["192.168.0.3"], "host": 2}]
//   }
//
// Rates and sizes use tc's units (tc(8)): a rate is "100mbit", "1gbit",
// "500kbit", "12500kbps" (bytes), or a number of bits per second; a size is
// "15kb" (1024 bytes), "1mb", "1500b", or a number of bytes. Durations as
// core's units.h ("100ms", "2s"). Unknown keys are errors (a typo never
// silently means a default). Bounds: a document of at most kMaxConfigBytes,
// 65,536 items per list, 64 addresses per port or VM.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "qcloud/core/export.h"
#include "qcloud/core/result.h"
#include "qcloud/net/switch.h"

namespace qcloud::net {

inline constexpr size_t kMaxConfigBytes = size_t{16} << 20;

struct PortQos {
  uint64_t rate = 0;     // bytes per second; 0 = not shaped
  uint64_t ceil = 0;     // 0 = rate
  uint64_t burst = 0;    // bytes; 0 = tc's default
  uint64_t cburst = 0;
  uint32_t prio = 0;
};

// A VM's port on a TAP device that the switch creates.
struct TapPortOptions {
  PortOptions port;
  std::string tap;       // the device's name (at most 15 bytes)
  uint32_t mtu = 1450;   // set on the device: the underlay's 1500 less VXLAN's 50
  PortQos qos;
};

struct VswitchdConfig {
  uint32_t host_id = 0;
  Ipv4Addr service;                        // required
  Ipv4Addr storage;                        // 0.0.0.0 = one plane
  std::string control = "127.0.0.1:9870";
  uint16_t vxlan_port = kVxlanPort;
  uint16_t probe_port = 4788;
  bool gre = true;                         // open the raw GRE socket
  std::chrono::milliseconds probe_interval{100};
  std::chrono::milliseconds dead_after{500};
  uint64_t link_rate = 1'250'000'000;      // bytes per second (10gbit)
  std::vector<VpcOptions> vpcs;
  std::vector<HostOptions> hosts;
  std::vector<TapPortOptions> ports;
  std::vector<VmLocation> vms;
};

// kInvalidArgument with the path of the offending field ("ports[2].mac: ...").
QCLOUD_EXPORT Result<VswitchdConfig> ParseVswitchdConfig(std::string_view json);
QCLOUD_EXPORT Result<VpcOptions> ParseVpcJson(std::string_view json);
QCLOUD_EXPORT Result<HostOptions> ParseHostJson(std::string_view json);
QCLOUD_EXPORT Result<TapPortOptions> ParsePortJson(std::string_view json);
QCLOUD_EXPORT Result<VmLocation> ParseVmJson(std::string_view json);

QCLOUD_EXPORT std::string VpcToJson(const VpcOptions& v);
QCLOUD_EXPORT std::string HostToJson(const HostOptions& h);
QCLOUD_EXPORT std::string PortToJson(const TapPortOptions& p);
QCLOUD_EXPORT std::string VmToJson(const VmLocation& v);

// tc's units (above). kInvalidArgument for anything else or an overflow.
QCLOUD_EXPORT Result<uint64_t> ParseTcRate(std::string_view text);   // -> bytes per second
QCLOUD_EXPORT Result<uint64_t> ParseTcSize(std::string_view text);   // -> bytes

}  // namespace qcloud::net
