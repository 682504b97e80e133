#include "qcloud/net/offload.h"

#include <cstring>

#include "wire.h"

namespace qcloud::net {
namespace {

constexpr uint8_t kNeedsCsum = 1;   // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kDataValid = 2;   // VIRTIO_NET_HDR_F_DATA_VALID
constexpr uint8_t kGsoEcn = 0x80;   // VIRTIO_NET_HDR_GSO_ECN
constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpAck = 0x10, kTcpCwr = 0x80;

using internal::Load16;
using internal::Load32;
using internal::Store16;
using internal::Store32;

uint16_t Fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// The folded (not complemented) pseudo-header sum for a TCP segment of
// `len` bytes: what a partial checksum field holds.
uint16_t PseudoSum(const uint8_t* l3, bool v6, size_t len) {
  uint64_t sum = kIpProtoTcp + len;
  if (v6) {
    sum += ChecksumAdd({l3 + 8, 32});
  } else {
    sum += ChecksumAdd({l3 + 12, 8});
  }
  return Fold(sum);
}

void Ipv4HeaderChecksum(uint8_t* ip, size_t ihl) {
  Store16(ip + 10, 0);
  Store16(ip + 10, InternetChecksum({ip, ihl}));
}

// The layout of a TCP frame: offsets and lengths, with the IP header's own
// length used (not the frame's, which may carry padding).
struct TcpLayout {
  bool v6 = false;
  size_t l3 = 0, l4 = 0, thl = 0, end = 0;
};

bool Layout(std::span<const uint8_t> frame, TcpLayout* t, bool simple_only) {
  FrameInfo f;
  if (ClassifyFrame(frame, &f) != ParseError::kOk || f.l4_proto != kIpProtoTcp || f.l4_offset == 0) return false;
  if (f.eth.vlan_tags != 0 && simple_only) return false;
  t->l3 = f.l3_offset;
  t->l4 = f.l4_offset;
  t->thl = static_cast<size_t>(frame[t->l4 + 12] >> 4) * 4;
  if (f.l3 == L3::kIpv4) {
    t->v6 = false;
    const uint8_t* ip = frame.data() + t->l3;
    if (simple_only && (ip[0] & 0x0f) != 5) return false;
    if ((Load16(ip + 6) & 0x3fff) != 0) return false;  // a fragment
    t->end = t->l3 + Load16(ip + 2);
  } else if (f.l3 == L3::kIpv6) {
    t->v6 = true;
    if (simple_only && t->l4 != t->l3 + kIpv6HeaderLen) return false;
    t->end = t->l3 + kIpv6HeaderLen + Load16(frame.data() + t->l3 + 4);
  } else {
    return false;
  }
  return t->l4 + t->thl <= t->end && t->end <= frame.size();
}

bool TcpChecksumOk(std::span<const uint8_t> frame, const TcpLayout& t) {
  std::span<const uint8_t> seg = frame.subspan(t.l4, t.end - t.l4);
  const uint8_t* ip = frame.data() + t.l3;
  if (t.v6) return TransportChecksumV6(Ipv6Addr::From(ip + 8), Ipv6Addr::From(ip + 24), kIpProtoTcp, seg) == 0;
  return TransportChecksumV4(Ipv4Addr::From(ip + 12), Ipv4Addr::From(ip + 16), kIpProtoTcp, seg) == 0;
}

}  // namespace

bool ParseVirtioNetHdr(std::span<const uint8_t> in, Offload* out) noexcept {
  if (in.size() < kVirtioNetHdrLen) return false;
  uint8_t flags = in[0], gso = in[1];
  if ((flags & ~(kNeedsCsum | kDataValid)) != 0) return false;
  Offload o;
  o.ecn = (gso & kGsoEcn) != 0;
  switch (gso & ~kGsoEcn) {
    case 0: o.gso = Offload::kNone; break;
    case 1: o.gso = Offload::kTcp4; break;
    case 4: o.gso = Offload::kTcp6; break;
    default: return false;  // UDP fragmentation offload, USO: never negotiated here
  }
  std::memcpy(&o.hdr_len, in.data() + 2, 2);
  std::memcpy(&o.gso_size, in.data() + 4, 2);
  std::memcpy(&o.csum_start, in.data() + 6, 2);
  std::memcpy(&o.csum_offset, in.data() + 8, 2);
  o.csum_partial = (flags & kNeedsCsum) != 0;
  if (o.gso != Offload::kNone && o.gso_size == 0) return false;
  *out = o;
  return true;
}

void WriteVirtioNetHdr(uint8_t out[kVirtioNetHdrLen], const Offload& o) noexcept {
  out[0] = o.csum_partial ? kNeedsCsum : 0;
  out[1] = static_cast<uint8_t>(o.gso | (o.ecn ? kGsoEcn : 0));
  std::memcpy(out + 2, &o.hdr_len, 2);
  std::memcpy(out + 4, &o.gso_size, 2);
  std::memcpy(out + 6, &o.csum_start, 2);
  std::memcpy(out + 8, &o.csum_offset, 2);
}

bool CompleteChecksum(std::span<uint8_t> frame, const Offload& o) noexcept {
  size_t start = o.csum_start, at = size_t{o.csum_start} + o.csum_offset;
  if (start > frame.size() || at + 2 > frame.size()) return false;
  uint16_t c = ChecksumFinish(ChecksumAdd(frame.subspan(start)));
  if (c == 0 && o.csum_offset == 6) c = 0xffff;  // UDP: 0 means "no checksum"
  Store16(frame.data() + at, c);
  return true;
}

std::optional<Segments> SegmentTcp(std::span<const uint8_t> super, const Offload& o, size_t prefix,
                                   std::span<uint8_t> out) noexcept {
  TcpLayout t;
  if (o.gso == Offload::kNone || o.gso_size == 0 || !Layout(super, &t, false)) return std::nullopt;
  if ((o.gso == Offload::kTcp6) != t.v6) return std::nullopt;
  const size_t hdr = t.l4 + t.thl;
  const size_t payload = t.end - hdr;
  const size_t mss = o.gso_size;
  const size_t count = payload == 0 ? 1 : (payload + mss - 1) / mss;
  if (count > kMaxSegments) return std::nullopt;
  Segments s;
  s.count = count;
  s.segment_len = hdr + (count == 1 ? payload : mss);
  s.last_len = hdr + (payload - (count - 1) * mss);
  s.stride = prefix + s.segment_len;
  if ((count - 1) * s.stride + prefix + s.last_len > out.size()) return std::nullopt;
  const uint32_t seq0 = Load32(super.data() + t.l4 + 4);
  const uint16_t id0 = t.v6 ? 0 : Load16(super.data() + t.l3 + 4);
  const uint8_t flags0 = super[t.l4 + 13];
  for (size_t i = 0; i < count; ++i) {
    const size_t chunk = i + 1 == count ? payload - i * mss : mss;
    uint8_t* seg = out.data() + i * s.stride + prefix;
    std::memcpy(seg, super.data(), hdr);
    std::memcpy(seg + hdr, super.data() + hdr + i * mss, chunk);
    uint8_t* ip = seg + t.l3;
    uint8_t* tcp = seg + t.l4;
    const size_t tcp_len = t.thl + chunk;
    if (t.v6) {
      Store16(ip + 4, static_cast<uint16_t>(t.l4 - t.l3 - kIpv6HeaderLen + tcp_len));
    } else {
      Store16(ip + 2, static_cast<uint16_t>(t.l4 - t.l3 + tcp_len));
      Store16(ip + 4, static_cast<uint16_t>(id0 + i));
      Ipv4HeaderChecksum(ip, t.l4 - t.l3);
    }
    Store32(tcp + 4, seq0 + static_cast<uint32_t>(i * mss));
    uint8_t flags = flags0;
    if (i + 1 != count) flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (i != 0) flags &= static_cast<uint8_t>(~kTcpCwr);
    tcp[13] = flags;
    Store16(tcp + 16, 0);
    std::span<const uint8_t> segment(tcp, tcp_len);
    uint16_t c = t.v6 ? TransportChecksumV6(Ipv6Addr::From(ip + 8), Ipv6Addr::From(ip + 24), kIpProtoTcp, segment)
                      : TransportChecksumV4(Ipv4Addr::From(ip + 12), Ipv4Addr::From(ip + 16), kIpProtoTcp, segment);
    Store16(tcp + 16, c);
  }
  return s;
}

// ---- TcpCoalescer ------------------------------------------------------------------

TcpCoalescer::TcpCoalescer() : buf_(kMaxSuperFrame) {}

namespace {

// TCP with payload and only ACK/PSH: what could join a super-frame, before
// its checksum is looked at.
bool Shaped(std::span<const uint8_t> frame, TcpLayout* t) {
  if (!Layout(frame, t, true)) return false;
  uint8_t flags = frame[t->l4 + 13];
  if ((flags & ~(kTcpAck | kTcpPsh)) != 0 || (flags & kTcpAck) == 0) return false;
  return t->end != t->l4 + t->thl;  // no payload: a pure ACK goes as it is
}

}  // namespace

bool TcpCoalescer::Mergeable(std::span<const uint8_t> frame) {
  TcpLayout t;
  return Shaped(frame, &t) && TcpChecksumOk(frame, t);
}

// The frame is parsed once; its checksum, the one pass over its payload,
// only when everything else says it joins.
bool TcpCoalescer::Add(std::span<const uint8_t> frame) {
  if (closed_) return false;
  TcpLayout t;
  if (!Shaped(frame, &t)) return false;
  const size_t hdr = t.l4 + t.thl;
  const size_t payload = t.end - hdr;
  const uint8_t* tcp = frame.data() + t.l4;
  if (segments_ == 0) {
    if (!TcpChecksumOk(frame, t)) return false;
    std::memcpy(buf_.data(), frame.data(), t.end);
    len_ = t.end;
    segments_ = 1;
    v6_ = t.v6;
    l4_ = static_cast<uint16_t>(t.l4);
    hdr_ = static_cast<uint16_t>(hdr);
    mss_ = static_cast<uint16_t>(payload);
    next_seq_ = Load32(tcp + 4) + static_cast<uint32_t>(payload);
    closed_ = (tcp[13] & kTcpPsh) != 0;
    return true;
  }
  if (t.v6 != v6_ || t.l4 != l4_ || hdr != hdr_ || payload > mss_ || len_ + payload > kMaxSuperFrame ||
      segments_ >= kMaxSegments || Load32(tcp + 4) != next_seq_)
    return false;
  const uint8_t* a = buf_.data();
  const uint8_t* b = frame.data();
  // Ethernet; then IP but for lengths, id and checksum; then TCP but for
  // sequence number, PSH and checksum.
  if (std::memcmp(a, b, t.l3) != 0) return false;
  const size_t l3 = t.l3;
  if (v6_) {
    if (std::memcmp(a + l3, b + l3, 4) != 0 || std::memcmp(a + l3 + 6, b + l3 + 6, 34) != 0) return false;
  } else {
    if (std::memcmp(a + l3, b + l3, 2) != 0 || std::memcmp(a + l3 + 6, b + l3 + 6, 4) != 0 ||
        std::memcmp(a + l3 + 12, b + l3 + 12, 8) != 0)
      return false;
  }
  const uint8_t* ta = a + l4_;
  if (std::memcmp(ta, tcp, 4) != 0 || std::memcmp(ta + 8, tcp + 8, 5) != 0 ||
      (ta[13] & ~kTcpPsh) != (tcp[13] & ~kTcpPsh) || std::memcmp(ta + 14, tcp + 14, 2) != 0 ||
      std::memcmp(ta + 20, tcp + 20, t.thl - 20) != 0 || !TcpChecksumOk(frame, t))
    return false;
  std::memcpy(buf_.data() + len_, frame.data() + hdr, payload);
  len_ += payload;
  next_seq_ += static_cast<uint32_t>(payload);
  ++segments_;
  if ((tcp[13] & kTcpPsh) != 0) {
    buf_[l4_ + 13] |= kTcpPsh;
    closed_ = true;
  }
  if (payload < mss_) closed_ = true;
  return true;
}

std::span<const uint8_t> TcpCoalescer::Take(Offload* o) {
  *o = Offload{};
  std::span<const uint8_t> out(buf_.data(), len_);
  if (segments_ > 1) {
    uint8_t* ip = buf_.data() + (l4_ - (v6_ ? kIpv6HeaderLen : 20));
    size_t l3 = static_cast<size_t>(ip - buf_.data());
    size_t tcp_len = len_ - l4_;
    if (v6_) {
      Store16(ip + 4, static_cast<uint16_t>(len_ - l3 - kIpv6HeaderLen));
    } else {
      Store16(ip + 2, static_cast<uint16_t>(len_ - l3));
      Ipv4HeaderChecksum(ip, 20);
    }
    Store16(buf_.data() + l4_ + 16, PseudoSum(ip, v6_, tcp_len));
    o->gso = v6_ ? Offload::kTcp6 : Offload::kTcp4;
    o->gso_size = mss_;
    o->hdr_len = hdr_;
    o->csum_partial = true;
    o->csum_start = l4_;
    o->csum_offset = 16;
  }
  segments_ = 0;
  closed_ = false;
  len_ = 0;
  return out;
}

}  // namespace qcloud::net
