#pragma once

// qcloud::net packet codecs: Ethernet (with 802.1Q/802.1ad tags), ARP,
// IPv4, IPv6 (extension headers skipped), UDP, TCP, ICMP/ICMPv6, VXLAN
// (RFC 7348) and GRE (RFC 2784 with RFC 2890's key and sequence number),
// and the Internet checksum. Parsing is zero-copy over spans: a parser
// reads a header from the front of its input, checks it, and says how many
// bytes it took; nothing is allocated.
//
//   FrameInfo f;
//   if (ParseError e = ClassifyFrame(frame, &f); e != ParseError::kOk) drop(ParseErrorName(e));
//   if (f.l3 == L3::kIpv4 && f.l4_proto == kIpProtoTcp) ... f.src4, f.l4_offset ...
//
//   Packet p(buffer, capacity, /*headroom=*/kDefaultHeadroom);   // frame written at buffer + headroom
//   PushVxlan(p, vni);                     // 8 bytes in front, in place
//   EncapIpv4Udp(p, outer, sport, 4789);   // outer Ethernet + IPv4 + UDP, in place
//   DecapVxlan(p.bytes(), &d);             // outer headers checked, d.inner is the frame
//
// Bounds: every parser checks its input's length before it reads; a length
// field that points past the input, a header length below the minimum, a
// wrong version, a bad IPv4 header checksum (when checked) or a GRE header
// with flags this code does not know is an error with its own ParseError,
// never a read out of bounds. Frames longer than kMaxFrame are kTooLong.
//
// Byte order: addresses are kept as bytes in network order (MacAddr,
// Ipv6Addr) or as a host-order integer (Ipv4Addr::value, so 10.0.0.1 is
// 0x0a000001); header fields in the structs are host order.
//
// Thread safety: free functions on caller-owned memory.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "qcloud/core/export.h"

namespace qcloud::net {

inline constexpr uint16_t kEtherTypeIpv4 = 0x0800;
inline constexpr uint16_t kEtherTypeArp = 0x0806;
inline constexpr uint16_t kEtherTypeVlan = 0x8100;  // 802.1Q
inline constexpr uint16_t kEtherTypeQinQ = 0x88a8;  // 802.1ad outer tag
inline constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
inline constexpr uint16_t kEtherTypeTeb = 0x6558;   // transparent Ethernet bridging (GRE payload)
inline constexpr uint8_t kIpProtoIcmp = 1;
inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr uint8_t kIpProtoUdp = 17;
inline constexpr uint8_t kIpProtoGre = 47;
inline constexpr uint8_t kIpProtoIcmpv6 = 58;
inline constexpr uint16_t kVxlanPort = 4789;        // IANA
inline constexpr size_t kEthernetHeaderLen = 14;
inline constexpr size_t kVlanTagLen = 4;
inline constexpr size_t kArpLen = 28;               // Ethernet/IPv4 ARP body
inline constexpr size_t kIpv4MinHeaderLen = 20;
inline constexpr size_t kIpv6HeaderLen = 40;
inline constexpr size_t kUdpHeaderLen = 8;
inline constexpr size_t kTcpMinHeaderLen = 20;
inline constexpr size_t kIcmpHeaderLen = 8;
inline constexpr size_t kVxlanHeaderLen = 8;
inline constexpr size_t kGreKeyHeaderLen = 8;       // base 4 + key 4
inline constexpr size_t kMaxVlanTags = 2;
inline constexpr size_t kMaxIpv6ExtHeaders = 8;
inline constexpr size_t kMaxFrame = 65535 + kEthernetHeaderLen + 2 * kVlanTagLen;
// Outer Ethernet + IPv4 + UDP + VXLAN: what a VXLAN tunnel adds to a frame.
inline constexpr size_t kVxlanOverhead = kEthernetHeaderLen + kIpv4MinHeaderLen + kUdpHeaderLen + kVxlanHeaderLen;
inline constexpr size_t kDefaultHeadroom = 128;     // room for any encapsulation here, with slack

struct QCLOUD_EXPORT MacAddr {
  std::array<uint8_t, 6> b{};
  static constexpr MacAddr Broadcast() { return MacAddr{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
  // "02:00:00:00:00:01" (case-insensitive, ':' or '-'); nullopt otherwise.
  static std::optional<MacAddr> Parse(std::string_view text);
  static MacAddr From(const uint8_t* p) { MacAddr m; std::memcpy(m.b.data(), p, 6); return m; }
  std::string ToString() const;
  bool IsMulticast() const { return (b[0] & 1) != 0; }  // broadcast included
  bool IsBroadcast() const { return *this == Broadcast(); }
  bool IsZero() const { return *this == MacAddr{}; }
  uint64_t Key() const {  // the 48 bits as an integer, for hashing
    return (uint64_t{b[0]} << 40) | (uint64_t{b[1]} << 32) | (uint64_t{b[2]} << 24) | (uint64_t{b[3]} << 16) |
           (uint64_t{b[4]} << 8) | b[5];
  }
  friend bool operator==(const MacAddr&, const MacAddr&) = default;
};

struct QCLOUD_EXPORT Ipv4Addr {
  uint32_t value = 0;  // host order: 10.0.0.1 = 0x0a000001
  static std::optional<Ipv4Addr> Parse(std::string_view text);  // dotted quad
  static Ipv4Addr From(const uint8_t* p) {
    return {(uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]};
  }
  void Write(uint8_t* p) const {
    p[0] = static_cast<uint8_t>(value >> 24); p[1] = static_cast<uint8_t>(value >> 16);
    p[2] = static_cast<uint8_t>(value >> 8);  p[3] = static_cast<uint8_t>(value);
  }
  std::string ToString() const;
  friend bool operator==(const Ipv4Addr&, const Ipv4Addr&) = default;
  friend auto operator<=>(const Ipv4Addr&, const Ipv4Addr&) = default;
};

struct QCLOUD_EXPORT Ipv6Addr {
  std::array<uint8_t, 16> b{};
  static std::optional<Ipv6Addr> Parse(std::string_view text);  // inet_pton's grammar
  static Ipv6Addr From(const uint8_t* p) { Ipv6Addr a; std::memcpy(a.b.data(), p, 16); return a; }
  std::string ToString() const;
  bool IsLinkLocal() const { return b[0] == 0xfe && (b[1] & 0xc0) == 0x80; }
  bool IsUnspecified() const { return *this == Ipv6Addr{}; }
  bool IsMulticast() const { return b[0] == 0xff; }
  friend bool operator==(const Ipv6Addr&, const Ipv6Addr&) = default;
};

enum class ParseError : uint8_t {
  kOk = 0,
  kTruncated,       // the input ends inside a header or before a length field's end
  kTooLong,         // longer than kMaxFrame
  kBadVersion,      // IP version, GRE version
  kBadHeaderLength, // IPv4 IHL < 5, TCP data offset < 5
  kBadLength,       // a total/payload/UDP length that disagrees with the input
  kBadChecksum,     // IPv4 header checksum (when verified)
  kBadFlags,        // VXLAN without the I flag; GRE routing present
  kUnsupported,     // ARP for other than Ethernet/IPv4; too many VLAN tags or IPv6 extension headers
};
QCLOUD_EXPORT const char* ParseErrorName(ParseError e) noexcept;

// ---- headers -------------------------------------------------------------

struct EthernetHeader {
  MacAddr dst;
  MacAddr src;
  uint16_t ethertype = 0;   // after any VLAN tags
  uint16_t vlan_tci = 0;    // the innermost 802.1Q tag's TCI (VLAN id in the low 12 bits)
  uint8_t vlan_tags = 0;    // 0, 1 or 2
  uint8_t header_len = 0;   // 14 + 4 per tag
};
QCLOUD_EXPORT ParseError ParseEthernet(std::span<const uint8_t> in, EthernetHeader* out) noexcept;
// Writes 14 bytes (no tag).
QCLOUD_EXPORT void WriteEthernet(uint8_t* out, const MacAddr& dst, const MacAddr& src, uint16_t ethertype) noexcept;

struct ArpPacket {
  uint16_t op = 0;  // 1 request, 2 reply
  MacAddr sha;
  Ipv4Addr spa;
  MacAddr tha;
  Ipv4Addr tpa;
};
inline constexpr uint16_t kArpRequest = 1;
inline constexpr uint16_t kArpReply = 2;
QCLOUD_EXPORT ParseError ParseArp(std::span<const uint8_t> in, ArpPacket* out) noexcept;
QCLOUD_EXPORT void WriteArp(uint8_t* out, const ArpPacket& arp) noexcept;  // kArpLen bytes

struct Ipv4Header {
  uint8_t header_len = 0;  // bytes (IHL * 4)
  uint8_t tos = 0;
  uint16_t total_len = 0;
  uint16_t id = 0;
  uint16_t frag = 0;       // flags and fragment offset
  uint8_t ttl = 0;
  uint8_t proto = 0;
  uint16_t checksum = 0;
  Ipv4Addr src;
  Ipv4Addr dst;
  bool IsFragment() const { return (frag & 0x3fff) != 0; }  // MF set or an offset
  bool IsLaterFragment() const { return (frag & 0x1fff) != 0; }
};
// `in` starts at the IPv4 header and may carry trailing bytes (Ethernet
// padding) beyond total_len; total_len larger than `in` is kBadLength.
QCLOUD_EXPORT ParseError ParseIpv4(std::span<const uint8_t> in, Ipv4Header* out, bool verify_checksum) noexcept;
// Writes a 20-byte header with its checksum.
QCLOUD_EXPORT void WriteIpv4(uint8_t* out, const Ipv4Header& h) noexcept;

struct Ipv6Header {
  uint8_t traffic_class = 0;
  uint32_t flow_label = 0;
  uint16_t payload_len = 0;
  uint8_t next_header = 0;  // the fixed header's
  uint8_t hop_limit = 0;
  Ipv6Addr src;
  Ipv6Addr dst;
  uint8_t upper_proto = 0;  // after hop-by-hop, routing, destination-options and fragment headers
  uint16_t header_len = 0;  // 40 + the extension headers skipped
  bool fragment = false;    // a fragment header was present
};
QCLOUD_EXPORT ParseError ParseIpv6(std::span<const uint8_t> in, Ipv6Header* out) noexcept;

struct UdpHeader {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint16_t length = 0;    // header + payload
  uint16_t checksum = 0;
};
// `in` is the IP payload; length < 8 or > in.size() is kBadLength.
QCLOUD_EXPORT ParseError ParseUdp(std::span<const uint8_t> in, UdpHeader* out) noexcept;

struct TcpHeader {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t seq = 0;
  uint32_t ack = 0;
  uint8_t header_len = 0;  // bytes (data offset * 4)
  uint8_t flags = 0;       // FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80
  uint16_t window = 0;
  uint16_t checksum = 0;
  uint16_t urgent = 0;
};
QCLOUD_EXPORT ParseError ParseTcp(std::span<const uint8_t> in, TcpHeader* out) noexcept;

struct IcmpHeader {  // ICMP and ICMPv6 share the first 8 bytes' shape
  uint8_t type = 0;
  uint8_t code = 0;
  uint16_t checksum = 0;
  uint32_t rest = 0;  // identifier and sequence for echo
};
QCLOUD_EXPORT ParseError ParseIcmp(std::span<const uint8_t> in, IcmpHeader* out) noexcept;

struct VxlanHeader {
  uint32_t vni = 0;  // 24 bits
};
// RFC 7348: the I flag must be set; reserved bits are ignored on receipt.
QCLOUD_EXPORT ParseError ParseVxlan(std::span<const uint8_t> in, VxlanHeader* out) noexcept;
QCLOUD_EXPORT void WriteVxlan(uint8_t* out, uint32_t vni) noexcept;  // 8 bytes, I flag set

struct GreHeader {
  bool has_checksum = false;
  bool has_key = false;
  bool has_seq = false;
  uint16_t protocol = 0;
  uint16_t checksum = 0;
  uint32_t key = 0;
  uint32_t seq = 0;
  uint8_t header_len = 0;  // 4 + 4 per optional field
};
// RFC 2784 version 0 with RFC 2890's key and sequence number; routing
// (RFC 1701's R flag), strict source routing and nonzero version are
// kBadFlags/kBadVersion; a present checksum is verified over the GRE
// header and payload.
QCLOUD_EXPORT ParseError ParseGre(std::span<const uint8_t> in, GreHeader* out) noexcept;
// Writes a header with the key (and the sequence number when given):
// 8 or 12 bytes, protocol kEtherTypeTeb unless told. Returns its length.
QCLOUD_EXPORT size_t WriteGre(uint8_t* out, uint32_t key, std::optional<uint32_t> seq = std::nullopt,
                              uint16_t protocol = kEtherTypeTeb) noexcept;

// ---- checksums -------------------------------------------------------------

// The one's-complement sum of `in` (folded to 16 bits) added to `sum`
// (not folded: ChecksumFinish folds).
QCLOUD_EXPORT uint32_t ChecksumAdd(std::span<const uint8_t> in, uint32_t sum = 0) noexcept;
// Folds a sum to 16 bits and complements it: the value to put in a header.
QCLOUD_EXPORT uint16_t ChecksumFinish(uint32_t sum) noexcept;
// RFC 1071 over `in`.
inline uint16_t InternetChecksum(std::span<const uint8_t> in) noexcept { return ChecksumFinish(ChecksumAdd(in)); }
// The UDP/TCP/ICMPv6 checksum of `segment` (header + payload) with the
// IPv4 or IPv6 pseudo-header, over the checksum field as it is: with the
// field zeroed it is the value to write there; with a right value there
// it is 0.
QCLOUD_EXPORT uint16_t TransportChecksumV4(Ipv4Addr src, Ipv4Addr dst, uint8_t proto,
                                           std::span<const uint8_t> segment) noexcept;
QCLOUD_EXPORT uint16_t TransportChecksumV6(const Ipv6Addr& src, const Ipv6Addr& dst, uint8_t proto,
                                           std::span<const uint8_t> segment) noexcept;

// ---- a frame in one pass ---------------------------------------------------

enum class L3 : uint8_t { kNone, kArp, kIpv4, kIpv6 };

struct FrameInfo {
  EthernetHeader eth;
  L3 l3 = L3::kNone;         // kNone: another ethertype (carried, not inspected)
  uint16_t l3_offset = 0;
  uint16_t l4_offset = 0;    // 0 when there is no L4 header (ARP, fragments after the first)
  uint8_t l4_proto = 0;
  ArpPacket arp;             // l3 == kArp
  Ipv4Addr src4, dst4;       // l3 == kIpv4
  Ipv6Addr src6, dst6;       // l3 == kIpv6
  uint16_t src_port = 0;     // UDP/TCP, when l4_offset != 0
  uint16_t dst_port = 0;
};
// Ethernet, tags, then ARP, IPv4 (header checksum verified) or IPv6, then
// the UDP/TCP/ICMP header when present in the first fragment. The L4
// checksum is not verified (a guest with checksum offload leaves it
// partial).
QCLOUD_EXPORT ParseError ClassifyFrame(std::span<const uint8_t> frame, FrameInfo* out) noexcept;

// ---- a frame with headroom, for encapsulation in place --------------------

// What a frame from a device with offloads still needs done (offload.h):
// a TCP super-frame to cut into segments, or a checksum left partial.
struct Offload {
  enum Gso : uint8_t { kNone = 0, kTcp4 = 1, kTcp6 = 4 };  // virtio's GSO type numbers
  Gso gso = kNone;
  bool ecn = false;            // the super-frame carries CWR (first segment only)
  bool csum_partial = false;   // the L4 checksum field holds only the pseudo-header sum
  uint16_t hdr_len = 0;        // bytes of headers (Ethernet to the end of TCP)
  uint16_t gso_size = 0;       // payload bytes per segment (the MSS)
  uint16_t csum_start = 0;     // where checksummed bytes begin (the L4 header)
  uint16_t csum_offset = 0;    // the checksum field, from csum_start
};

// A frame inside a caller's buffer: [buffer .. head) is headroom,
// [head .. head+len) the frame. Push() grows the frame at the front (for
// outer headers), Pull() takes bytes off the front. Not owning.
class Packet {
 public:
  Packet() = default;
  Packet(uint8_t* buffer, size_t capacity, size_t headroom, size_t len = 0)
      : buf_(buffer), cap_(capacity), head_(headroom), len_(len) {}
  uint8_t* data() const { return buf_ + head_; }
  size_t size() const { return len_; }
  size_t headroom() const { return head_; }
  size_t tailroom() const { return cap_ - head_ - len_; }
  std::span<uint8_t> bytes() const { return {buf_ + head_, len_}; }
  // Null when the headroom is short.
  uint8_t* Push(size_t n) {
    if (n > head_) return nullptr;
    head_ -= n;
    len_ += n;
    return buf_ + head_;
  }
  bool Pull(size_t n) {
    if (n > len_) return false;
    head_ += n;
    len_ -= n;
    return true;
  }
  void SetSize(size_t len) { len_ = len; }  // caller keeps len <= capacity - headroom
  void Reset(size_t headroom, size_t len) {
    head_ = headroom;
    len_ = len;
    offload_ = {};
  }
  // Offloads the frame still needs (none by default).
  const Offload& offload() const { return offload_; }
  Offload& offload() { return offload_; }

 private:
  uint8_t* buf_ = nullptr;
  size_t cap_ = 0;
  size_t head_ = 0;
  size_t len_ = 0;
  Offload offload_;
};

// Outer addresses of an IPv4 underlay packet.
struct Underlay {
  MacAddr src_mac;
  MacAddr dst_mac;
  Ipv4Addr src;
  Ipv4Addr dst;
  uint8_t ttl = 64;
  uint8_t tos = 0;
};

// Pushes the VXLAN header (8 bytes). False when the headroom is short or
// the VNI does not fit 24 bits.
QCLOUD_EXPORT bool PushVxlan(Packet& p, uint32_t vni) noexcept;
// Pushes a GRE header with the key (8 bytes; 12 with a sequence number).
QCLOUD_EXPORT bool PushGre(Packet& p, uint32_t key, std::optional<uint32_t> seq = std::nullopt) noexcept;
// Pushes outer Ethernet + IPv4 + UDP (42 bytes; UDP checksum 0, as RFC 7348
// allows over IPv4). False when the headroom is short or the result would
// exceed 65,535 bytes of IP.
QCLOUD_EXPORT bool EncapIpv4Udp(Packet& p, const Underlay& u, uint16_t src_port, uint16_t dst_port) noexcept;
// Pushes outer Ethernet + IPv4 with protocol `proto` (34 bytes), e.g. GRE.
QCLOUD_EXPORT bool EncapIpv4(Packet& p, const Underlay& u, uint8_t proto) noexcept;

// A decapsulated underlay packet: where it came from and the inner frame.
struct Decapsulated {
  Ipv4Addr outer_src;
  Ipv4Addr outer_dst;
  uint32_t vni = 0;          // VXLAN VNI or GRE key
  bool gre = false;
  std::span<const uint8_t> inner;
};
// An Ethernet frame carrying IPv4 + UDP(dst port `vxlan_port`) + VXLAN +
// the inner frame; or IPv4 + GRE (key present, protocol 0x6558) + frame.
// Fragmented outer packets are kUnsupported (the underlay MTU must fit).
QCLOUD_EXPORT ParseError DecapVxlan(std::span<const uint8_t> frame, Decapsulated* out,
                                    uint16_t vxlan_port = kVxlanPort) noexcept;
QCLOUD_EXPORT ParseError DecapGre(std::span<const uint8_t> frame, Decapsulated* out) noexcept;

// The UDP source port RFC 7348 recommends: a hash of the inner frame's
// flow (addresses and ports), in [49152, 65535], so ECMP spreads tunnels.
QCLOUD_EXPORT uint16_t FlowSourcePort(std::span<const uint8_t> inner) noexcept;

}  // namespace qcloud::net

template <>
struct std::hash<qcloud::net::MacAddr> {
  size_t operator()(const qcloud::net::MacAddr& m) const noexcept { return std::hash<uint64_t>{}(m.Key()); }
};
