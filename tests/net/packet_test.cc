#include "qcloud/net/packet.h"

#include <doctest/doctest.h>

#include <random>
#include <set>
#include <vector>

#include "frames.h"

using namespace qcloud::net;
using namespace qcloud::net::testframes;

TEST_CASE("net addresses parse and print") {
  auto m = MacAddr::Parse("02:AB:cd:00:10:ff");
  REQUIRE(m);
  CHECK(m->ToString() == "02:ab:cd:00:10:ff");
  CHECK(MacAddr::Parse("02-ab-cd-00-10-ff") == m);
  CHECK_FALSE(MacAddr::Parse("02:ab:cd:00:10"));
  CHECK_FALSE(MacAddr::Parse("02:ab:cd:00:10:fg"));
  CHECK_FALSE(MacAddr::Parse("02:ab:cd:00:10:ff:"));
  CHECK(MacAddr::Broadcast().IsBroadcast());
  CHECK(MacAddr::Parse("33:33:00:00:00:01")->IsMulticast());
  CHECK_FALSE(m->IsMulticast());

  auto ip = Ipv4Addr::Parse("10.1.2.3");
  REQUIRE(ip);
  CHECK(ip->value == 0x0a010203u);
  CHECK(ip->ToString() == "10.1.2.3");
  CHECK_FALSE(Ipv4Addr::Parse("10.1.2"));
  CHECK_FALSE(Ipv4Addr::Parse("10.1.2.256"));
  CHECK_FALSE(Ipv4Addr::Parse(""));
  CHECK_FALSE(Ipv4Addr::Parse("10.1.2.3.4.5.6.7.8.9"));

  auto v6 = Ipv6Addr::Parse("fe80::1");
  REQUIRE(v6);
  CHECK(v6->IsLinkLocal());
  CHECK(v6->ToString() == "fe80::1");
  CHECK(Ipv6Addr::Parse("::")->IsUnspecified());
  CHECK_FALSE(Ipv6Addr::Parse("fe80:::1"));
}

TEST_CASE("net internet checksum as RFC 1071 computes it") {
  // RFC 1071 section 3's example: the sum of these words is 0xddf2.
  const uint8_t words[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  CHECK(ChecksumAdd(words) == 0xddf2u);  // 0x2ddf0 folded
  CHECK(ChecksumFinish(ChecksumAdd(words)) == static_cast<uint16_t>(~0xddf2));
  // Odd length: the last byte is the high half of a word.
  const uint8_t odd[] = {0x01, 0x02, 0x03};
  CHECK(ChecksumFinish(ChecksumAdd(odd)) == static_cast<uint16_t>(~(0x0102 + 0x0300)));
  // Split sums add up to the whole.
  std::vector<uint8_t> big(1001);
  std::mt19937 rng(7);
  for (auto& b : big) b = static_cast<uint8_t>(rng());
  uint32_t whole = ChecksumAdd(big);
  uint32_t parts = ChecksumAdd(std::span(big).subspan(200), ChecksumAdd(std::span(big).first(200)));
  CHECK(ChecksumFinish(whole) == ChecksumFinish(parts));
}

TEST_CASE("net an IPv4 UDP frame classifies with checksums that verify") {
  auto f = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoUdp, 30, 4000, 53);
  FrameInfo info;
  REQUIRE(ClassifyFrame(f, &info) == ParseError::kOk);
  CHECK(info.eth.src == Mac(1));
  CHECK(info.eth.dst == Mac(2));
  CHECK(info.l3 == L3::kIpv4);
  CHECK(info.src4 == Ip(10, 0, 0, 1));
  CHECK(info.dst4 == Ip(10, 0, 0, 2));
  CHECK(info.l4_proto == kIpProtoUdp);
  CHECK(info.src_port == 4000);
  CHECK(info.dst_port == 53);
  CHECK(info.l4_offset == 34);
  Ipv4Header ip;
  REQUIRE(ParseIpv4(std::span(f).subspan(14), &ip, true) == ParseError::kOk);
  CHECK(TransportChecksumV4(ip.src, ip.dst, kIpProtoUdp, std::span(f).subspan(34, ip.total_len - 20)) == 0);

  SUBCASE("a flipped header bit fails the header checksum") {
    f[14 + 8] ^= 1;  // TTL
    CHECK(ClassifyFrame(f, &info) == ParseError::kBadChecksum);
  }
  SUBCASE("a total length past the frame") {
    f[16] = 0x05;
    CHECK(ClassifyFrame(f, &info) == ParseError::kBadLength);
  }
  SUBCASE("IHL below five") {
    f[14] = 0x44;
    CHECK(ClassifyFrame(f, &info) == ParseError::kBadHeaderLength);
  }
  SUBCASE("version six in an IPv4 ethertype") {
    f[14] = 0x65;
    CHECK(ClassifyFrame(f, &info) == ParseError::kBadVersion);
  }
  SUBCASE("a UDP length past the IP payload") {
    f[34 + 4] = 0x10;
    CHECK(ClassifyFrame(f, &info) == ParseError::kBadLength);
  }
}

TEST_CASE("net every prefix of a frame is refused and never read past") {
  for (uint8_t proto : {kIpProtoUdp, kIpProtoTcp, kIpProtoIcmp}) {
    auto f = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), proto, 40);
    FrameInfo info;
    REQUIRE(ClassifyFrame(f, &info) == ParseError::kOk);
    size_t needed = 14 + 20 + (proto == kIpProtoTcp ? 20 : 8) + 40;
    for (size_t n = 0; n < needed; ++n) {
      // A copy of exactly n bytes, so ASan sees any read past it.
      std::vector<uint8_t> prefix(f.begin(), f.begin() + static_cast<long>(n));
      CHECK_MESSAGE(ClassifyFrame(prefix, &info) != ParseError::kOk, "prefix of " << n << " bytes");
    }
  }
}

TEST_CASE("net TCP and ICMP headers") {
  auto t = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoTcp, 100, 40000, 80);
  TcpHeader tcp;
  REQUIRE(ParseTcp(std::span(t).subspan(34), &tcp) == ParseError::kOk);
  CHECK(tcp.src_port == 40000);
  CHECK(tcp.dst_port == 80);
  CHECK(tcp.header_len == 20);
  CHECK(tcp.flags == 0x18);
  CHECK(TransportChecksumV4(Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoTcp, std::span(t).subspan(34, 120)) == 0);
  t[34 + 12] = 0x40;  // data offset 4
  FrameInfo info;
  CHECK(ClassifyFrame(t, &info) == ParseError::kBadHeaderLength);
  t[34 + 12] = 0xf0;  // 60 bytes of header in a 120-byte segment: fine
  CHECK(ClassifyFrame(t, &info) == ParseError::kOk);

  auto i = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoIcmp, 56);
  IcmpHeader icmp;
  REQUIRE(ParseIcmp(std::span(i).subspan(34), &icmp) == ParseError::kOk);
  CHECK(icmp.type == 8);
  CHECK(InternetChecksum(std::span(i).subspan(34, 64)) == 0);
}

TEST_CASE("net later IPv4 fragments carry no L4 header") {
  auto f = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoUdp, 4);
  Ipv4Header h;
  REQUIRE(ParseIpv4(std::span(f).subspan(14), &h, true) == ParseError::kOk);
  h.frag = 0x0010;  // offset 128 bytes
  WriteIpv4(f.data() + 14, h);
  FrameInfo info;
  REQUIRE(ClassifyFrame(f, &info) == ParseError::kOk);
  CHECK(info.l4_offset == 0);
  CHECK(info.l4_proto == kIpProtoUdp);
}

TEST_CASE("net VLAN tags") {
  auto f = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2));
  std::vector<uint8_t> one(f.begin(), f.begin() + 12);
  const uint8_t tag[] = {0x81, 0x00, 0x20, 0x0a};  // prio 1, VLAN 10
  one.insert(one.end(), tag, tag + 4);
  one.insert(one.end(), f.begin() + 12, f.end());
  FrameInfo info;
  REQUIRE(ClassifyFrame(one, &info) == ParseError::kOk);
  CHECK(info.eth.vlan_tags == 1);
  CHECK((info.eth.vlan_tci & 0xfff) == 10);
  CHECK(info.eth.ethertype == kEtherTypeIpv4);
  CHECK(info.src4 == Ip(10, 0, 0, 1));

  std::vector<uint8_t> two(f.begin(), f.begin() + 12);
  const uint8_t qinq[] = {0x88, 0xa8, 0x00, 0x64, 0x81, 0x00, 0x00, 0x0b};
  two.insert(two.end(), qinq, qinq + 8);
  two.insert(two.end(), f.begin() + 12, f.end());
  REQUIRE(ClassifyFrame(two, &info) == ParseError::kOk);
  CHECK(info.eth.vlan_tags == 2);
  CHECK((info.eth.vlan_tci & 0xfff) == 11);
  CHECK(info.eth.header_len == 22);

  std::vector<uint8_t> three(f.begin(), f.begin() + 12);
  for (int i = 0; i < 3; ++i) three.insert(three.end(), tag, tag + 4);
  three.insert(three.end(), f.begin() + 12, f.end());
  CHECK(ClassifyFrame(three, &info) == ParseError::kUnsupported);
}

TEST_CASE("net IPv6 with and without extension headers") {
  auto src = *Ipv6Addr::Parse("2001:db8::1");
  auto dst = *Ipv6Addr::Parse("2001:db8::2");
  for (bool hbh : {false, true}) {
    auto f = Ipv6Frame(Mac(1), Mac(2), src, dst, hbh);
    FrameInfo info;
    REQUIRE(ClassifyFrame(f, &info) == ParseError::kOk);
    CHECK(info.l3 == L3::kIpv6);
    CHECK(info.src6 == src);
    CHECK(info.dst6 == dst);
    CHECK(info.l4_proto == kIpProtoUdp);
    CHECK(info.dst_port == 53);
    CHECK(info.l4_offset == 14 + 40 + (hbh ? 8 : 0));
    CHECK(TransportChecksumV6(src, dst, kIpProtoUdp, std::span(f).subspan(info.l4_offset)) == 0);
  }
  // An extension header whose length runs past the payload.
  auto f = Ipv6Frame(Mac(1), Mac(2), src, dst, true);
  f[14 + 40 + 1] = 5;
  FrameInfo info;
  CHECK(ClassifyFrame(f, &info) == ParseError::kTruncated);
  // A chain of nine destination-options headers is more than kept.
  std::vector<uint8_t> chain(14 + 40 + 9 * 8 + 8, 0);
  WriteEthernet(chain.data(), Mac(2), Mac(1), kEtherTypeIpv6);
  chain[14] = 0x60;
  chain[14 + 5] = 9 * 8 + 8;
  chain[14 + 6] = 60;
  for (int i = 0; i < 9; ++i) chain[14 + 40 + i * 8] = 60;
  CHECK(ClassifyFrame(chain, &info) == ParseError::kUnsupported);
}

TEST_CASE("net ARP parse and write") {
  auto f = ArpFrame(kArpRequest, Mac(1), MacAddr::Broadcast(), Mac(1), Ip(10, 0, 0, 1), MacAddr{}, Ip(10, 0, 0, 2));
  FrameInfo info;
  REQUIRE(ClassifyFrame(f, &info) == ParseError::kOk);
  CHECK(info.l3 == L3::kArp);
  CHECK(info.arp.op == kArpRequest);
  CHECK(info.arp.sha == Mac(1));
  CHECK(info.arp.spa == Ip(10, 0, 0, 1));
  CHECK(info.arp.tpa == Ip(10, 0, 0, 2));
  f[14 + 4] = 8;  // hardware address length
  CHECK(ClassifyFrame(f, &info) == ParseError::kUnsupported);
}

TEST_CASE("net VXLAN encapsulation in place and back") {
  auto inner = Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2), kIpProtoTcp, 1000);
  std::vector<uint8_t> buf(kDefaultHeadroom + inner.size());
  std::memcpy(buf.data() + kDefaultHeadroom, inner.data(), inner.size());
  Packet p(buf.data(), buf.size(), kDefaultHeadroom, inner.size());
  Underlay u{Mac(0xa1), Mac(0xa2), Ip(10, 1, 0, 1), Ip(10, 1, 0, 2), 64, 0};
  REQUIRE(PushVxlan(p, 0x123456));
  REQUIRE(EncapIpv4Udp(p, u, FlowSourcePort(inner), kVxlanPort));
  CHECK(p.size() == inner.size() + kVxlanOverhead);
  Decapsulated d;
  REQUIRE(DecapVxlan(p.bytes(), &d) == ParseError::kOk);
  CHECK(d.vni == 0x123456);
  CHECK(d.outer_src == Ip(10, 1, 0, 1));
  CHECK(d.outer_dst == Ip(10, 1, 0, 2));
  CHECK(std::vector<uint8_t>(d.inner.begin(), d.inner.end()) == inner);
  // The outer IPv4 header is valid (its checksum verifies) and says DF.
  Ipv4Header ip;
  REQUIRE(ParseIpv4(p.bytes().subspan(14), &ip, true) == ParseError::kOk);
  CHECK(ip.frag == 0x4000);
  CHECK(ip.total_len == inner.size() + 36);
  // Pull the outer headers back off: the inner frame is where it was.
  REQUIRE(p.Pull(kVxlanOverhead));
  CHECK(p.data() == buf.data() + kDefaultHeadroom);

  SUBCASE("no room, no VNI over 24 bits") {
    Packet tight(buf.data(), buf.size(), 4, inner.size());
    CHECK_FALSE(PushVxlan(tight, 1));
    Packet q(buf.data(), buf.size(), kDefaultHeadroom, inner.size());
    CHECK_FALSE(PushVxlan(q, 1u << 24));
    Packet r(buf.data(), buf.size(), 40, inner.size());
    CHECK_FALSE(EncapIpv4Udp(r, u, 1, 2));
  }
  SUBCASE("a header without the I flag") {
    std::vector<uint8_t> bad(p.bytes().begin(), p.bytes().end());
    Packet again(buf.data(), buf.size(), kDefaultHeadroom, inner.size());
    REQUIRE(PushVxlan(again, 5));
    REQUIRE(EncapIpv4Udp(again, u, 1, kVxlanPort));
    std::vector<uint8_t> wire(again.bytes().begin(), again.bytes().end());
    wire[42] = 0;
    CHECK(DecapVxlan(wire, &d) == ParseError::kBadFlags);
    CHECK(DecapVxlan(wire, &d, 8472) == ParseError::kUnsupported);  // another port
  }
}

TEST_CASE("net every prefix of a VXLAN packet is refused") {
  auto inner = Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2));
  std::vector<uint8_t> buf(kDefaultHeadroom + inner.size());
  std::memcpy(buf.data() + kDefaultHeadroom, inner.data(), inner.size());
  Packet p(buf.data(), buf.size(), kDefaultHeadroom, inner.size());
  REQUIRE(PushVxlan(p, 9));
  REQUIRE(EncapIpv4Udp(p, {Mac(3), Mac(4), Ip(1, 1, 1, 1), Ip(2, 2, 2, 2), 64, 0}, 50000, kVxlanPort));
  std::vector<uint8_t> wire(p.bytes().begin(), p.bytes().end());
  Decapsulated d;
  REQUIRE(DecapVxlan(wire, &d) == ParseError::kOk);
  for (size_t n = 0; n < wire.size(); ++n) {
    std::vector<uint8_t> prefix(wire.begin(), wire.begin() + static_cast<long>(n));
    CHECK(DecapVxlan(prefix, &d) != ParseError::kOk);
  }
}

TEST_CASE("net GRE headers by RFC 2784 and 2890") {
  auto inner = Ipv4Frame(Mac(1), Mac(2), Ip(192, 168, 0, 1), Ip(192, 168, 0, 2));
  std::vector<uint8_t> buf(kDefaultHeadroom + inner.size());
  std::memcpy(buf.data() + kDefaultHeadroom, inner.data(), inner.size());
  Packet p(buf.data(), buf.size(), kDefaultHeadroom, inner.size());
  REQUIRE(PushGre(p, 0xdeadbeef, 77u));
  REQUIRE(EncapIpv4(p, {Mac(3), Mac(4), Ip(1, 1, 1, 1), Ip(2, 2, 2, 2), 64, 0}, kIpProtoGre));
  Decapsulated d;
  REQUIRE(DecapGre(p.bytes(), &d) == ParseError::kOk);
  CHECK(d.vni == 0xdeadbeef);
  CHECK(d.gre);
  CHECK(std::vector<uint8_t>(d.inner.begin(), d.inner.end()) == inner);
  GreHeader g;
  REQUIRE(ParseGre(p.bytes().subspan(34), &g) == ParseError::kOk);
  CHECK(g.has_key);
  CHECK(g.has_seq);
  CHECK(g.seq == 77);
  CHECK(g.header_len == 12);
  CHECK(g.protocol == kEtherTypeTeb);

  SUBCASE("flags this code does not carry") {
    uint8_t h[16] = {0x40, 0x00, 0x65, 0x58};  // routing present
    CHECK(ParseGre(h, &g) == ParseError::kBadFlags);
    uint8_t v[8] = {0x20, 0x01, 0x65, 0x58};  // version 1 (PPTP)
    CHECK(ParseGre(v, &g) == ParseError::kBadVersion);
    uint8_t s[8] = {0x20, 0x00, 0x65};
    CHECK(ParseGre(std::span(s, 7), &g) == ParseError::kTruncated);
  }
  SUBCASE("a checksum is verified") {
    std::vector<uint8_t> gre = {0xa0, 0x00, 0x65, 0x58, 0, 0, 0, 0, 0, 0, 0, 42, 1, 2, 3, 4, 5};
    uint16_t c = InternetChecksum(gre);
    gre[4] = static_cast<uint8_t>(c >> 8);
    gre[5] = static_cast<uint8_t>(c);
    REQUIRE(ParseGre(gre, &g) == ParseError::kOk);
    CHECK(g.key == 42);
    CHECK(g.header_len == 12);
    gre[16] ^= 0xff;
    CHECK(ParseGre(gre, &g) == ParseError::kBadChecksum);
  }
  SUBCASE("no key or another protocol is not a tunnel of ours") {
    Packet q(buf.data(), buf.size(), kDefaultHeadroom, inner.size());
    uint8_t* h = q.Push(4);
    h[0] = 0; h[1] = 0; h[2] = 0x65; h[3] = 0x58;
    REQUIRE(EncapIpv4(q, {Mac(3), Mac(4), Ip(1, 1, 1, 1), Ip(2, 2, 2, 2), 64, 0}, kIpProtoGre));
    CHECK(DecapGre(q.bytes(), &d) == ParseError::kUnsupported);
  }
}

TEST_CASE("net flow source ports stay in the dynamic range and follow the flow") {
  auto a = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoTcp, 10, 1000, 80);
  auto a2 = Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoTcp, 900, 1000, 80);
  CHECK(FlowSourcePort(a) == FlowSourcePort(a2));
  std::set<uint16_t> ports;
  for (uint16_t s = 1000; s < 1100; ++s) {
    uint16_t sp = FlowSourcePort(Ipv4Frame(Mac(1), Mac(2), Ip(10, 0, 0, 1), Ip(10, 0, 0, 2), kIpProtoTcp, 10, s, 80));
    CHECK(sp >= 49152);
    ports.insert(sp);
  }
  CHECK(ports.size() > 90);
}
