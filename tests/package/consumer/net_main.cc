// Links qcloud::net from the installed SDK: a VXLAN frame built in place
// and read back, and a switch that sends a VM's frame to the host the
// controller says its peer lives on.
#include <cstdio>
#include <cstring>
#include <vector>

#include "qcloud/net/packet.h"
#include "qcloud/net/switch.h"

namespace {

using namespace qcloud::net;

struct Sink final : SwitchSink {
  TunnelTarget last;
  int tunnelled = 0;
  void ToPort(uint32_t, Packet&) override {}
  void ToTunnel(const TunnelTarget& t, Packet&) override {
    last = t;
    ++tunnelled;
  }
};

}  // namespace

int main() {
  MacAddr a = *MacAddr::Parse("02:00:00:00:00:01"), b = *MacAddr::Parse("02:00:00:00:00:02");
  std::vector<uint8_t> buf(kDefaultHeadroom + 60, 0);
  WriteEthernet(buf.data() + kDefaultHeadroom, b, a, 0x88b5);  // local experimental ethertype
  Packet p(buf.data(), buf.size(), kDefaultHeadroom, 60);
  Underlay u{a, b, *Ipv4Addr::Parse("10.1.0.1"), *Ipv4Addr::Parse("10.1.0.2"), 64, 0};
  Decapsulated d;
  if (!PushVxlan(p, 100) || !EncapIpv4Udp(p, u, 50000, kVxlanPort) || DecapVxlan(p.bytes(), &d) != ParseError::kOk ||
      d.vni != 100 || d.inner.size() != 60) {
    std::fprintf(stderr, "net consumer: VXLAN round trip failed\n");
    return 1;
  }
  auto sw = VSwitch::Open({.host_id = 1}).value();
  bool ok = sw->AddVpc({.id = 100}).ok() && sw->SetHost({.id = 2, .service = u.dst}).ok() &&
            sw->AddPort({.id = 1, .vpc = 100, .mac = a}).ok() && sw->SetVm({.vpc = 100, .mac = b, .host = 2}).ok();
  Sink sink;
  Packet frame(buf.data(), buf.size(), kDefaultHeadroom, 60);
  sw->FromPort(1, frame, sink);
  if (!ok || sink.tunnelled != 1 || sink.last.dst.ToString() != "10.1.0.2" || sink.last.vni != 100) {
    std::fprintf(stderr, "net consumer: the switch did not tunnel the frame to host 2\n");
    return 1;
  }
  std::printf("net consumer: VNI %u to %s\n", sink.last.vni, sink.last.dst.ToString().c_str());
  return 0;
}
