#include "qcloud/net/packet.h"

#include <arpa/inet.h>

#include <cstdio>

#include "wire.h"

namespace qcloud::net {
namespace {

using internal::Load16;
using internal::Load32;
using internal::Store16;
using internal::Store32;

// The folded one's-complement sum of an IPv4 header (a multiple of 4
// bytes), in native byte order: 0xffff when its checksum is right.
inline uint16_t HeaderSumNative(const uint8_t* p, size_t len) {
  uint64_t acc = 0;
  for (size_t i = 0; i < len; i += 4) {
    uint32_t w;
    std::memcpy(&w, p + i, 4);
    acc += w;
  }
  acc = (acc & 0xffffffffu) + (acc >> 32);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint16_t>(acc);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

// ---- addresses ---------------------------------------------------------------

std::optional<MacAddr> MacAddr::Parse(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  MacAddr m;
  for (size_t i = 0; i < 6; ++i) {
    int hi = HexDigit(text[i * 3]), lo = HexDigit(text[i * 3 + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    if (i < 5 && text[i * 3 + 2] != ':' && text[i * 3 + 2] != '-') return std::nullopt;
    m.b[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  return m;
}

std::string MacAddr::ToString() const {
  char out[18];
  std::snprintf(out, sizeof out, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]);
  return out;
}

std::optional<Ipv4Addr> Ipv4Addr::Parse(std::string_view text) {
  if (text.empty() || text.size() > 15) return std::nullopt;
  char z[16];
  std::memcpy(z, text.data(), text.size());
  z[text.size()] = 0;
  uint8_t raw[4];
  if (inet_pton(AF_INET, z, raw) != 1) return std::nullopt;
  return From(raw);
}

std::string Ipv4Addr::ToString() const {
  char out[16];
  std::snprintf(out, sizeof out, "%u.%u.%u.%u", value >> 24, (value >> 16) & 255, (value >> 8) & 255, value & 255);
  return out;
}

std::optional<Ipv6Addr> Ipv6Addr::Parse(std::string_view text) {
  if (text.empty() || text.size() > INET6_ADDRSTRLEN) return std::nullopt;
  char z[INET6_ADDRSTRLEN + 1];
  std::memcpy(z, text.data(), text.size());
  z[text.size()] = 0;
  Ipv6Addr a;
  if (inet_pton(AF_INET6, z, a.b.data()) != 1) return std::nullopt;
  return a;
}

std::string Ipv6Addr::ToString() const {
  char out[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, b.data(), out, sizeof out) == nullptr) return "?";
  return out;
}

const char* ParseErrorName(ParseError e) noexcept {
  switch (e) {
    case ParseError::kOk: return "ok";
    case ParseError::kTruncated: return "truncated";
    case ParseError::kTooLong: return "too_long";
    case ParseError::kBadVersion: return "bad_version";
    case ParseError::kBadHeaderLength: return "bad_header_length";
    case ParseError::kBadLength: return "bad_length";
    case ParseError::kBadChecksum: return "bad_checksum";
    case ParseError::kBadFlags: return "bad_flags";
    case ParseError::kUnsupported: return "unsupported";
  }
  return "unknown";
}

// ---- Ethernet, ARP -------------------------------------------------------------

ParseError ParseEthernet(std::span<const uint8_t> in, EthernetHeader* out) noexcept {
  if (in.size() > kMaxFrame) return ParseError::kTooLong;
  if (in.size() < kEthernetHeaderLen) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  out->dst = MacAddr::From(p);
  out->src = MacAddr::From(p + 6);
  size_t off = 12;
  uint16_t type = Load16(p + off);
  out->vlan_tags = 0;
  out->vlan_tci = 0;
  while (type == kEtherTypeVlan || type == kEtherTypeQinQ) {
    if (out->vlan_tags == kMaxVlanTags) return ParseError::kUnsupported;
    if (in.size() < off + 2 + kVlanTagLen) return ParseError::kTruncated;
    out->vlan_tci = Load16(p + off + 2);
    ++out->vlan_tags;
    off += kVlanTagLen;
    type = Load16(p + off);
  }
  out->ethertype = type;
  out->header_len = static_cast<uint8_t>(off + 2);
  return ParseError::kOk;
}

void WriteEthernet(uint8_t* out, const MacAddr& dst, const MacAddr& src, uint16_t ethertype) noexcept {
  std::memcpy(out, dst.b.data(), 6);
  std::memcpy(out + 6, src.b.data(), 6);
  Store16(out + 12, ethertype);
}

ParseError ParseArp(std::span<const uint8_t> in, ArpPacket* out) noexcept {
  if (in.size() < kArpLen) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  // Ethernet hardware (1), IPv4 protocol, lengths 6 and 4: the only ARP here.
  if (Load16(p) != 1 || Load16(p + 2) != kEtherTypeIpv4 || p[4] != 6 || p[5] != 4) return ParseError::kUnsupported;
  out->op = Load16(p + 6);
  out->sha = MacAddr::From(p + 8);
  out->spa = Ipv4Addr::From(p + 14);
  out->tha = MacAddr::From(p + 18);
  out->tpa = Ipv4Addr::From(p + 24);
  return ParseError::kOk;
}

void WriteArp(uint8_t* out, const ArpPacket& arp) noexcept {
  Store16(out, 1);
  Store16(out + 2, kEtherTypeIpv4);
  out[4] = 6;
  out[5] = 4;
  Store16(out + 6, arp.op);
  std::memcpy(out + 8, arp.sha.b.data(), 6);
  arp.spa.Write(out + 14);
  std::memcpy(out + 18, arp.tha.b.data(), 6);
  arp.tpa.Write(out + 24);
}

// ---- checksums -----------------------------------------------------------------

uint32_t ChecksumAdd(std::span<const uint8_t> in, uint32_t sum) noexcept {
  // The one's-complement sum does not depend on byte order (RFC 1071,
  // section 2(B)): add the bytes as native 32-bit words, fold to 16 bits,
  // and put that in network order once at the end.
  uint64_t acc = 0;
  const uint8_t* p = in.data();
  size_t n = in.size();
  while (n >= 16) {
    uint32_t w[4];
    std::memcpy(w, p, 16);
    acc += uint64_t{w[0]} + w[1] + uint64_t{w[2]} + w[3];
    p += 16;
    n -= 16;
  }
  while (n >= 4) {
    uint32_t w;
    std::memcpy(&w, p, 4);
    acc += w;
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    uint16_t w;
    std::memcpy(&w, p, 2);
    acc += w;
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    uint16_t w = 0;
    std::memcpy(&w, p, 1);  // the high half of a big-endian word
    acc += w;
  }
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return sum + ntohs(static_cast<uint16_t>(acc));
}

uint16_t ChecksumFinish(uint32_t sum) noexcept {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

uint16_t TransportChecksumV4(Ipv4Addr src, Ipv4Addr dst, uint8_t proto, std::span<const uint8_t> segment) noexcept {
  uint64_t sum = (src.value >> 16) + (src.value & 0xffff) + (dst.value >> 16) + (dst.value & 0xffff) + proto +
                 segment.size();
  while (sum >> 32) sum = (sum & 0xffffffffu) + (sum >> 32);
  return ChecksumFinish(ChecksumAdd(segment, static_cast<uint32_t>(sum)));
}

uint16_t TransportChecksumV6(const Ipv6Addr& src, const Ipv6Addr& dst, uint8_t proto,
                             std::span<const uint8_t> segment) noexcept {
  uint32_t sum = ChecksumAdd(src.b);
  sum = ChecksumAdd(dst.b, sum);
  uint64_t s = uint64_t{sum} + (segment.size() >> 16) + (segment.size() & 0xffff) + proto;
  while (s >> 32) s = (s & 0xffffffffu) + (s >> 32);
  return ChecksumFinish(ChecksumAdd(segment, static_cast<uint32_t>(s)));
}

// ---- IPv4, IPv6 ------------------------------------------------------------------

ParseError ParseIpv4(std::span<const uint8_t> in, Ipv4Header* out, bool verify_checksum) noexcept {
  if (in.size() < kIpv4MinHeaderLen) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  if ((p[0] >> 4) != 4) return ParseError::kBadVersion;
  size_t ihl = size_t{p[0] & 0x0fu} * 4;
  if (ihl < kIpv4MinHeaderLen) return ParseError::kBadHeaderLength;
  if (in.size() < ihl) return ParseError::kTruncated;
  out->header_len = static_cast<uint8_t>(ihl);
  out->tos = p[1];
  out->total_len = Load16(p + 2);
  if (out->total_len < ihl || out->total_len > in.size()) return ParseError::kBadLength;
  out->id = Load16(p + 4);
  out->frag = Load16(p + 6);
  out->ttl = p[8];
  out->proto = p[9];
  out->checksum = Load16(p + 10);
  out->src = Ipv4Addr::From(p + 12);
  out->dst = Ipv4Addr::From(p + 16);
  if (verify_checksum && HeaderSumNative(p, ihl) != 0xffff) return ParseError::kBadChecksum;
  return ParseError::kOk;
}

void WriteIpv4(uint8_t* out, const Ipv4Header& h) noexcept {
  out[0] = 0x45;
  out[1] = h.tos;
  Store16(out + 2, h.total_len);
  Store16(out + 4, h.id);
  Store16(out + 6, h.frag);
  out[8] = h.ttl;
  out[9] = h.proto;
  Store16(out + 10, 0);
  h.src.Write(out + 12);
  h.dst.Write(out + 16);
  const uint16_t sum = static_cast<uint16_t>(~HeaderSumNative(out, kIpv4MinHeaderLen));
  std::memcpy(out + 10, &sum, 2);  // native order in, native order out
}

ParseError ParseIpv6(std::span<const uint8_t> in, Ipv6Header* out) noexcept {
  if (in.size() < kIpv6HeaderLen) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  if ((p[0] >> 4) != 6) return ParseError::kBadVersion;
  out->traffic_class = static_cast<uint8_t>(((p[0] & 0x0f) << 4) | (p[1] >> 4));
  out->flow_label = (uint32_t{p[1] & 0x0fu} << 16) | Load16(p + 2);
  out->payload_len = Load16(p + 4);
  // A jumbogram (payload length 0 with a hop-by-hop option) is not carried.
  if (kIpv6HeaderLen + out->payload_len > in.size()) return ParseError::kBadLength;
  out->next_header = p[6];
  out->hop_limit = p[7];
  out->src = Ipv6Addr::From(p + 8);
  out->dst = Ipv6Addr::From(p + 24);
  out->fragment = false;
  size_t end = kIpv6HeaderLen + out->payload_len;
  size_t off = kIpv6HeaderLen;
  uint8_t next = out->next_header;
  for (size_t n = 0;; ++n) {
    // Hop-by-hop 0, routing 43, fragment 44, destination options 60.
    if (next != 0 && next != 43 && next != 44 && next != 60) break;
    if (n == kMaxIpv6ExtHeaders) return ParseError::kUnsupported;
    if (end < off + 8) return ParseError::kTruncated;
    size_t len = next == 44 ? 8 : (size_t{p[off + 1]} + 1) * 8;
    if (next == 44) out->fragment = true;
    if (end < off + len) return ParseError::kTruncated;
    next = p[off];
    off += len;
  }
  out->upper_proto = next;
  out->header_len = static_cast<uint16_t>(off);
  return ParseError::kOk;
}

// ---- UDP, TCP, ICMP --------------------------------------------------------------

ParseError ParseUdp(std::span<const uint8_t> in, UdpHeader* out) noexcept {
  if (in.size() < kUdpHeaderLen) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  out->src_port = Load16(p);
  out->dst_port = Load16(p + 2);
  out->length = Load16(p + 4);
  out->checksum = Load16(p + 6);
  if (out->length < kUdpHeaderLen || out->length > in.size()) return ParseError::kBadLength;
  return ParseError::kOk;
}

ParseError ParseTcp(std::span<const uint8_t> in, TcpHeader* out) noexcept {
  if (in.size() < kTcpMinHeaderLen) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  out->src_port = Load16(p);
  out->dst_port = Load16(p + 2);
  out->seq = Load32(p + 4);
  out->ack = Load32(p + 8);
  size_t hl = static_cast<size_t>(p[12] >> 4) * 4;
  if (hl < kTcpMinHeaderLen) return ParseError::kBadHeaderLength;
  if (hl > in.size()) return ParseError::kTruncated;
  out->header_len = static_cast<uint8_t>(hl);
  out->flags = p[13];
  out->window = Load16(p + 14);
  out->checksum = Load16(p + 16);
  out->urgent = Load16(p + 18);
  return ParseError::kOk;
}

ParseError ParseIcmp(std::span<const uint8_t> in, IcmpHeader* out) noexcept {
  if (in.size() < kIcmpHeaderLen) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  out->type = p[0];
  out->code = p[1];
  out->checksum = Load16(p + 2);
  out->rest = Load32(p + 4);
  return ParseError::kOk;
}

// ---- VXLAN, GRE ------------------------------------------------------------------

ParseError ParseVxlan(std::span<const uint8_t> in, VxlanHeader* out) noexcept {
  if (in.size() < kVxlanHeaderLen) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  if ((p[0] & 0x08) == 0) return ParseError::kBadFlags;
  out->vni = Load32(p + 4) >> 8;
  return ParseError::kOk;
}

void WriteVxlan(uint8_t* out, uint32_t vni) noexcept {
  Store32(out, 0x08000000u);
  Store32(out + 4, vni << 8);
}

ParseError ParseGre(std::span<const uint8_t> in, GreHeader* out) noexcept {
  if (in.size() < 4) return ParseError::kTruncated;
  const uint8_t* p = in.data();
  uint16_t flags = Load16(p);
  if ((flags & 0x0007) != 0) return ParseError::kBadVersion;
  // R (routing, RFC 1701), s (strict source route) and recursion control
  // are not in RFC 2784/2890.
  if ((flags & 0x4000) != 0 || (flags & 0x0800) != 0 || (flags & 0x0700) != 0) return ParseError::kBadFlags;
  out->has_checksum = (flags & 0x8000) != 0;
  out->has_key = (flags & 0x2000) != 0;
  out->has_seq = (flags & 0x1000) != 0;
  out->protocol = Load16(p + 2);
  size_t len = 4 + (out->has_checksum ? 4 : 0) + (out->has_key ? 4 : 0) + (out->has_seq ? 4 : 0);
  if (in.size() < len) return ParseError::kTruncated;
  size_t off = 4;
  out->checksum = 0;
  out->key = 0;
  out->seq = 0;
  if (out->has_checksum) {
    out->checksum = Load16(p + off);
    off += 4;
    if (InternetChecksum(in) != 0) return ParseError::kBadChecksum;
  }
  if (out->has_key) {
    out->key = Load32(p + off);
    off += 4;
  }
  if (out->has_seq) out->seq = Load32(p + off);
  out->header_len = static_cast<uint8_t>(len);
  return ParseError::kOk;
}

size_t WriteGre(uint8_t* out, uint32_t key, std::optional<uint32_t> seq, uint16_t protocol) noexcept {
  Store16(out, static_cast<uint16_t>(0x2000 | (seq ? 0x1000 : 0)));
  Store16(out + 2, protocol);
  Store32(out + 4, key);
  if (!seq) return 8;
  Store32(out + 8, *seq);
  return 12;
}

// ---- a whole frame ---------------------------------------------------------------

ParseError ClassifyFrame(std::span<const uint8_t> frame, FrameInfo* out) noexcept {
  if (ParseError e = ParseEthernet(frame, &out->eth); e != ParseError::kOk) return e;
  out->l3 = L3::kNone;
  out->l3_offset = out->eth.header_len;
  out->l4_offset = 0;
  out->l4_proto = 0;
  out->src_port = out->dst_port = 0;
  std::span<const uint8_t> l3 = frame.subspan(out->eth.header_len);
  size_t l4_len = 0;
  bool first_fragment = false;
  switch (out->eth.ethertype) {
    case kEtherTypeArp: {
      if (ParseError e = ParseArp(l3, &out->arp); e != ParseError::kOk) return e;
      out->l3 = L3::kArp;
      return ParseError::kOk;
    }
    case kEtherTypeIpv4: {
      Ipv4Header ip;
      if (ParseError e = ParseIpv4(l3, &ip, true); e != ParseError::kOk) return e;
      out->l3 = L3::kIpv4;
      out->src4 = ip.src;
      out->dst4 = ip.dst;
      out->l4_proto = ip.proto;
      if (ip.IsLaterFragment()) return ParseError::kOk;
      first_fragment = ip.IsFragment();
      out->l4_offset = static_cast<uint16_t>(out->l3_offset + ip.header_len);
      l4_len = ip.total_len - ip.header_len;
      break;
    }
    case kEtherTypeIpv6: {
      Ipv6Header ip;
      if (ParseError e = ParseIpv6(l3, &ip); e != ParseError::kOk) return e;
      out->l3 = L3::kIpv6;
      out->src6 = ip.src;
      out->dst6 = ip.dst;
      out->l4_proto = ip.upper_proto;
      // A later fragment has no L4 header; the first one is treated alike
      // (its header may be anywhere): the switch never needs it.
      if (ip.fragment) return ParseError::kOk;
      out->l4_offset = static_cast<uint16_t>(out->l3_offset + ip.header_len);
      l4_len = kIpv6HeaderLen + ip.payload_len - ip.header_len;
      break;
    }
    default:
      return ParseError::kOk;
  }
  std::span<const uint8_t> l4 = frame.subspan(out->l4_offset, l4_len);
  switch (out->l4_proto) {
    case kIpProtoUdp: {
      UdpHeader u;
      ParseError e = ParseUdp(l4, &u);
      // A first fragment carries the whole datagram's UDP length.
      if (e == ParseError::kBadLength && first_fragment && u.length >= kUdpHeaderLen) e = ParseError::kOk;
      if (e != ParseError::kOk) return e;
      out->src_port = u.src_port;
      out->dst_port = u.dst_port;
      break;
    }
    case kIpProtoTcp: {
      TcpHeader t;
      if (ParseError e = ParseTcp(l4, &t); e != ParseError::kOk) return e;
      out->src_port = t.src_port;
      out->dst_port = t.dst_port;
      break;
    }
    case kIpProtoIcmp:
    case kIpProtoIcmpv6: {
      IcmpHeader h;
      if (ParseError e = ParseIcmp(l4, &h); e != ParseError::kOk) return e;
      break;
    }
    default:
      out->l4_offset = 0;
      break;
  }
  return ParseError::kOk;
}

// ---- encapsulation ---------------------------------------------------------------

bool PushVxlan(Packet& p, uint32_t vni) noexcept {
  if (vni > 0xffffff) return false;
  uint8_t* h = p.Push(kVxlanHeaderLen);
  if (h == nullptr) return false;
  WriteVxlan(h, vni);
  return true;
}

bool PushGre(Packet& p, uint32_t key, std::optional<uint32_t> seq) noexcept {
  uint8_t* h = p.Push(seq ? 12 : 8);
  if (h == nullptr) return false;
  WriteGre(h, key, seq);
  return true;
}

namespace {

bool PushIpv4(Packet& p, const Underlay& u, uint8_t proto) {
  if (p.size() + kIpv4MinHeaderLen > 65535) return false;
  uint8_t* h = p.Push(kIpv4MinHeaderLen);
  if (h == nullptr) return false;
  Ipv4Header ip;
  ip.tos = u.tos;
  ip.total_len = static_cast<uint16_t>(p.size());
  ip.frag = 0x4000;  // DF: the underlay is sized for the tunnel
  ip.ttl = u.ttl;
  ip.proto = proto;
  ip.src = u.src;
  ip.dst = u.dst;
  WriteIpv4(h, ip);
  return true;
}

}  // namespace

bool EncapIpv4Udp(Packet& p, const Underlay& u, uint16_t src_port, uint16_t dst_port) noexcept {
  if (p.headroom() < kUdpHeaderLen + kIpv4MinHeaderLen + kEthernetHeaderLen) return false;
  if (p.size() + kUdpHeaderLen + kIpv4MinHeaderLen > 65535) return false;
  uint8_t* udp = p.Push(kUdpHeaderLen);
  Store16(udp, src_port);
  Store16(udp + 2, dst_port);
  Store16(udp + 4, static_cast<uint16_t>(p.size()));
  Store16(udp + 6, 0);
  if (!PushIpv4(p, u, kIpProtoUdp)) return false;
  WriteEthernet(p.Push(kEthernetHeaderLen), u.dst_mac, u.src_mac, kEtherTypeIpv4);
  return true;
}

bool EncapIpv4(Packet& p, const Underlay& u, uint8_t proto) noexcept {
  if (p.headroom() < kIpv4MinHeaderLen + kEthernetHeaderLen) return false;
  if (!PushIpv4(p, u, proto)) return false;
  WriteEthernet(p.Push(kEthernetHeaderLen), u.dst_mac, u.src_mac, kEtherTypeIpv4);
  return true;
}

namespace {

// The outer Ethernet + IPv4 of an underlay frame: the IP payload.
ParseError OuterIpv4(std::span<const uint8_t> frame, uint8_t proto, Decapsulated* out,
                     std::span<const uint8_t>* payload) {
  EthernetHeader eth;
  if (ParseError e = ParseEthernet(frame, &eth); e != ParseError::kOk) return e;
  if (eth.ethertype != kEtherTypeIpv4) return ParseError::kUnsupported;
  std::span<const uint8_t> l3 = frame.subspan(eth.header_len);
  Ipv4Header ip;
  if (ParseError e = ParseIpv4(l3, &ip, true); e != ParseError::kOk) return e;
  if (ip.IsFragment() || ip.proto != proto) return ParseError::kUnsupported;
  out->outer_src = ip.src;
  out->outer_dst = ip.dst;
  *payload = l3.subspan(ip.header_len, ip.total_len - ip.header_len);
  return ParseError::kOk;
}

}  // namespace

ParseError DecapVxlan(std::span<const uint8_t> frame, Decapsulated* out, uint16_t vxlan_port) noexcept {
  std::span<const uint8_t> l4;
  if (ParseError e = OuterIpv4(frame, kIpProtoUdp, out, &l4); e != ParseError::kOk) return e;
  UdpHeader udp;
  if (ParseError e = ParseUdp(l4, &udp); e != ParseError::kOk) return e;
  if (udp.dst_port != vxlan_port) return ParseError::kUnsupported;
  std::span<const uint8_t> payload = l4.subspan(kUdpHeaderLen, udp.length - kUdpHeaderLen);
  VxlanHeader vx;
  if (ParseError e = ParseVxlan(payload, &vx); e != ParseError::kOk) return e;
  out->vni = vx.vni;
  out->gre = false;
  out->inner = payload.subspan(kVxlanHeaderLen);
  return ParseError::kOk;
}

ParseError DecapGre(std::span<const uint8_t> frame, Decapsulated* out) noexcept {
  std::span<const uint8_t> payload;
  if (ParseError e = OuterIpv4(frame, kIpProtoGre, out, &payload); e != ParseError::kOk) return e;
  GreHeader gre;
  if (ParseError e = ParseGre(payload, &gre); e != ParseError::kOk) return e;
  if (!gre.has_key || gre.protocol != kEtherTypeTeb) return ParseError::kUnsupported;
  out->vni = gre.key;
  out->gre = true;
  out->inner = payload.subspan(gre.header_len);
  return ParseError::kOk;
}

uint16_t FlowSourcePort(std::span<const uint8_t> inner) noexcept {
  // FNV-1a over the inner addresses and ports (or the MACs of non-IP
  // frames): stable per flow, spread across flows.
  uint64_t h = 1469598103934665603ull;
  auto mix = [&h](const uint8_t* p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  };
  FrameInfo f;
  if (ClassifyFrame(inner, &f) == ParseError::kOk && (f.l3 == L3::kIpv4 || f.l3 == L3::kIpv6)) {
    if (f.l3 == L3::kIpv4) {
      uint32_t a[2] = {f.src4.value, f.dst4.value};
      mix(reinterpret_cast<const uint8_t*>(a), sizeof a);
    } else {
      mix(f.src6.b.data(), 16);
      mix(f.dst6.b.data(), 16);
    }
    uint16_t ports[2] = {f.src_port, f.dst_port};
    mix(reinterpret_cast<const uint8_t*>(ports), sizeof ports);
    mix(&f.l4_proto, 1);
  } else if (inner.size() >= 12) {
    mix(inner.data(), 12);
  }
  return static_cast<uint16_t>(49152 + (h ^ (h >> 32)) % 16384);
}

}  // namespace qcloud::net
