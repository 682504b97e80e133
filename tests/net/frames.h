#pragma once

// Test frames, built byte by byte with the codecs' writers (shared by the
// net unit tests, benchmarks and fuzz seeds).

#include <cstdint>
#include <cstring>
#include <vector>

#include "qcloud/net/packet.h"

namespace qcloud::net::testframes {

inline MacAddr Mac(uint8_t last, uint8_t vm_group = 0) { return MacAddr{{0x02, 0, 0, vm_group, 0, last}}; }
inline Ipv4Addr Ip(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return {(uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | d};
}

// Ethernet + IPv4 + UDP (or TCP, ICMP echo) with `payload` bytes, correct
// IPv4 and L4 checksums; padded to 60 bytes like a NIC would.
inline std::vector<uint8_t> Ipv4Frame(MacAddr src_mac, MacAddr dst_mac, Ipv4Addr src, Ipv4Addr dst,
                                      uint8_t proto = kIpProtoUdp, size_t payload = 18,
                                      uint16_t sport = 1234, uint16_t dport = 5678) {
  size_t l4h = proto == kIpProtoTcp ? kTcpMinHeaderLen : proto == kIpProtoUdp ? kUdpHeaderLen : kIcmpHeaderLen;
  size_t ip_len = kIpv4MinHeaderLen + l4h + payload;
  std::vector<uint8_t> f(std::max<size_t>(60, kEthernetHeaderLen + ip_len), 0);
  WriteEthernet(f.data(), dst_mac, src_mac, kEtherTypeIpv4);
  Ipv4Header h;
  h.total_len = static_cast<uint16_t>(ip_len);
  h.ttl = 64;
  h.proto = proto;
  h.src = src;
  h.dst = dst;
  h.id = 7;
  WriteIpv4(f.data() + kEthernetHeaderLen, h);
  uint8_t* l4 = f.data() + kEthernetHeaderLen + kIpv4MinHeaderLen;
  for (size_t i = 0; i < payload; ++i) l4[l4h + i] = static_cast<uint8_t>(i * 7 + 1);
  size_t seg = l4h + payload;
  size_t csum_at = 0;
  if (proto == kIpProtoUdp) {
    l4[0] = sport >> 8; l4[1] = sport & 255; l4[2] = dport >> 8; l4[3] = dport & 255;
    l4[4] = static_cast<uint8_t>(seg >> 8); l4[5] = static_cast<uint8_t>(seg);
    csum_at = 6;
  } else if (proto == kIpProtoTcp) {
    l4[0] = sport >> 8; l4[1] = sport & 255; l4[2] = dport >> 8; l4[3] = dport & 255;
    l4[12] = 5 << 4;
    l4[13] = 0x18;
    l4[14] = 0xff;
    csum_at = 16;
  } else {
    l4[0] = 8;  // echo request
    csum_at = 2;
  }
  uint16_t c = proto == kIpProtoIcmp ? InternetChecksum({l4, seg}) : TransportChecksumV4(src, dst, proto, {l4, seg});
  if (proto == kIpProtoUdp && c == 0) c = 0xffff;
  l4[csum_at] = static_cast<uint8_t>(c >> 8);
  l4[csum_at + 1] = static_cast<uint8_t>(c);
  return f;
}

inline std::vector<uint8_t> ArpFrame(uint16_t op, MacAddr eth_src, MacAddr eth_dst, MacAddr sha, Ipv4Addr spa,
                                     MacAddr tha, Ipv4Addr tpa) {
  std::vector<uint8_t> f(60, 0);
  WriteEthernet(f.data(), eth_dst, eth_src, kEtherTypeArp);
  WriteArp(f.data() + kEthernetHeaderLen, {op, sha, spa, tha, tpa});
  return f;
}

// Ethernet + IPv6 + UDP, with a hop-by-hop extension header when asked.
inline std::vector<uint8_t> Ipv6Frame(MacAddr src_mac, MacAddr dst_mac, const Ipv6Addr& src, const Ipv6Addr& dst,
                                      bool hop_by_hop = false, size_t payload = 10) {
  size_t ext = hop_by_hop ? 8 : 0;
  size_t plen = ext + kUdpHeaderLen + payload;
  std::vector<uint8_t> f(kEthernetHeaderLen + kIpv6HeaderLen + plen, 0);
  WriteEthernet(f.data(), dst_mac, src_mac, kEtherTypeIpv6);
  uint8_t* ip = f.data() + kEthernetHeaderLen;
  ip[0] = 0x60;
  ip[4] = static_cast<uint8_t>(plen >> 8);
  ip[5] = static_cast<uint8_t>(plen);
  ip[6] = hop_by_hop ? 0 : kIpProtoUdp;
  ip[7] = 64;
  std::memcpy(ip + 8, src.b.data(), 16);
  std::memcpy(ip + 24, dst.b.data(), 16);
  uint8_t* p = ip + kIpv6HeaderLen;
  if (hop_by_hop) {
    p[0] = kIpProtoUdp;
    p[1] = 0;  // 8 bytes
    p[2] = 1;  // PadN
    p[3] = 4;
    p += 8;
  }
  size_t seg = kUdpHeaderLen + payload;
  p[0] = 0x30; p[1] = 0x39; p[2] = 0x00; p[3] = 0x35;
  p[4] = static_cast<uint8_t>(seg >> 8); p[5] = static_cast<uint8_t>(seg);
  uint16_t c = TransportChecksumV6(src, dst, kIpProtoUdp, {p, seg});
  p[6] = static_cast<uint8_t>(c >> 8);
  p[7] = static_cast<uint8_t>(c);
  return f;
}

}  // namespace qcloud::net::testframes
