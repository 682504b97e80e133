#include "qcloud/net/switch.h"

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <vector>

#include "frames.h"

using namespace qcloud;
using namespace qcloud::net;
using namespace qcloud::net::testframes;

namespace {

struct Delivery {
  bool tunnel = false;
  uint32_t port = 0;
  TunnelTarget target;
  std::vector<uint8_t> frame;
};

struct RecordingSink final : SwitchSink {
  std::vector<Delivery> out;
  void ToPort(uint32_t port, Packet& frame) override {
    out.push_back({false, port, {}, {frame.bytes().begin(), frame.bytes().end()}});
  }
  void ToTunnel(const TunnelTarget& t, Packet& frame) override {
    // Pushes a header as a real sink would, then restores the frame.
    REQUIRE(PushVxlan(frame, t.vni));
    REQUIRE(frame.Pull(kVxlanHeaderLen));
    out.push_back({true, 0, t, {frame.bytes().begin(), frame.bytes().end()}});
  }
  void Clear() { out.clear(); }
};

// A frame in a buffer with headroom, as the data path gets it.
struct Buf {
  std::vector<uint8_t> mem;
  Packet p;
  explicit Buf(const std::vector<uint8_t>& f) : mem(kDefaultHeadroom + f.size()) {
    if (!f.empty()) std::memcpy(mem.data() + kDefaultHeadroom, f.data(), f.size());
    p = Packet(mem.data(), mem.size(), kDefaultHeadroom, f.size());
  }
};

uint64_t DropCount(const VSwitch& sw, Drop d) { return sw.stats().drops[static_cast<size_t>(d)]; }

// Host 1 (this one) with VPCs 100 and 200 using the same subnet and MACs:
// ports 1, 2 in VPC 100 (VMs .1, .2), port 3 in VPC 200 (a VM with port 1's
// MAC and address); host 2 has VM .3 of VPC 100 and VM .2 of VPC 200.
std::unique_ptr<VSwitch> TwoVpcs(ManualClock* clock) {
  auto sw = VSwitch::Open({.clock = clock, .host_id = 1}).value();
  REQUIRE(sw->AddVpc({.id = 100}).ok());
  REQUIRE(sw->AddVpc({.id = 200, .tunnel = Tunnel::kGre}).ok());
  REQUIRE(sw->SetHost({.id = 2, .service = Ip(10, 1, 0, 2), .storage = Ip(10, 2, 0, 2)}).ok());
  REQUIRE(sw->AddPort({.id = 1, .vpc = 100, .mac = Mac(1), .ipv4 = {Ip(192, 168, 0, 1)}}).ok());
  REQUIRE(sw->AddPort({.id = 2, .vpc = 100, .mac = Mac(2), .ipv4 = {Ip(192, 168, 0, 2)},
                       .ipv6 = {*Ipv6Addr::Parse("2001:db8::2")}}).ok());
  REQUIRE(sw->AddPort({.id = 3, .vpc = 200, .mac = Mac(1), .ipv4 = {Ip(192, 168, 0, 1)}}).ok());
  REQUIRE(sw->SetVm({.vpc = 100, .mac = Mac(3), .ipv4 = {Ip(192, 168, 0, 3)}, .host = 2}).ok());
  REQUIRE(sw->SetVm({.vpc = 200, .mac = Mac(2), .ipv4 = {Ip(192, 168, 0, 2)}, .host = 2}).ok());
  return sw;
}

}  // namespace

TEST_CASE("net switch forwards inside a VPC and never across") {
  ManualClock clock;
  auto sw = TwoVpcs(&clock);
  RecordingSink sink;

  // Port 1 -> port 2 (same VPC, same host).
  Buf a(Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2)));
  sw->FromPort(1, a.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK_FALSE(sink.out[0].tunnel);
  CHECK(sink.out[0].port == 2);

  // Port 3 (VPC 200) sends to MAC 2: in VPC 200 that VM is on host 2, over
  // GRE keyed 200; port 2 (VPC 100, the same MAC) never sees it.
  sink.Clear();
  Buf b(Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2)));
  sw->FromPort(3, b.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].tunnel);
  CHECK(sink.out[0].target.vni == 200);
  CHECK(sink.out[0].target.type == Tunnel::kGre);
  CHECK(sink.out[0].target.dst == Ip(10, 1, 0, 2));
  CHECK(sink.out[0].target.host == 2);

  // To host 2's VM of VPC 100 by VXLAN 100.
  sink.Clear();
  Buf c(Ipv4Frame(Mac(2), Mac(3), Ip(192, 168, 0, 2), Ip(192, 168, 0, 3)));
  sw->FromPort(2, c.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].target.vni == 100);
  CHECK(sink.out[0].target.type == Tunnel::kVxlan);

  // Broadcast from port 1 reaches port 2 and host 2 for VPC 100, not port 3.
  sink.Clear();
  Buf d(Ipv4Frame(Mac(1), MacAddr::Broadcast(), Ip(192, 168, 0, 1), Ip(192, 168, 0, 255)));
  sw->FromPort(1, d.p, sink);
  REQUIRE(sink.out.size() == 2);
  for (const Delivery& x : sink.out) {
    if (x.tunnel) CHECK(x.target.vni == 100);
    else CHECK(x.port == 2);
  }
  CHECK(sw->stats().flooded == 1);

  // A tunnel frame of VPC 200 for MAC 1 goes to port 3, never port 1.
  sink.Clear();
  Buf e(Ipv4Frame(Mac(2), Mac(1), Ip(192, 168, 0, 2), Ip(192, 168, 0, 1)));
  sw->FromTunnel(Tunnel::kGre, 200, Ip(10, 1, 0, 2), e.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].port == 3);
  CHECK(sink.out[0].frame == std::vector<uint8_t>(e.p.bytes().begin(), e.p.bytes().end()));

  // A frame to itself is not sent back.
  sink.Clear();
  Buf h(Ipv4Frame(Mac(1), Mac(1), Ip(192, 168, 0, 1), Ip(192, 168, 0, 1)));
  sw->FromPort(1, h.p, sink);
  CHECK(sink.out.empty());
  CHECK(DropCount(*sw, Drop::kHairpin) == 1);
}

TEST_CASE("net switch tunnels use the active plane") {
  ManualClock clock;
  auto sw = TwoVpcs(&clock);
  RecordingSink sink;
  Buf c(Ipv4Frame(Mac(2), Mac(3), Ip(192, 168, 0, 2), Ip(192, 168, 0, 3)));
  REQUIRE(sw->SetActivePlane(2, Plane::kStorage).ok());
  sw->FromPort(2, c.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].target.dst == Ip(10, 2, 0, 2));
  CHECK(sink.out[0].target.plane == Plane::kStorage);
  REQUIRE(sw->SetActivePlane(2, Plane::kService).ok());
  sink.Clear();
  sw->FromPort(2, c.p, sink);
  CHECK(sink.out.at(0).target.dst == Ip(10, 1, 0, 2));
  // Frames from either plane's address are from host 2.
  Buf back(Ipv4Frame(Mac(3), Mac(2), Ip(192, 168, 0, 3), Ip(192, 168, 0, 2)));
  sink.Clear();
  sw->FromTunnel(Tunnel::kVxlan, 100, Ip(10, 2, 0, 2), back.p, sink);
  CHECK(sink.out.size() == 1);
  CHECK(sw->SetHost({.id = 3, .service = Ip(10, 1, 0, 3)}).ok());
  CHECK(sw->SetActivePlane(3, Plane::kStorage).code() == Errc::kInvalidArgument);
  CHECK(sw->SetActivePlane(9, Plane::kStorage).code() == Errc::kNotFound);
}

TEST_CASE("net switch drops spoofed frames and counts them") {
  ManualClock clock;
  auto sw = TwoVpcs(&clock);
  RecordingSink sink;
  auto send = [&](uint32_t port, const std::vector<uint8_t>& f) {
    Buf b(f);
    sink.Clear();
    sw->FromPort(port, b.p, sink);
    return sink.out.size();
  };
  // Another VM's MAC.
  CHECK(send(1, Ipv4Frame(Mac(9), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2))) == 0);
  CHECK(DropCount(*sw, Drop::kSpoofMac) == 1);
  // Another VM's IP with its own MAC.
  CHECK(send(1, Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 3), Ip(192, 168, 0, 2))) == 0);
  CHECK(DropCount(*sw, Drop::kSpoofIp) == 1);
  // ARP claiming another VM's address (gratuitous ARP spoofing).
  CHECK(send(1, ArpFrame(kArpReply, Mac(1), MacAddr::Broadcast(), Mac(1), Ip(192, 168, 0, 3), Mac(1),
                         Ip(192, 168, 0, 3))) == 0);
  // ARP with a sender MAC that is not the port's.
  CHECK(send(1, ArpFrame(kArpRequest, Mac(1), MacAddr::Broadcast(), Mac(7), Ip(192, 168, 0, 1), MacAddr{},
                         Ip(192, 168, 0, 9))) == 0);
  CHECK(DropCount(*sw, Drop::kSpoofArp) == 2);
  // DHCP from 0.0.0.0 is allowed; other traffic from 0.0.0.0 is not.
  CHECK(send(1, Ipv4Frame(Mac(1), MacAddr::Broadcast(), Ip(0, 0, 0, 0), Ip(255, 255, 255, 255), kIpProtoUdp, 20, 68,
                          67)) == 2);
  CHECK(send(1, Ipv4Frame(Mac(1), MacAddr::Broadcast(), Ip(0, 0, 0, 0), Ip(255, 255, 255, 255))) == 0);
  // IPv6: its own address and link-local go; another global address does not.
  CHECK(send(2, Ipv6Frame(Mac(2), Mac(1), *Ipv6Addr::Parse("2001:db8::2"), *Ipv6Addr::Parse("2001:db8::1"))) == 1);
  CHECK(send(2, Ipv6Frame(Mac(2), Mac(1), *Ipv6Addr::Parse("fe80::2"), *Ipv6Addr::Parse("fe80::1"))) == 1);
  CHECK(send(2, Ipv6Frame(Mac(2), Mac(1), *Ipv6Addr::Parse("2001:db8::9"), *Ipv6Addr::Parse("2001:db8::1"))) == 0);
  CHECK(DropCount(*sw, Drop::kSpoofIp) == 3);
  auto ports = sw->Ports();
  CHECK(ports.at(0).spoofed == 5);
  // A port without anti-spoofing lets it through.
  REQUIRE(sw->AddPort({.id = 9, .vpc = 100, .mac = Mac(9), .anti_spoof = false}).ok());
  CHECK(send(9, Ipv4Frame(Mac(8), Mac(2), Ip(1, 2, 3, 4), Ip(192, 168, 0, 2))) == 1);
  // Malformed and oversized frames.
  auto bad = Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2));
  bad[24] ^= 0x55;  // header checksum
  CHECK(send(1, bad) == 0);
  CHECK(DropCount(*sw, Drop::kMalformed) == 1);
  CHECK(send(1, std::vector<uint8_t>(10, 0)) == 0);
  CHECK(DropCount(*sw, Drop::kMalformed) == 2);
  CHECK(send(1, std::vector<uint8_t>(kMaxFrame + 1, 0)) == 0);
  CHECK(DropCount(*sw, Drop::kTooLong) == 1);
  CHECK(send(77, Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2))) == 0);
  CHECK(DropCount(*sw, Drop::kUnknownPort) == 1);
}

TEST_CASE("net switch answers ARP for known VMs of the VPC only") {
  ManualClock clock;
  auto sw = TwoVpcs(&clock);
  RecordingSink sink;
  // Port 1 asks for .3 (on host 2): answered here with MAC 3.
  Buf q(ArpFrame(kArpRequest, Mac(1), MacAddr::Broadcast(), Mac(1), Ip(192, 168, 0, 1), MacAddr{}, Ip(192, 168, 0, 3)));
  sw->FromPort(1, q.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].port == 1);
  FrameInfo f;
  REQUIRE(ClassifyFrame(sink.out[0].frame, &f) == ParseError::kOk);
  CHECK(f.eth.dst == Mac(1));
  CHECK(f.eth.src == Mac(3));
  CHECK(f.arp.op == kArpReply);
  CHECK(f.arp.sha == Mac(3));
  CHECK(f.arp.spa == Ip(192, 168, 0, 3));
  CHECK(f.arp.tha == Mac(1));
  CHECK(f.arp.tpa == Ip(192, 168, 0, 1));
  CHECK(sw->stats().arp_replies == 1);
  // Port 3 (VPC 200) asks for .2: VPC 200's .2 is MAC 2 on host 2.
  sink.Clear();
  Buf r(ArpFrame(kArpRequest, Mac(1), MacAddr::Broadcast(), Mac(1), Ip(192, 168, 0, 1), MacAddr{}, Ip(192, 168, 0, 2)));
  sw->FromPort(3, r.p, sink);
  REQUIRE(sink.out.size() == 1);
  REQUIRE(ClassifyFrame(sink.out[0].frame, &f) == ParseError::kOk);
  CHECK(f.arp.sha == Mac(2));
  CHECK(sink.out[0].port == 3);
  // An unknown address is flooded inside the VPC.
  sink.Clear();
  Buf u(ArpFrame(kArpRequest, Mac(1), MacAddr::Broadcast(), Mac(1), Ip(192, 168, 0, 1), MacAddr{}, Ip(192, 168, 0, 77)));
  sw->FromPort(1, u.p, sink);
  CHECK(sink.out.size() == 2);
}

TEST_CASE("net switch tunnel input keeps split horizon and checks sources") {
  ManualClock clock;
  auto sw = TwoVpcs(&clock);
  RecordingSink sink;
  Buf bcast(Ipv4Frame(Mac(3), MacAddr::Broadcast(), Ip(192, 168, 0, 3), Ip(192, 168, 0, 255)));
  sw->FromTunnel(Tunnel::kVxlan, 100, Ip(10, 1, 0, 2), bcast.p, sink);
  REQUIRE(sink.out.size() == 2);  // ports 1 and 2 only: never back into a tunnel
  for (const Delivery& d : sink.out) CHECK_FALSE(d.tunnel);
  sink.Clear();
  Buf unknown(Ipv4Frame(Mac(3), Mac(55), Ip(192, 168, 0, 3), Ip(192, 168, 0, 55)));
  sw->FromTunnel(Tunnel::kVxlan, 100, Ip(10, 1, 0, 2), unknown.p, sink);
  CHECK(sink.out.empty());
  CHECK(DropCount(*sw, Drop::kNoRoute) == 1);
  Buf vni(Ipv4Frame(Mac(3), Mac(1), Ip(192, 168, 0, 3), Ip(192, 168, 0, 1)));
  sw->FromTunnel(Tunnel::kVxlan, 300, Ip(10, 1, 0, 2), vni.p, sink);
  CHECK(DropCount(*sw, Drop::kUnknownVpc) == 1);
  // From an underlay address no host has.
  sw->FromTunnel(Tunnel::kVxlan, 100, Ip(10, 9, 9, 9), vni.p, sink);
  CHECK(DropCount(*sw, Drop::kTunnelSpoof) == 1);
  // Claiming a local VM's MAC.
  Buf fake(Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2)));
  sw->FromTunnel(Tunnel::kVxlan, 100, Ip(10, 1, 0, 2), fake.p, sink);
  CHECK(DropCount(*sw, Drop::kTunnelSpoof) == 2);
  CHECK(sink.out.empty());
}

TEST_CASE("net switch learns only where configured and forgets after the TTL") {
  ManualClock clock;
  auto sw = VSwitch::Open({.clock = &clock, .host_id = 1, .max_learned = 2,
                           .learned_ttl = std::chrono::seconds(10)}).value();
  REQUIRE(sw->AddVpc({.id = 5, .learning = true, .flood_peers = {Ip(10, 0, 0, 99)}}).ok());
  REQUIRE(sw->AddPort({.id = 1, .vpc = 5, .mac = Mac(1), .ipv4 = {Ip(172, 16, 0, 1)}}).ok());
  RecordingSink sink;
  // A kernel VTEP's VM (MAC 0x50) broadcasts an ARP request: delivered, learned.
  Buf arp(ArpFrame(kArpRequest, Mac(0x50), MacAddr::Broadcast(), Mac(0x50), Ip(172, 16, 0, 50), MacAddr{},
                   Ip(172, 16, 0, 1)));
  sw->FromTunnel(Tunnel::kVxlan, 5, Ip(10, 0, 0, 99), arp.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sw->stats().learned == 1);
  // The reply goes straight to the learned address.
  sink.Clear();
  Buf reply(ArpFrame(kArpReply, Mac(1), Mac(0x50), Mac(1), Ip(172, 16, 0, 1), Mac(0x50), Ip(172, 16, 0, 50)));
  sw->FromPort(1, reply.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].target.dst == Ip(10, 0, 0, 99));
  CHECK(sink.out[0].target.host == 0);
  // Never over a local binding; at most max_learned.
  Buf claim(Ipv4Frame(Mac(1), Mac(0x50), Ip(172, 16, 0, 1), Ip(172, 16, 0, 50)));
  sw->FromTunnel(Tunnel::kVxlan, 5, Ip(10, 0, 0, 98), claim.p, sink);
  CHECK(DropCount(*sw, Drop::kTunnelSpoof) == 1);
  for (uint8_t m = 0x60; m < 0x64; ++m) {
    Buf x(Ipv4Frame(Mac(m), Mac(1), Ip(172, 16, 0, m), Ip(172, 16, 0, 1)));
    sw->FromTunnel(Tunnel::kVxlan, 5, Ip(10, 0, 0, m), x.p, sink);
  }
  CHECK(sw->stats().learned == 2);
  // After the TTL the entry is gone: unicast to it floods (to the flood peer).
  clock.Advance(std::chrono::seconds(11));
  sw->Expire();
  sink.Clear();
  sw->FromPort(1, reply.p, sink);
  CHECK(sw->stats().flooded >= 1);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].target.dst == Ip(10, 0, 0, 99));

  // A VPC without learning learns nothing and drops unknown underlay sources.
  REQUIRE(sw->AddVpc({.id = 6}).ok());
  Buf y(Ipv4Frame(Mac(0x70), MacAddr::Broadcast(), Ip(172, 16, 0, 70), Ip(172, 16, 0, 255)));
  sw->FromTunnel(Tunnel::kVxlan, 6, Ip(10, 0, 0, 70), y.p, sink);
  CHECK(DropCount(*sw, Drop::kTunnelSpoof) == 2);
}

TEST_CASE("net switch follows a VM move and forwards frames still in flight") {
  ManualClock clock;
  auto sw = TwoVpcs(&clock);
  RecordingSink sink;
  REQUIRE(sw->SetHost({.id = 3, .service = Ip(10, 1, 0, 3)}).ok());
  // VM 2 (port 2) moves to host 2.
  REQUIRE(sw->SetVm({.vpc = 100, .mac = Mac(2), .ipv4 = {Ip(192, 168, 0, 2)}, .host = 2}).ok());
  Buf a(Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2)));
  sw->FromPort(1, a.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].tunnel);
  CHECK(sink.out[0].target.host == 2);
  // Host 3 still sends frames for VM 2 here: they go on to host 2.
  sink.Clear();
  Buf late(Ipv4Frame(Mac(0x33), Mac(2), Ip(192, 168, 0, 33), Ip(192, 168, 0, 2)));
  sw->FromTunnel(Tunnel::kVxlan, 100, Ip(10, 1, 0, 3), late.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].target.host == 2);
  CHECK(sw->stats().redirected == 1);
  // Not back to the host it came from.
  sink.Clear();
  sw->FromTunnel(Tunnel::kVxlan, 100, Ip(10, 1, 0, 2), late.p, sink);
  CHECK(sink.out.empty());
  // The old port is removed; the ARP entry stays pointing at the VM.
  REQUIRE(sw->RemovePort(2).ok());
  Buf q(ArpFrame(kArpRequest, Mac(1), MacAddr::Broadcast(), Mac(1), Ip(192, 168, 0, 1), MacAddr{}, Ip(192, 168, 0, 2)));
  sink.Clear();
  sw->FromPort(1, q.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sw->stats().arp_replies == 1);
  // After redirect_for, in-flight frames are no longer forwarded.
  clock.Advance(std::chrono::seconds(31));
  sw->Expire();
  sink.Clear();
  sw->FromTunnel(Tunnel::kVxlan, 100, Ip(10, 1, 0, 3), late.p, sink);
  CHECK(sink.out.empty());
  // VM 3 moves here: AddPort makes it local and drops the remote entry.
  REQUIRE(sw->AddPort({.id = 4, .vpc = 100, .mac = Mac(3), .ipv4 = {Ip(192, 168, 0, 3)}}).ok());
  sink.Clear();
  Buf b(Ipv4Frame(Mac(1), Mac(3), Ip(192, 168, 0, 1), Ip(192, 168, 0, 3)));
  sw->FromPort(1, b.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].port == 4);
  for (const VmLocation& vm : sw->Vms()) CHECK(vm.mac != Mac(3));
}

TEST_CASE("net switch control errors") {
  ManualClock clock;
  CHECK(VSwitch::Open({.host_id = 0}).status().code() == Errc::kInvalidArgument);
  auto sw = TwoVpcs(&clock);
  CHECK(sw->AddVpc({.id = 0}).code() == Errc::kInvalidArgument);
  CHECK(sw->AddVpc({.id = 1 << 24}).code() == Errc::kInvalidArgument);
  CHECK(sw->AddVpc({.id = 100}).code() == Errc::kAlreadyExists);
  CHECK(sw->AddPort({.id = 1, .vpc = 100, .mac = Mac(9)}).code() == Errc::kAlreadyExists);
  CHECK(sw->AddPort({.id = 8, .vpc = 100, .mac = Mac(1)}).code() == Errc::kAlreadyExists);
  CHECK(sw->AddPort({.id = 8, .vpc = 999, .mac = Mac(8)}).code() == Errc::kNotFound);
  CHECK(sw->AddPort({.id = 8, .vpc = 100, .mac = MacAddr::Broadcast()}).code() == Errc::kInvalidArgument);
  CHECK(sw->SetHost({.id = 1, .service = Ip(1, 1, 1, 1)}).code() == Errc::kInvalidArgument);
  CHECK(sw->SetHost({.id = 5, .service = Ip(10, 1, 0, 2)}).code() == Errc::kAlreadyExists);
  CHECK(sw->SetHost({.id = 5}).code() == Errc::kInvalidArgument);
  CHECK(sw->SetVm({.vpc = 100, .mac = Mac(5), .host = 5}).code() == Errc::kNotFound);
  CHECK(sw->RemoveHost(2).code() == Errc::kInvalidArgument);
  CHECK(sw->RemoveVm(100, Mac(77)).code() == Errc::kNotFound);
  REQUIRE(sw->RemoveVm(100, Mac(3)).ok());
  REQUIRE(sw->RemoveVm(200, Mac(2)).ok());
  CHECK(sw->RemoveHost(2).ok());
  CHECK(sw->RemovePort(1).ok());
  CHECK(sw->RemovePort(1).code() == Errc::kNotFound);
  CHECK(sw->RemoveVpc(200).ok());
  CHECK(sw->Ports().size() == 1);
}

TEST_CASE("net switch random traffic never crosses VPCs") {
  // Three VPCs with identical MACs and addresses, ports on this host and
  // VMs on two others; random frames (good, spoofed, broadcast, garbage)
  // from ports and tunnels. Every delivery stays in the sender's VPC.
  ManualClock clock;
  auto sw = VSwitch::Open({.clock = &clock, .host_id = 1}).value();
  REQUIRE(sw->SetHost({.id = 2, .service = Ip(10, 1, 0, 2)}).ok());
  REQUIRE(sw->SetHost({.id = 3, .service = Ip(10, 1, 0, 3)}).ok());
  std::map<uint32_t, uint32_t> port_vpc;
  std::map<uint32_t, uint32_t> host_addr = {{2, Ip(10, 1, 0, 2).value}, {3, Ip(10, 1, 0, 3).value}};
  uint32_t next_port = 1;
  for (uint32_t vpc : {10u, 20u, 30u}) {
    REQUIRE(sw->AddVpc({.id = vpc, .learning = vpc == 30}).ok());
    for (uint8_t vm = 1; vm <= 6; ++vm) {
      if (vm <= 3) {
        REQUIRE(sw->AddPort({.id = next_port, .vpc = vpc, .mac = Mac(vm), .ipv4 = {Ip(10, 0, 0, vm)}}).ok());
        port_vpc[next_port++] = vpc;
      } else {
        REQUIRE(sw->SetVm({.vpc = vpc, .mac = Mac(vm), .ipv4 = {Ip(10, 0, 0, vm)}, .host = vm <= 4 ? 2u : 3u}).ok());
      }
    }
  }
  std::mt19937 rng(2014);
  RecordingSink sink;
  size_t delivered = 0;
  for (int i = 0; i < 5000; ++i) {
    uint8_t s = static_cast<uint8_t>(1 + rng() % 7), d = static_cast<uint8_t>(1 + rng() % 8);
    MacAddr dst = d == 8 ? MacAddr::Broadcast() : Mac(d);
    std::vector<uint8_t> f;
    switch (rng() % 4) {
      case 0: f = ArpFrame(kArpRequest, Mac(s), dst, Mac(s), Ip(10, 0, 0, s), MacAddr{}, Ip(10, 0, 0, d)); break;
      case 1: f = Ipv4Frame(Mac(s), dst, Ip(10, 0, 0, s), Ip(10, 0, 0, d), kIpProtoTcp, rng() % 200); break;
      case 2: f = Ipv4Frame(Mac(s), dst, Ip(10, 0, 0, static_cast<uint8_t>(rng())), Ip(10, 0, 0, d)); break;
      default: f.resize(rng() % 100); for (auto& b : f) b = static_cast<uint8_t>(rng()); break;
    }
    Buf b(f);
    sink.Clear();
    uint32_t from_vpc;
    if (rng() % 2) {
      uint32_t port = 1 + static_cast<uint32_t>(rng() % port_vpc.size());
      from_vpc = port_vpc[port];
      sw->FromPort(port, b.p, sink);
    } else {
      from_vpc = (1 + rng() % 3) * 10;
      uint32_t host = 2 + static_cast<uint32_t>(rng() % 2);
      sw->FromTunnel(Tunnel::kVxlan, from_vpc, Ipv4Addr{host_addr[host]}, b.p, sink);
    }
    for (const Delivery& x : sink.out) {
      ++delivered;
      if (x.tunnel) CHECK(x.target.vni == from_vpc);
      else CHECK(port_vpc[x.port] == from_vpc);
    }
  }
  CHECK(delivered > 1000);
}

TEST_CASE("net switch review cases: fragments, moves back, stale ARP, offload offsets") {
  ManualClock clock;
  auto sw = TwoVpcs(&clock);
  RecordingSink sink;
  // The first fragment of a UDP datagram carries the whole datagram's UDP
  // length: it is forwarded, not malformed.
  auto frag = Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2), kIpProtoUdp, 1472);
  Ipv4Header h;
  REQUIRE(ParseIpv4(std::span(frag).subspan(14), &h, true) == ParseError::kOk);
  h.frag = 0x2000;  // MF, offset 0
  WriteIpv4(frag.data() + 14, h);
  frag[34 + 4] = 0x0b;  // UDP length 3008
  frag[34 + 5] = 0xc0;
  Buf f1(frag);
  sw->FromPort(1, f1.p, sink);
  CHECK(sink.out.size() == 1);
  CHECK(DropCount(*sw, Drop::kMalformed) == 0);

  // A VM moves away and comes back on a new port; the old port is removed
  // last: the new port keeps its ARP entry.
  REQUIRE(sw->SetVm({.vpc = 100, .mac = Mac(2), .ipv4 = {Ip(192, 168, 0, 2)}, .host = 2}).ok());
  REQUIRE(sw->AddPort({.id = 7, .vpc = 100, .mac = Mac(2), .ipv4 = {Ip(192, 168, 0, 2)}}).ok());
  REQUIRE(sw->RemovePort(2).ok());
  sink.Clear();
  Buf q(ArpFrame(kArpRequest, Mac(1), MacAddr::Broadcast(), Mac(1), Ip(192, 168, 0, 1), MacAddr{}, Ip(192, 168, 0, 2)));
  sw->FromPort(1, q.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK(sink.out[0].port == 1);  // answered, not flooded

  // A VM known with two addresses becomes a port with one, then goes:
  // nothing answers for either address.
  REQUIRE(sw->SetVm({.vpc = 100, .mac = Mac(8), .ipv4 = {Ip(192, 168, 0, 8), Ip(192, 168, 0, 9)}, .host = 2}).ok());
  REQUIRE(sw->AddPort({.id = 8, .vpc = 100, .mac = Mac(8), .ipv4 = {Ip(192, 168, 0, 8)}}).ok());
  REQUIRE(sw->RemovePort(8).ok());
  uint64_t replies = sw->stats().arp_replies;
  for (uint8_t last : {8, 9}) {
    Buf r(ArpFrame(kArpRequest, Mac(1), MacAddr::Broadcast(), Mac(1), Ip(192, 168, 0, 1), MacAddr{},
                   Ip(192, 168, 0, last)));
    sw->FromPort(1, r.p, sink);
  }
  CHECK(sw->stats().arp_replies == replies);

  // A move called off (RemoveVm while the port is still here): local again.
  REQUIRE(sw->SetVm({.vpc = 100, .mac = Mac(2), .ipv4 = {Ip(192, 168, 0, 2)}, .host = 2}).ok());
  REQUIRE(sw->RemoveVm(100, Mac(2)).ok());
  sink.Clear();
  Buf back(Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2)));
  sw->FromPort(1, back.p, sink);
  REQUIRE(sink.out.size() == 1);
  CHECK_FALSE(sink.out[0].tunnel);
  CHECK(sink.out[0].port == 7);

  // Offload offsets must point at the frame's own L4 checksum: a partial
  // checksum aimed at the source MAC (or at the IP source) is dropped.
  uint64_t malformed = DropCount(*sw, Drop::kMalformed);
  for (uint16_t start : {0, 14, 34}) {
    Buf x(Ipv4Frame(Mac(1), Mac(3), Ip(192, 168, 0, 1), Ip(192, 168, 0, 3)));
    x.p.offload().csum_partial = true;
    x.p.offload().csum_start = start;
    x.p.offload().csum_offset = start == 34 ? 16 : 6;  // 34 + 16: not UDP's checksum
    sink.Clear();
    sw->FromPort(1, x.p, sink);
    CHECK(sink.out.empty());
  }
  CHECK(DropCount(*sw, Drop::kMalformed) == malformed + 3);
  Buf ok(Ipv4Frame(Mac(1), Mac(3), Ip(192, 168, 0, 1), Ip(192, 168, 0, 3)));
  ok.p.offload().csum_partial = true;
  ok.p.offload().csum_start = 34;
  ok.p.offload().csum_offset = 6;
  sink.Clear();
  sw->FromPort(1, ok.p, sink);
  CHECK(sink.out.size() == 1);
  // A TCP super-frame claim on a UDP frame is refused too.
  Buf gso(Ipv4Frame(Mac(1), Mac(3), Ip(192, 168, 0, 1), Ip(192, 168, 0, 3)));
  gso.p.offload().gso = Offload::kTcp4;
  gso.p.offload().gso_size = 100;
  sink.Clear();
  sw->FromPort(1, gso.p, sink);
  CHECK(sink.out.empty());
}

namespace {

// Ethernet + IPv6 + an ICMPv6 neighbour-discovery message: `body` is the
// message after type and code (checksum included, left 0: the switch does
// not verify it).
std::vector<uint8_t> NdFrame(MacAddr src_mac, const Ipv6Addr& src, uint8_t type, std::vector<uint8_t> body) {
  std::vector<uint8_t> icmp = {type, 0};
  icmp.insert(icmp.end(), body.begin(), body.end());
  std::vector<uint8_t> f(14 + 40 + icmp.size(), 0);
  WriteEthernet(f.data(), MacAddr{{0x33, 0x33, 0, 0, 0, 1}}, src_mac, kEtherTypeIpv6);
  uint8_t* ip = f.data() + 14;
  ip[0] = 0x60;
  ip[4] = static_cast<uint8_t>(icmp.size() >> 8);
  ip[5] = static_cast<uint8_t>(icmp.size());
  ip[6] = kIpProtoIcmpv6;
  ip[7] = 255;
  std::memcpy(ip + 8, src.b.data(), 16);
  auto all = *Ipv6Addr::Parse("ff02::1");
  std::memcpy(ip + 24, all.b.data(), 16);
  std::memcpy(ip + 40, icmp.data(), icmp.size());
  return f;
}

// Neighbour advertisement body: checksum, flags, target, then options.
std::vector<uint8_t> Na(const Ipv6Addr& target, const MacAddr* tlla) {
  std::vector<uint8_t> b = {0, 0, 0x20, 0, 0, 0};  // checksum, Override flag, reserved
  b.insert(b.end(), target.b.begin(), target.b.end());
  if (tlla) {
    b.push_back(2);
    b.push_back(1);
    b.insert(b.end(), tlla->b.begin(), tlla->b.end());
  }
  return b;
}

}  // namespace

TEST_CASE("net switch drops IPv6 neighbour discovery spoofing") {
  ManualClock clock;
  auto sw = TwoVpcs(&clock);
  RecordingSink sink;
  auto send = [&](const std::vector<uint8_t>& f) {
    Buf b(f);
    sink.Clear();
    sw->FromPort(2, b.p, sink);
    return sink.out.size();
  };
  auto own = *Ipv6Addr::Parse("2001:db8::2");
  auto other = *Ipv6Addr::Parse("2001:db8::1");
  auto ll = *Ipv6Addr::Parse("fe80::2");
  MacAddr mine = Mac(2), theirs = Mac(1);
  // Its own address, with its own MAC: flooded in the VPC as usual.
  CHECK(send(NdFrame(mine, ll, 136, Na(own, &mine))) == 2);
  CHECK(send(NdFrame(mine, ll, 136, Na(ll, nullptr))) == 2);
  // Another VM's address, or its own address with another's MAC.
  CHECK(send(NdFrame(mine, ll, 136, Na(other, &mine))) == 0);
  CHECK(send(NdFrame(mine, ll, 136, Na(own, &theirs))) == 0);
  // A router advertisement or a redirect from a VM.
  CHECK(send(NdFrame(mine, ll, 134, std::vector<uint8_t>(14, 0))) == 0);
  CHECK(send(NdFrame(mine, ll, 137, std::vector<uint8_t>(38, 0))) == 0);
  // A solicitation whose source link-layer option is another's MAC; a
  // zero-length option (malformed, RFC 4861 says drop).
  std::vector<uint8_t> ns = {0, 0, 0, 0, 0, 0};
  ns.insert(ns.end(), other.b.begin(), other.b.end());
  std::vector<uint8_t> ns_bad = ns;
  ns_bad.insert(ns_bad.end(), {1, 1});
  ns_bad.insert(ns_bad.end(), theirs.b.begin(), theirs.b.end());
  CHECK(send(NdFrame(mine, ll, 135, ns_bad)) == 0);
  std::vector<uint8_t> ns_zero = ns;
  ns_zero.insert(ns_zero.end(), {1, 0, 0, 0, 0, 0, 0, 0});
  CHECK(send(NdFrame(mine, ll, 135, ns_zero)) == 0);
  std::vector<uint8_t> ns_ok = ns;
  ns_ok.insert(ns_ok.end(), {1, 1});
  ns_ok.insert(ns_ok.end(), mine.b.begin(), mine.b.end());
  CHECK(send(NdFrame(mine, ll, 135, ns_ok)) == 2);
  CHECK(DropCount(*sw, Drop::kSpoofNd) == 6);
}
