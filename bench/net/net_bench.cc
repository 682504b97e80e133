// The overlay's data path in memory, one core: classification, VXLAN
// encapsulation and decapsulation in place, and the switch's decisions, for
// 64- and 1500-byte frames. items_per_second is frames per second.
//
//   build/release/bench/net/net_bench --benchmark_filter='Switch|Encap|Classify'
//
// BM_OverlayRoundTrip is the whole path one frame takes between two hosts:
// host A's switch (anti-spoofing, lookup) -> VXLAN + outer Ethernet/IPv4/UDP
// in place -> host B decapsulates (outer headers checked) -> host B's
// switch -> the destination port. Tables hold 1,000 VMs per VPC.
#include <benchmark/benchmark.h>

#include <cstring>
#include <memory>
#include <vector>

#include "qcloud/core/clock.h"
#include "qcloud/net/packet.h"
#include "qcloud/net/switch.h"

using namespace qcloud;
using namespace qcloud::net;

namespace {

MacAddr VmMac(uint32_t n) {
  return MacAddr{{0x02, 0, static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n), 1}};
}
Ipv4Addr VmIp(uint32_t n) { return Ipv4Addr{0x0a000000u | n}; }

// Ethernet + IPv4 + UDP of `size` bytes in all, checksums right.
std::vector<uint8_t> Frame(size_t size, uint32_t src, uint32_t dst) {
  std::vector<uint8_t> f(size, 0);
  WriteEthernet(f.data(), VmMac(dst), VmMac(src), kEtherTypeIpv4);
  Ipv4Header ip;
  ip.total_len = static_cast<uint16_t>(size - kEthernetHeaderLen);
  ip.ttl = 64;
  ip.proto = kIpProtoUdp;
  ip.src = VmIp(src);
  ip.dst = VmIp(dst);
  WriteIpv4(f.data() + kEthernetHeaderLen, ip);
  uint8_t* u = f.data() + kEthernetHeaderLen + kIpv4MinHeaderLen;
  size_t ulen = size - kEthernetHeaderLen - kIpv4MinHeaderLen;
  u[0] = 0x30; u[1] = 0x39; u[2] = 0x00; u[3] = 0x50;
  u[4] = static_cast<uint8_t>(ulen >> 8);
  u[5] = static_cast<uint8_t>(ulen);
  return f;
}

struct Buffer {
  std::vector<uint8_t> mem;
  std::vector<uint8_t> frame;
  explicit Buffer(std::vector<uint8_t> f) : mem(kDefaultHeadroom + f.size() + 64), frame(std::move(f)) {}
  Packet Fresh() {
    std::memcpy(mem.data() + kDefaultHeadroom, frame.data(), frame.size());
    return Packet(mem.data(), mem.size(), kDefaultHeadroom, frame.size());
  }
};

constexpr uint32_t kVms = 1000;

// Host `self` with VMs 1..kVms of VPC 100 split between hosts 1 and 2 (odd
// on host 1, even on host 2): its own as ports, the others' as locations.
std::unique_ptr<VSwitch> Host(uint32_t self, Clock* clock) {
  auto sw = VSwitch::Open({.clock = clock, .host_id = self}).value();
  (void)sw->AddVpc({.id = 100});
  uint32_t other = self == 1 ? 2 : 1;
  (void)sw->SetHost({.id = other, .service = Ipv4Addr{0x0a010000u | other}});
  for (uint32_t vm = 1; vm <= kVms; ++vm) {
    uint32_t home = vm % 2 == 1 ? 1 : 2;
    if (home == self) (void)sw->AddPort({.id = vm, .vpc = 100, .mac = VmMac(vm), .ipv4 = {VmIp(vm)}});
    else (void)sw->SetVm({.vpc = 100, .mac = VmMac(vm), .ipv4 = {VmIp(vm)}, .host = home});
  }
  return sw;
}

// Encapsulates in place as the wire would carry it, then hands the frame to
// `next` (another host) or just counts.
struct EncapSink final : SwitchSink {
  uint64_t frames = 0;
  VSwitch* next = nullptr;
  SwitchSink* next_sink = nullptr;
  void ToPort(uint32_t, Packet&) override { ++frames; }
  void ToTunnel(const TunnelTarget& t, Packet& frame) override {
    Underlay u{VmMac(0xfffff0), VmMac(0xfffff1), Ipv4Addr{0x0a010001}, t.dst, 64, 0};
    size_t before = frame.size();
    if (!PushVxlan(frame, t.vni) || !EncapIpv4Udp(frame, u, 50000, kVxlanPort)) return;
    ++frames;
    if (next != nullptr) {
      Decapsulated d;
      if (DecapVxlan(frame.bytes(), &d) == ParseError::kOk) {
        Packet inner = frame;
        inner.Pull(frame.size() - d.inner.size());
        next->FromTunnel(Tunnel::kVxlan, d.vni, d.outer_src, inner, *next_sink);
      }
    }
    frame.Pull(frame.size() - before);
  }
};

void BM_ClassifyFrame(benchmark::State& state) {
  auto f = Frame(static_cast<size_t>(state.range(0)), 1, 2);
  FrameInfo info;
  for (auto _ : state) {
    benchmark::DoNotOptimize(ClassifyFrame(f, &info));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ClassifyFrame)->Arg(64)->Arg(1500);

void BM_EncapDecapVxlan(benchmark::State& state) {
  Buffer b(Frame(static_cast<size_t>(state.range(0)), 1, 2));
  Underlay u{VmMac(10), VmMac(11), Ipv4Addr{0x0a010001}, Ipv4Addr{0x0a010002}, 64, 0};
  Packet p = b.Fresh();
  Decapsulated d;
  for (auto _ : state) {
    PushVxlan(p, 100);
    EncapIpv4Udp(p, u, 50000, kVxlanPort);
    benchmark::DoNotOptimize(DecapVxlan(p.bytes(), &d));
    p.Pull(kVxlanOverhead);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_EncapDecapVxlan)->Arg(64)->Arg(1500);

// One switch: a VM's frame to a VM on the other host, encapsulated.
void BM_SwitchPortToTunnel(benchmark::State& state) {
  ManualClock clock;
  auto sw = Host(1, &clock);
  std::vector<Buffer> frames;
  for (uint32_t i = 0; i < 64; ++i) {
    frames.emplace_back(Frame(static_cast<size_t>(state.range(0)), 1 + 2 * i, 2 + 2 * (i * 7 % 400)));
    frames.back().Fresh();
  }
  EncapSink sink;
  size_t i = 0;
  for (auto _ : state) {
    Buffer& b = frames[i++ & 63];
    Packet p(b.mem.data(), b.mem.size(), kDefaultHeadroom, b.frame.size());
    sw->FromPort(1 + 2 * static_cast<uint32_t>((i - 1) & 63), p, sink);
  }
  if (sink.frames != static_cast<uint64_t>(state.iterations())) state.SkipWithError("frames were dropped");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_SwitchPortToTunnel)->Arg(64)->Arg(1500);

// The whole path between two hosts, in memory.
void BM_OverlayRoundTrip(benchmark::State& state) {
  ManualClock clock;
  auto a = Host(1, &clock);
  auto b = Host(2, &clock);
  std::vector<Buffer> frames;
  for (uint32_t i = 0; i < 64; ++i) {
    frames.emplace_back(Frame(static_cast<size_t>(state.range(0)), 1 + 2 * i, 2 + 2 * (i * 7 % 400)));
    frames.back().Fresh();
  }
  EncapSink at_b;
  EncapSink at_a;
  at_a.next = b.get();
  at_a.next_sink = &at_b;
  size_t i = 0;
  for (auto _ : state) {
    size_t k = i++ & 63;
    Buffer& f = frames[k];
    Packet p(f.mem.data(), f.mem.size(), kDefaultHeadroom, f.frame.size());
    a->FromPort(1 + 2 * static_cast<uint32_t>(k), p, at_a);
  }
  if (at_b.frames != static_cast<uint64_t>(state.iterations())) state.SkipWithError("frames were dropped");
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_OverlayRoundTrip)->Arg(64)->Arg(1500);

}  // namespace
