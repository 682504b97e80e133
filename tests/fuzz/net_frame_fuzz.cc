// Fuzzes every packet decoder of libqcloud-net on the same bytes: the
// one-pass classifier, each header parser, VXLAN and GRE decapsulation of
// an underlay frame, the plane probe decoder, and the offloads (the first
// bytes as a virtio_net_hdr: segmentation of the rest as a TCP super-frame,
// checksum completion, the coalescer); then the switch itself, with
// the bytes as a frame from a VM port and from a tunnel of each kind. No
// input may crash, read out of bounds, or deliver outside its VPC.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/net/offload.h"
#include "qcloud/net/packet.h"
#include "qcloud/net/planes.h"
#include "qcloud/net/switch.h"

using namespace qcloud;
using namespace qcloud::net;

namespace {

MacAddr M(uint8_t n) { return MacAddr{{0x02, 0, 0, 0, 0, n}}; }
Ipv4Addr I(uint8_t n) { return Ipv4Addr{0xc0a80000u | n}; }

struct CheckingSink final : SwitchSink {
  uint32_t vpc = 0;
  void ToPort(uint32_t port, Packet& frame) override {
    // Ports 1-2 are VPC 10, port 3 VPC 20.
    if ((port == 3) != (vpc == 20)) std::abort();
    if (frame.size() == 0) std::abort();
  }
  void ToTunnel(const TunnelTarget& t, Packet& frame) override {
    if (t.vni != vpc) std::abort();
    if (!PushVxlan(frame, t.vni) || !frame.Pull(kVxlanHeaderLen)) std::abort();
  }
};

VSwitch& Switch() {
  static ManualClock clock;
  static std::unique_ptr<VSwitch> sw = [] {
    auto s = VSwitch::Open({.clock = &clock, .host_id = 1}).value();
    (void)s->AddVpc({.id = 10});
    (void)s->AddVpc({.id = 20, .tunnel = Tunnel::kGre, .learning = true});
    (void)s->SetHost({.id = 2, .service = Ipv4Addr{0x0a010002}, .storage = Ipv4Addr{0x0a020002}});
    (void)s->AddPort({.id = 1, .vpc = 10, .mac = M(1), .ipv4 = {I(1)}});
    (void)s->AddPort({.id = 2, .vpc = 10, .mac = M(2), .ipv4 = {I(2)}});
    (void)s->AddPort({.id = 3, .vpc = 20, .mac = M(1), .ipv4 = {I(1)}});
    (void)s->SetVm({.vpc = 10, .mac = M(3), .ipv4 = {I(3)}, .host = 2});
    (void)s->SetVm({.vpc = 20, .mac = M(2), .ipv4 = {I(2)}, .host = 2});
    return s;
  }();
  return *sw;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> in(data, size);
  FrameInfo f;
  if (ClassifyFrame(in, &f) == ParseError::kOk) {
    if (f.l3_offset > size || f.l4_offset > size) std::abort();
  }
  EthernetHeader eth;
  (void)ParseEthernet(in, &eth);
  ArpPacket arp;
  (void)ParseArp(in, &arp);
  Ipv4Header v4;
  if (ParseIpv4(in, &v4, true) == ParseError::kOk && v4.total_len > size) std::abort();
  Ipv6Header v6;
  if (ParseIpv6(in, &v6) == ParseError::kOk && v6.header_len > size) std::abort();
  UdpHeader udp;
  (void)ParseUdp(in, &udp);
  TcpHeader tcp;
  if (ParseTcp(in, &tcp) == ParseError::kOk && tcp.header_len > size) std::abort();
  IcmpHeader icmp;
  (void)ParseIcmp(in, &icmp);
  VxlanHeader vx;
  (void)ParseVxlan(in, &vx);
  GreHeader gre;
  if (ParseGre(in, &gre) == ParseError::kOk && gre.header_len > size) std::abort();
  Decapsulated d;
  for (bool gre_outer : {false, true}) {
    ParseError e = gre_outer ? DecapGre(in, &d) : DecapVxlan(in, &d);
    if (e == ParseError::kOk && (d.inner.data() < data || d.inner.data() + d.inner.size() > data + size))
      std::abort();
  }
  (void)DecodeProbe(in);
  Offload off;
  if (ParseVirtioNetHdr(in, &off)) {
    std::vector<uint8_t> frame(in.begin() + kVirtioNetHdrLen, in.end());
    static std::vector<uint8_t> out(kMaxSegments * 9300);
    if (auto cut = SegmentTcp(frame, off, kVxlanHeaderLen, out)) {
      if (cut->count == 0 || cut->count > kMaxSegments ||
          (cut->count - 1) * cut->stride + kVxlanHeaderLen + cut->last_len > out.size())
        std::abort();
      static TcpCoalescer gro;  // kept across inputs: merges what it can
      for (size_t i = 0; i < cut->count; ++i) {
        std::span<const uint8_t> seg(out.data() + i * cut->stride + kVxlanHeaderLen,
                                     i + 1 == cut->count ? cut->last_len : cut->segment_len);
        if (!gro.Add(seg)) {
          Offload merged;
          (void)gro.Take(&merged);
          (void)gro.Add(seg);
        }
      }
    }
    (void)CompleteChecksum(frame, off);
  }
  (void)FlowSourcePort(in);

  // The switch, with the bytes in a buffer that has headroom.
  std::vector<uint8_t> buf(kDefaultHeadroom + size);
  if (size) std::memcpy(buf.data() + kDefaultHeadroom, data, size);
  VSwitch& sw = Switch();
  CheckingSink sink;
  for (uint32_t port : {1u, 3u}) {
    Packet p(buf.data(), buf.size(), kDefaultHeadroom, size);
    sink.vpc = port == 3 ? 20 : 10;
    sw.FromPort(port, p, sink);
  }
  for (uint32_t vpc : {10u, 20u}) {
    Packet p(buf.data(), buf.size(), kDefaultHeadroom, size);
    sink.vpc = vpc;
    sw.FromTunnel(vpc == 20 ? Tunnel::kGre : Tunnel::kVxlan, vpc, Ipv4Addr{0x0a010002}, p, sink);
  }
  return 0;
}
