// Fuzzes qcloud-vswitchd's configuration file and control API bodies
// (JSON, from disk and the network) and tc's rate and size units: each
// parses or fails with kInvalidArgument; what parses prints back to JSON
// that parses to the same values.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "qcloud/net/config.h"

using namespace qcloud;
using namespace qcloud::net;

namespace {

template <typename T>
void Expect(const Result<T>& r) {
  if (!r.ok() && r.status().code() != Errc::kInvalidArgument) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  Expect(ParseTcRate(in));
  Expect(ParseTcSize(in));
  auto config = ParseVswitchdConfig(in);
  Expect(config);
  auto vpc = ParseVpcJson(in);
  Expect(vpc);
  if (vpc.ok()) {
    auto again = ParseVpcJson(VpcToJson(*vpc));
    if (!again.ok() || again->id != vpc->id || again->flood_peers != vpc->flood_peers) std::abort();
  }
  auto host = ParseHostJson(in);
  Expect(host);
  if (host.ok()) {
    auto again = ParseHostJson(HostToJson(*host));
    if (!again.ok() || again->service != host->service || again->storage != host->storage) std::abort();
  }
  auto port = ParsePortJson(in);
  Expect(port);
  if (port.ok()) {
    auto again = ParsePortJson(PortToJson(*port));
    if (!again.ok() || again->port.mac != port->port.mac || again->port.ipv4 != port->port.ipv4 ||
        again->port.ipv6 != port->port.ipv6 || again->tap != port->tap || again->qos.rate != port->qos.rate)
      std::abort();
  }
  auto vm = ParseVmJson(in);
  Expect(vm);
  if (vm.ok()) {
    auto again = ParseVmJson(VmToJson(*vm));
    if (!again.ok() || again->mac != vm->mac || again->host != vm->host || again->ipv4 != vm->ipv4) std::abort();
  }
  return 0;
}
